"""``dnnstress doctor``: every probe says what it saw, and each failure names its fix.

The GPU pieces are absent here, so fake ``cupy`` and ``onnxruntime`` modules stand in
for the states a user meets: no CuPy, a working CuPy, onnxruntime-gpu beside
onnxruntime, and a CUDA provider that silently falls back to the CPU.
"""

import json
import sys
import types

import numpy as np
import pytest

from dnnstress import doctor
from dnnstress.cli import main


def _probe(report, prefix):
    (probe,) = [p for p in report["probes"] if p["name"].startswith(prefix)]
    return probe


def _fake_cupy():
    props = {"name": b"NVIDIA H200", "major": 9, "minor": 0, "totalGlobalMem": 141 * 2**30}
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1,
                                    getDeviceProperties=lambda device: props,
                                    driverGetVersion=lambda: 13000,
                                    runtimeGetVersion=lambda: 12080)
    return types.SimpleNamespace(__version__="14.2.0", arange=np.arange, float32=np.float32,
                                 asnumpy=np.asarray, cuda=types.SimpleNamespace(runtime=runtime))


def _fake_onnxruntime(available, session_providers):
    class InferenceSession:
        def __init__(self, model, providers):
            self.requested = providers

        def get_providers(self):
            return session_providers

    return types.SimpleNamespace(__version__="1.31.1", InferenceSession=InferenceSession,
                                 get_available_providers=lambda: available)


def test_without_cupy_the_gpu_probes_fail_with_the_import_error_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    report = doctor.diagnose()
    cupy = _probe(report, "cupy")
    assert not cupy["ok"] and "importing CuPy" in cupy["detail"]
    assert "gpu-cuda12" in cupy["fix"] and "gpu-cuda13" in cupy["fix"]
    kernels = _probe(report, "dnnstress CUDA kernels")
    assert not kernels["ok"] and "CuPy" in kernels["detail"]
    assert _probe(report, "numpy")["ok"] and "BLAS" in _probe(report, "numpy")["detail"]


def test_a_working_cupy_reports_the_device_driver_and_runtime(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    cupy = _probe(doctor.diagnose(), "cupy")
    assert cupy["ok"], cupy
    assert "NVIDIA H200 (sm_90, 141 GiB)" in cupy["detail"]
    assert "driver CUDA 13.0" in cupy["detail"] and "runtime CUDA 12.8" in cupy["detail"]


def test_onnxruntime_gpu_beside_onnxruntime_is_named_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime",
                        _fake_onnxruntime(["CPUExecutionProvider"], ["CPUExecutionProvider"]))
    monkeypatch.setattr(doctor, "_version", lambda name: "1.31.1")
    probe = _probe(doctor.diagnose(), "onnxruntime CUDA")
    assert not probe["ok"] and "both installed" in probe["detail"]
    assert probe["fix"].startswith("pip uninstall -y onnxruntime onnxruntime-gpu")


@pytest.mark.parametrize("session_providers, ok", [
    (["CPUExecutionProvider"], False),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], True)])
def test_the_cuda_provider_is_judged_by_the_session_it_gives(monkeypatch, session_providers, ok):
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setitem(sys.modules, "onnxruntime",
                        _fake_onnxruntime(available, session_providers))
    probe = _probe(doctor.diagnose(), "onnxruntime CUDA")
    assert probe["ok"] is ok
    if not ok:
        assert "['CPUExecutionProvider']" in probe["detail"] and probe["fix"]


def test_json_to_stdout_is_only_json_with_run_info(capsys):
    assert main(["doctor", "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["command"] == "doctor" and report["dnnstress"]
    assert report["packages"]["numpy"] == np.__version__
    assert {"name", "ok", "detail", "fix"} <= set(report["probes"][0])


def test_human_report_lists_each_probe_and_fixes(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cuml", None)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ok numpy (CPU arrays)" in out
    assert "-- cuml" in out and "fix: pip install 'dnnstress[cuml-cuda13]'" in out
