"""Where and in what precision the PyTorch train scripts run (pytorch_impl/session.py's
Placement): --device, --amp (bfloat16 autocast on the CPU; float16 with a GradScaler on CUDA,
the same code path) and --channels-last. On the CPU: a run with --amp starts from the same
loss as float32 within AMP_LOSS_RTOL, stays finite, and writes float32 weights that convert
as before."""
import json

import numpy as np
import pytest
import torch

from parity_tests.tolerances import AMP_LOSS_RTOL
from scripts.convert import main as convert

RUNS = {  # script, flags, conversion flags; one batch of 4: the first loss is the initial forward
    "upanets": ("pytorch_impl.train_upanets", [], []),
    "san": ("pytorch_impl.train_san", ["--layers", "1", "1", "1", "1", "1"],
            ["--model", "san10_pairwise", "--model-kwargs",
             json.dumps({"layers": [1] * 5, "kernels": [3, 3, 3, 3, 1]})]),
}
TINY = ["--batch-size", "4", "--max-batches", "1", "--workers", "0", "--log-interval", "0"]


def first_record(folder):
    return json.loads((folder / "metrics.jsonl").read_text().splitlines()[0])


@pytest.mark.parametrize("family", sorted(RUNS))
def test_amp_starts_where_float32_does(family, tmp_path):
    module, flags, conversion = RUNS[family]
    main = __import__(module, fromlist=["main"]).main
    main([*TINY, *flags, "--log-dir", str(tmp_path / "fp32"), "--device", "cpu"])
    main([*TINY, *flags, "--log-dir", str(tmp_path / "amp"), "--amp", "--channels-last"])
    fp32, amp = first_record(tmp_path / "fp32"), first_record(tmp_path / "amp")
    assert np.isfinite(amp["train_loss"]) and np.isfinite(amp["val_loss"])
    assert abs(amp["train_loss"] - fp32["train_loss"]) <= AMP_LOSS_RTOL * fp32["train_loss"]
    assert fp32["train_loss"] != amp["train_loss"]  # autocast did run in bfloat16
    state = torch.load(tmp_path / "amp" / "model-last.pth", weights_only=True)
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}
    assert convert([str(tmp_path / "amp" / "model-last.pth"), str(tmp_path / "amp.pdparams"),
                    *conversion]) == 0


def test_a_missing_gpu_is_one_line(capsys):
    from pytorch_impl.train_upanets import main
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(SystemExit, match=r"^error: --device cuda:1: no CUDA device is available$"):
        main([*TINY, "--device", "cuda:1", "--log-dir", "/nonexistent/never-written"])
