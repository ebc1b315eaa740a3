"""Framework-neutral building blocks shared by every implementation.

Everything here depends on numpy (and the Python standard library) only, so that
MXNet Gluon, PaddlePaddle and PyTorch train on the same batches with the same
numbers: datasets and augmentation, LR schedules, mixup, label smoothing,
checkpoint file formats and the weight-name conversion rules.
"""
