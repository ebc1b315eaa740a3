"""``scripts/gpu_check`` on this CPU machine: it runs nothing and says so, and every command
it would run on one GPU is a real train script's command whose GPU flag the script
understands: here, without CUDA, each refuses the GPU at once in one line, before a run
folder holds anything."""
import importlib
import os

import pytest
import torch

from scripts import gpu_check

SINGLE_GPU = [run for run in gpu_check.runs_to_check(1, 1)]


def test_every_train_script_in_both_precisions():
    cells = {(framework, family, amp) for _, framework, family, amp, _ in SINGLE_GPU}
    assert len(cells) == len(SINGLE_GPU) == 3 * 4 * 2
    launched = gpu_check.runs_to_check(2, 1)
    assert sum(label == "2 GPUs" for label, *_ in launched) == 3 * 4


def test_without_cuda_it_runs_nothing(capsys, monkeypatch):
    monkeypatch.setattr(gpu_check, "gpu_count", lambda: 0)
    assert gpu_check.main(["--out", "unused"]) == 0
    assert "no CUDA device" in capsys.readouterr().out
    assert not os.path.exists("unused")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("label, framework, family, amp, command", SINGLE_GPU,
                         ids=[f"{fw}-{fam}{'-amp' if amp else ''}" for _, fw, fam, amp, _ in SINGLE_GPU])
def test_the_gpu_flags_are_understood_and_refused_here(label, framework, family, amp, command,
                                                        tmp_path, capsys):
    module = importlib.import_module(command[2])
    with pytest.raises(SystemExit) as exit_:
        module.main([*command[3:], "--log-dir", str(tmp_path / "run")])
    code = exit_.value.code
    message = code if isinstance(code, str) else capsys.readouterr().err.strip().splitlines()[-1]
    assert code not in (0, None)
    assert "error" in message and any(w in message.lower() for w in ("gpu", "cuda")), message
    assert len(message.splitlines()) == 1 and len(message) < 400, message
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
