"""Framework-neutral building blocks shared by every implementation.

Everything here depends on numpy (and the Python standard library) only, so that
MXNet Gluon, PaddlePaddle and PyTorch train on the same batches with the same
numbers: datasets and augmentation, LR schedules, mixup, label smoothing,
checkpoint file formats and the weight-name conversion rules.
"""
import os
import warnings

# The thread count the user asked for, read before any framework is imported (Paddle's import
# writes OMP_NUM_THREADS=1 when it is unset); common.runs.use_threads defaults to it.
USER_OMP_THREADS = os.environ.get("OMP_NUM_THREADS")

# Paddle warns at import that the C++-extension builder found no ccache: nothing here builds
# C++ extensions, so it is noise on every command that imports Paddle after this package.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
