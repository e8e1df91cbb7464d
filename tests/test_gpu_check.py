"""bench/gpu_check.py, run on the CPU: the day a GPU is lent, the script must not fail
on a bug of its own.

A stand-in for CuPy made of numpy (plus a wall-clock ``cuda.Event``) runs every check
but the pytest run at 6 % of VOC 2007 size, the bare kernel's through its numpy twin;
each must return rows whose status is "ok", so the twin comparisons inside the checks
are exercised too.
"""

import importlib.util
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from dnnstress.stress import _uniform

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Event:
    def record(self):
        self.time = time.perf_counter()

    def synchronize(self):
        pass


def _numpy_as_cupy():
    """numpy under CuPy's names: what the checks call on ``bench.cupy``."""
    fake = types.SimpleNamespace(**{name: getattr(np, name) for name in dir(np)
                                    if not name.startswith("_")})
    device = types.SimpleNamespace(synchronize=lambda: None)
    fake.asnumpy = np.asarray
    fake.cuda = types.SimpleNamespace(
        Event=_Event, Device=lambda: device,
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
        get_elapsed_time=lambda start, stop: 1e3 * (stop.time - start.time))
    return fake


def test_without_a_gpu_the_script_says_so_and_writes_its_json(gpu_check, tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path)]) == 0
    assert "no GPU: nothing to check" in capsys.readouterr().out
    assert (tmp_path / "gpu_check.json").is_file()


def test_every_check_runs_and_passes_its_twin_comparisons(gpu_check, monkeypatch):
    fake = _numpy_as_cupy()
    # The sweep's device check imports cupy itself: give it the stand-in too.
    monkeypatch.setitem(sys.modules, "cupy", fake)
    args = gpu_check._parse(["--size-gib", "0.002", "--repeats", "1", "--scale", "0.06",
                             "--sweep-levels", "3"])
    # The bare kernel's check calls dnnstress._cuda itself: its numpy twin stands in.
    monkeypatch.setattr(gpu_check, "_cuda", types.SimpleNamespace(
        reconstruct=lambda X, lo, step, h, out: np.copyto(
            out, _uniform.reconstruct(X, lo, step, h))))
    bench = gpu_check.Bench(fake, args)
    skipped = {gpu_check.check_gpu_tests}  # a pytest run of its own
    names = []
    for check in gpu_check.CHECKS:
        if check in skipped:
            continue
        rows = check(bench)
        assert rows and all(row["status"] == "ok" for row in rows), (check.__name__, rows)
        names += [row["check"] for row in rows]
    assert {"copy", "Q-2 reconstruct kernel", "Q-2 transform (out=)", "Q-2 encode (uint8)", "Q-2 unpack",
            "SVM per configuration, B = 8", "paper grid (600 trainings), estimate",
            "DR-2 PCA fit"} <= set(names)
