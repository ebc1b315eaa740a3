"""SAN model sizes against Table 1 of the paper (millions of parameters, rounded to 0.1M), in
PyTorch and in the Paddle port, and the reduced SAN's output shape."""
import pytest
import torch

from paddle_impl import create_model as create_paddle
from pytorch_impl import create_model as create_torch
from pytorch_impl.models.san import SAM

PAPER_MILLIONS = {"san10_pairwise": 10.5, "san10_patchwise": 11.8, "san15_pairwise": 14.1,
                  "san15_patchwise": 16.2, "san19_pairwise": 17.6, "san19_patchwise": 20.5}


@pytest.mark.parametrize("name", sorted(PAPER_MILLIONS))
def test_parameter_count_matches_the_paper(name):
    torch_count = sum(p.numel() for p in create_torch(name).parameters())
    paddle_count = sum(p.size for p in create_paddle(name).parameters() if not p.stop_gradient)
    assert round(torch_count / 1e6, 1) == PAPER_MILLIONS[name]
    assert paddle_count == torch_count


@pytest.mark.parametrize("sa_type", ("pairwise", "patchwise"))
def test_reduced_san_runs_at_32x32(sa_type):
    model = create_torch(f"san10_{sa_type}", num_classes=7, layers=(1,) * 5, kernels=(3, 3, 3, 3, 1))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(ValueError, match="reflection padding 3"):  # a 7x7 window on 2x2 maps
        SAM(sa_type, 64, 4, 16, 8, kernel_size=7)(torch.randn(1, 64, 2, 2))
