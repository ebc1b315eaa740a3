"""pytorch_impl.layers batch norms load a plain {name: tensor} dict (what a conversion
produces, without torch's version metadata) with strict=True."""
import torch

from pytorch_impl.layers import BatchNorm1d, BatchNorm2d


def test_plain_state_dict_loads_strictly():
    for layer in (BatchNorm2d(3), BatchNorm1d(3, biased_var=True)):
        plain = {k: torch.full_like(v, 2.0) for k, v in layer.state_dict().items()}
        assert sorted(plain) == ["bias", "running_mean", "running_var", "weight"]
        layer.load_state_dict(plain, strict=True)
        assert torch.equal(layer.running_var, torch.full((3,), 2.0))
