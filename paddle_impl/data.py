"""Turn a common/ batch (numpy images and labels) into Paddle tensors."""
import paddle


def to_tensors(batch, dtype="float32"):
    images, labels = batch
    return paddle.to_tensor(images.astype(dtype)), paddle.to_tensor(labels)
