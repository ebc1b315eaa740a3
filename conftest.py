"""Shared pytest fixtures: where the shared real data lives, and the CI rule for it.

A test that needs ``../shared/data`` skips with its reason outside CI and fails in CI
(``CI=true``), where the data must be present.
"""
import os
import sys
from pathlib import Path

import pytest

from common.memory import keep_freed_memory

ROOT = Path(__file__).resolve().parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def require_shared(relative):
    """The path ``../shared/data/<relative>``; skip (or fail in CI) when it is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        reason = f"{path} is missing (the project's shared data)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI must have it")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def cifar10_mini():
    """Folder of the real CIFAR-10 subset (5,085 train, 509 test images)."""
    return require_shared("cifar10-mini")


def pytest_collection_finish(session):
    """Paddle's CPU operators on every core in the test process, as the train scripts run
    them (Paddle alone uses one thread: measured 1.47x slower per convolution here), and
    freed memory kept for the next tensor, as they keep it (``common/memory.py``)."""
    keep_freed_memory()
    if "paddle" in sys.modules:
        import paddle_impl
        paddle_impl.set_threads(len(os.sched_getaffinity(0)))


@pytest.fixture
def refusal(capsys):
    """``refusal(call, *args)``: the one line on stderr with which ``call(*args)`` ended the
    command, as a bad flag does (``error: ...``, exit status 2)."""
    def refused(call, *args):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            call(*args)
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and lines, (exit_.value.code, lines)
        return lines[-1]
    return refused
