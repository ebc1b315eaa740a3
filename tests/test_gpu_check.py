"""``scripts/gpu_check`` on this CPU machine: it runs nothing and says so, and every command
it would run on one GPU is a real train script's command whose GPU flag the script
understands: here, without CUDA, each refuses the GPU at once in one line, before a run
folder holds anything."""
import importlib
import os

import numpy as np
import pytest
import torch

from scripts import gpu_check

SINGLE_GPU = [run for run in gpu_check.runs_to_check(1, 1)]


def test_every_train_script_in_both_precisions_and_pytorch_compiled():
    cells = {(label, framework, family) for label, framework, family, _, _ in SINGLE_GPU}
    assert len(cells) == len(SINGLE_GPU) == 3 * 4 * 2 + 4
    assert {f for label, f, *_ in SINGLE_GPU if label == "1 GPU compile"} == {"pytorch"}
    assert all(command[-1] == "--compile" for label, *_, command in SINGLE_GPU
               if label == "1 GPU compile")
    only = gpu_check.runs_to_check(1, 1, ["pytorch"])
    assert {framework for _, framework, *_ in only} == {"pytorch"} and len(only) == 4 * 3
    launched = gpu_check.runs_to_check(2, 1)
    assert sum(label == "2 GPUs" for label, *_ in launched) == 3 * 4


def test_without_cuda_it_runs_nothing(capsys, monkeypatch):
    monkeypatch.setattr(gpu_check, "gpu_count", lambda: 0)
    assert gpu_check.main(["--out", "unused"]) == 0
    assert "no CUDA device" in capsys.readouterr().out
    assert not os.path.exists("unused")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("label, framework, family, amp, command", SINGLE_GPU,
                         ids=[f"{fw}-{fam}-{label[6:] or 'float32'}" for label, fw, fam, _, _ in SINGLE_GPU])
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


def test_the_float64_reference_is_float64_in_every_framework(tmp_path):
    """The check's CPU logits of one checkpoint (safetensors, read by every framework): each
    framework's float32 within round-off of its float64, and the three float64 results equal
    to the float64 tolerance, which a model left in float32 would miss by far."""
    from common.formats import write_state
    from common.specs import input_size
    from parity_tests.tolerances import assert_close, tolerance_units
    from pytorch_impl import create_model
    torch.manual_seed(0)
    path = str(tmp_path / "upanets16.safetensors")
    write_state(create_model("upanets16", num_classes=10).state_dict(), path)
    images = gpu_check.test_images(input_size("upanets16"), count=4)
    results = {fw: gpu_check.cpu_logits(fw, "upanets16", {"num_classes": 10}, path, images)
               for fw in gpu_check.FRAMEWORKS}
    for framework, (f32, f64) in results.items():
        assert f32.dtype == np.float32 and f64.dtype == np.float64, framework
        assert 0 < tolerance_units(f32, f64, np.float32) < 10, framework
    torch64 = results["pytorch"][1]
    for framework in ("gluon", "paddle"):
        assert_close(results[framework][1], torch64, np.float64, f"{framework} float64 logits")
        assert tolerance_units(results[framework][0], torch64, np.float64) > 1e3


def test_the_gpu_is_held_to_the_cpus_own_float32_error():
    """Within ROUNDOFF_FACTOR times the CPU's error against float64 (or times the tolerance):
    a GPU three times as far as a CPU that is one tolerance off passes, four times fails."""
    cpu64 = np.linspace(-3.0, 3.0, 12).reshape(3, 4)
    units = 1e-5 * abs(cpu64[1, 2]) + 1e-6 * 3.0  # one float32 tolerance at that logit
    cpu32 = cpu64.copy()
    cpu32[1, 2] += units
    for factor, ok in ((2.9, True), (4.0, False)):
        gpu = cpu64.copy()
        gpu[1, 2] += factor * units
        diff, gpu_units, cpu_units, verdict = gpu_check.compare(gpu, cpu32, cpu64)
        assert abs(cpu_units - 1) < 1e-9 and abs(gpu_units - factor) < 1e-9
        assert verdict is ok and abs(diff - (factor - 1) * units) < 1e-12
