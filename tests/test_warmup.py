"""The demo's background compilation: a low-priority child that finish() waits for."""

import sys

from dnnstress import _warmup


def test_the_child_compiles_what_a_sweep_fits():
    # Run in this process: the fits it makes must work (float32 then float64).
    exec(_warmup._CHILD, {})


def test_the_child_runs_at_low_priority_and_finish_waits_for_it(monkeypatch, tmp_path):
    niceness = tmp_path / "nice"
    monkeypatch.setattr(_warmup, "_CHILD",
                        f"import os; open({str(niceness)!r}, 'w').write(str(os.nice(0)))")
    child = _warmup.start()
    _warmup.finish(child)
    assert child.returncode == 0
    assert int(niceness.read_text()) >= 10


def test_a_child_past_the_timeout_is_stopped(monkeypatch):
    monkeypatch.setattr(_warmup, "_CHILD", "import time; time.sleep(60)")
    child = _warmup.start()
    _warmup.finish(child, timeout=0.2)
    assert child.returncode is not None and child.returncode != 0
    assert sys.platform != "linux" or child.returncode < 0  # killed by a signal
