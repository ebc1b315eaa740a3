"""Turn a common/ batch (numpy images and labels) into MXNet NDArrays."""
import mxnet as mx


def to_ndarrays(batch, ctx=None, dtype="float32"):
    images, labels = batch
    ctx = ctx or mx.cpu()
    return mx.nd.array(images, ctx=ctx, dtype=dtype), mx.nd.array(labels, ctx=ctx, dtype="int64")
