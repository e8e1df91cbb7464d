"""The sweep's results store under faults: broken devices, garbled or cut results,
full disks, concurrent sweeps, odd sweep.json files and kills at seeded moments."""

import sys

import numpy as np
import pytest

from dnnstress.features import FeatureSet
from dnnstress.sweep import run_sweep


def _features(n_train=60, n_test=30, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.random((3, d)) * 2

    def split(n):
        y = np.arange(n) % 3
        return (centres[y] + 0.3 * rng.random((n, d))).astype(np.float32), y
    return FeatureSet(*split(n_train), *split(n_test))


def test_broken_cuda_fails_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # no CuPy at all
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="while importing CuPy.*gpu-cuda12"):
        run_sweep(_features(), out, experiments="q1", device="cuda", progress=False)
    assert not out.exists()
