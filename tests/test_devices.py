"""dnnstress.devices.check_device: each failing step of the CUDA check, with fake CuPys."""

import sys
import types

import numpy as np
import pytest

from dnnstress.devices import check_device


class CUDARuntimeError(RuntimeError):
    """Stands in for cupy_backends.cuda.api.runtime.CUDARuntimeError."""


def _fake_cupy(count=1, count_error=None, kernel_error=None, kernel_result=None):
    """A module with just what check_device touches, backed by numpy."""
    cupy = types.ModuleType("cupy")
    cupy.float32 = np.float32

    def get_device_count():
        if count_error is not None:
            raise count_error
        return count

    def arange(*args, **kwargs):
        if kernel_error is not None:
            raise kernel_error
        return np.arange(*args, **kwargs)

    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
    cupy.arange = arange
    cupy.asnumpy = (lambda a: np.asarray(a)) if kernel_result is None else (
        lambda a: np.asarray(kernel_result))
    return cupy


def test_cpu_always_works_and_unknown_devices_are_refused():
    check_device("cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        check_device("tpu")


def test_without_cupy_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    with pytest.raises(RuntimeError) as raised:
        check_device("cuda")
    message = str(raised.value)
    assert "while importing CuPy: ModuleNotFoundError" in message
    assert "pip install 'dnnstress[gpu-cuda12]' or 'dnnstress[gpu-cuda13]'" in message
    assert "\n" not in message


def test_cuda_error_while_counting_devices_is_quoted(monkeypatch):
    said = "cudaErrorInsufficientDriver: CUDA driver version is insufficient\nfor runtime"
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(count_error=CUDARuntimeError(said)))
    with pytest.raises(RuntimeError) as raised:
        check_device("cuda")
    message = str(raised.value)
    assert message.startswith("device 'cuda' failed while counting CUDA devices: "
                              "CUDARuntimeError: cudaErrorInsufficientDriver: CUDA driver "
                              "version is insufficient for runtime;")
    assert "gpu-cuda13" in message and "\n" not in message


def test_no_device_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(count=0))
    with pytest.raises(RuntimeError, match="CuPy sees no CUDA device"):
        check_device("cuda")


def test_kernel_failure_and_wrong_result_are_reported(monkeypatch):
    error = CUDARuntimeError("cudaErrorNoKernelImageForDevice: no kernel image is available")
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(kernel_error=error))
    with pytest.raises(RuntimeError, match="running a test kernel on the GPU: "
                                           "CUDARuntimeError: cudaErrorNoKernelImage"):
        check_device("cuda")
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(kernel_result=0.0))
    with pytest.raises(RuntimeError, match="returned 0.0, expected 12.0"):
        check_device("cuda")


def test_a_working_fake_passes(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    check_device("cuda")


@pytest.mark.gpu
def test_real_gpu_passes(cupy):
    check_device("cuda")
