"""Turn a common/ batch (numpy images and labels) into torch tensors."""
import torch


def to_tensors(batch, device="cpu", dtype=torch.float32):
    images, labels = batch
    return (torch.from_numpy(images).to(device=device, dtype=dtype),
            torch.from_numpy(labels).to(device))
