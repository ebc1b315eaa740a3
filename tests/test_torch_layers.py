"""pytorch_impl.layers: the batch norms load a plain {name: tensor} dict (what a conversion
produces, without torch's version metadata) with strict=True; ``fused`` runs the compiled
version of a function only where inductor can build it, and never inside a graph that
torch.compile traces."""
import torch

from pytorch_impl.layers import BatchNorm1d, BatchNorm2d, fused


def test_plain_state_dict_loads_strictly():
    for layer in (BatchNorm2d(3), BatchNorm1d(3, biased_var=True)):
        plain = {k: torch.full_like(v, 2.0) for k, v in layer.state_dict().items()}
        assert sorted(plain) == ["bias", "running_mean", "running_var", "weight"]
        layer.load_state_dict(plain, strict=True)
        assert torch.equal(layer.running_var, torch.full((3,), 2.0))


def _spied(calls):
    """A fused function whose two versions record which one ran (nothing is compiled)."""
    def double(x):
        calls.append("eager" if not torch.compiler.is_compiling() else "traced")
        return 2 * x
    f = fused(double)
    f.__dict__["compiled"] = lambda x: calls.append("compiled") or 2 * x
    return f


def test_fused_runs_compiled_where_a_compiler_is_present_and_eagerly_elsewhere(monkeypatch):
    calls = []
    f = _spied(calls)
    assert torch.equal(f(torch.ones(2)), torch.full((2,), 2.0))
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    assert torch.equal(f(torch.ones(2)), torch.full((2,), 2.0))
    assert calls == ["compiled", "eager"]
    assert f(torch.ones(2, device="meta")).shape == (2,)  # a device inductor has no backend for
    assert calls[-1] == "eager"


def test_fused_is_traced_as_it_is_inside_torch_compile():
    calls = []
    f = _spied(calls)
    out = torch.compile(lambda x: f(x) + 1, backend="eager")(torch.ones(2))
    assert torch.equal(out, torch.full((2,), 3.0)) and calls == ["traced"]
