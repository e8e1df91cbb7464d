"""Shared fixtures: the array backend a test runs on.

Tests that take the ``xp`` fixture run once with numpy and once with CuPy; the CuPy run
carries the ``gpu`` marker and is skipped, with the reason shown, where CuPy or a CUDA
device is missing (CuPy's ``numpy_cupy_allclose`` idea: one test body, two backends).
"""

import numpy as np
import pytest


def _cupy_or_skip():
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as error:  # ImportError, CUDARuntimeError, ...
        pytest.skip(f"CuPy with a CUDA device is needed: {error}")
    return cupy


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


def pytest_collection_modifyitems(config, items):
    """Refuse to run a CuPy test without the ``gpu`` marker: ``pytest -m gpu`` (the
    device check) would silently leave it out."""
    unmarked = [item.nodeid for item in items
                if _runs_on_cupy(item) and item.get_closest_marker("gpu") is None]
    if unmarked:
        raise pytest.UsageError("tests that take the cupy fixture (or xp's cupy param) "
                                "need @pytest.mark.gpu: " + ", ".join(unmarked))
