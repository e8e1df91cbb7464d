"""Shared fixtures: the array backend a test runs on.

Tests that take the ``xp`` fixture run once with numpy and once with CuPy; the CuPy run
carries the ``gpu`` marker and is skipped, with the reason shown, where CuPy or a CUDA
device is missing (CuPy's ``numpy_cupy_allclose`` idea: one test body, two backends).
With ``DNNSTRESS_HOST_CUPY=<folder>`` the CuPy runs use the stand-in of
``tests/cuda_host.py`` instead (the CUDA kernels built for the CPU), so that
``pytest -m gpu`` runs without a GPU.  Every CuPy test must carry the ``gpu`` marker:
collection fails otherwise (``pytest_collection_modifyitems``).

Under CI (``CI`` set, as ``.ci/run`` runs) hypothesis draws the same examples every time,
so that a red CI always means a change broke something; elsewhere it explores new ones.
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

HOST_CUPY_ENV = "DNNSTRESS_HOST_CUPY"


def _cupy_or_skip():
    if os.environ.get(HOST_CUPY_ENV):
        return _host_cupy()
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as error:  # ImportError, CUDARuntimeError, ...
        pytest.skip(f"CuPy with a CUDA device is needed: {error}")
    return cupy


def _host_cupy():
    """The stand-in CuPy of tests/cuda_host.py (the kernels' host build) installed as
    ``cupy``: with DNNSTRESS_HOST_CUPY set to a folder, the GPU tests run on the CPU."""
    import cuda_host
    from dnnstress import _array, _cuda

    if "cupy" not in sys.modules:
        folder = os.environ[HOST_CUPY_ENV]
        os.makedirs(folder, exist_ok=True)
        sys.modules["cupy"] = cuda_host.HostCupy(cuda_host.build(Path(folder)))
        for cached in (_cuda._module, _cuda._function_on, _cuda._multiprocessors,
                       _array._cupy_nonfinite_counter):
            cached.cache_clear()
    return sys.modules["cupy"]


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """numpy, or cupy on a GPU machine."""
    return np if request.param == "numpy" else _cupy_or_skip()


@pytest.fixture
def cupy():
    """The cupy module, or a visible skip."""
    return _cupy_or_skip()



def _runs_on_cupy(item) -> bool:
    callspec = getattr(item, "callspec", None)
    return "cupy" in getattr(item, "fixturenames", ()) or (
        callspec is not None and callspec.params.get("xp") == "cupy")


def pytest_sessionstart(session):
    """Compile the SVM solver's numba kernels (float32 and float64) in a low-priority
    child while the first tests run, as the demo does while its network runs: with a
    cold numba cache (a fresh clone, as in CI) they cost about 50 s on one core."""
    from dnnstress import _warmup

    session.config._dnnstress_warmup = _warmup.start()


def pytest_sessionfinish(session):
    from dnnstress import _warmup

    child = getattr(session.config, "_dnnstress_warmup", None)
    if child is not None:
        _warmup.finish(child, timeout=0)


def pytest_collection_modifyitems(config, items):
    """Refuse to run a CuPy test without the ``gpu`` marker: ``pytest -m gpu`` (the
    device check) would silently leave it out."""
    unmarked = [item.nodeid for item in items
                if _runs_on_cupy(item) and item.get_closest_marker("gpu") is None]
    if unmarked:
        raise pytest.UsageError("tests that take the cupy fixture (or xp's cupy param) "
                                "need @pytest.mark.gpu: " + ", ".join(unmarked))
