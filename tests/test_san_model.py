"""The reduced SAN's output shape, and the refusal of a window larger than the feature map.
(The SAN sizes are held against the paper and the original code in
parity_tests/test_paper_tables.py.)"""
import pytest
import torch

from pytorch_impl import create_model as create_torch
from pytorch_impl.models.san import SAM


@pytest.mark.parametrize("sa_type", ("pairwise", "patchwise"))
def test_reduced_san_runs_at_32x32(sa_type):
    model = create_torch(f"san10_{sa_type}", num_classes=7, layers=(1,) * 5, kernels=(3, 3, 3, 3, 1))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(ValueError, match="reflection padding 3"):  # a 7x7 window on 2x2 maps
        SAM(sa_type, 64, 4, 16, 8, kernel_size=7)(torch.randn(1, 64, 2, 2))
