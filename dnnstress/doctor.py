"""What this installation can run, and how to fix what it cannot.

``dnnstress doctor`` answers the first question of every GPU install: which array
backends and onnxruntime providers really work here, which GPU they see, and for each
missing piece the error it raised and the command that fixes it.  Every probe runs the
real thing (a kernel on the device, an onnxruntime session that is asked which provider
it got), because an importable package is not yet a working one: onnxruntime-gpu
installed beside onnxruntime, for example, imports fine and runs on the CPU.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata

from dnnstress.devices import GPU_INSTALL_HINT, check_device

# Distribution names of the packages whose versions the report lists, with why each matters.
PACKAGES = {
    "numpy": "array backend (CPU)", "scipy": "linear algebra", "scikit-learn": "reference estimators",
    "numba": "compiled CPU kernels", "onnx": "network building", "onnxruntime": "inference (CPU build)",
    "onnxruntime-gpu": "inference (CUDA build)", "cupy-cuda12x": "array backend (GPU, CUDA 12)",
    "cupy-cuda13x": "array backend (GPU, CUDA 13)", "cuml-cu12": "optional cuML solver (CUDA 12)",
    "cuml-cu13": "optional cuML solver (CUDA 13)", "faiss-cpu": "optional peer (PQ, retrieval)",
    "liblinear-official": "optional peer (SVM benchmark)", "ml_dtypes": "optional peer (float formats)",
}
ORT_GPU_FIX = ("pip uninstall -y onnxruntime onnxruntime-gpu && "
               "pip install 'onnxruntime-gpu[cuda,cudnn]>=1.27'  (CUDA 13; '>=1.21,<1.27' for CUDA 12)")


@dataclasses.dataclass
class Probe:
    """One capability: whether it works, what was seen, and if not, why and the fix."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


def diagnose() -> dict:
    """Probe every backend and provider; return a JSON-ready report.

    Returns
    -------
    dict
        ``{"packages": {distribution: version or None}, "probes": [Probe as dict, ...]}``.
    """
    cupy = _probe_cupy()
    probes = [_probe_numpy(), _probe_numba(), cupy, _probe_cuda_kernels(cupy.ok),
              *_probe_onnxruntime(), _probe_cuml()]
    return {"packages": {name: _version(name) for name in PACKAGES},
            "probes": [dataclasses.asdict(probe) for probe in probes]}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _probe_numpy() -> Probe:
    from dnnstress.runinfo import machine_info

    blas = ", ".join(f"{lib.get('internal_api')} {lib.get('version')} "
                     f"({lib.get('num_threads')} threads)"
                     for lib in machine_info()["blas"] if lib.get("user_api") == "blas")
    return Probe("numpy (CPU arrays)", True,
                 f"numpy {_version('numpy')}, BLAS: {blas or 'none reported'}")


def _probe_numba() -> Probe:
    try:
        numba = importlib.import_module("numba")
    except Exception as error:  # an import of a compiled package can raise anything
        return Probe("numba (compiled CPU kernels)", False, _error_text(error),
                     "pip install --force-reinstall numba")
    return Probe("numba (compiled CPU kernels)", True,
                 f"numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads")


def _probe_cupy() -> Probe:
    try:
        check_device("cuda")
    except RuntimeError as error:
        # check_device ends its message with the install hint: shown once, as the fix.
        said = str(error).split("; " + GPU_INSTALL_HINT)[0]
        return Probe("cupy (GPU arrays)", False, said, GPU_INSTALL_HINT)
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    count = cupy.cuda.runtime.getDeviceCount()
    driver = cupy.cuda.runtime.driverGetVersion()
    runtime = cupy.cuda.runtime.runtimeGetVersion()
    return Probe("cupy (GPU arrays)", True,
                 f"CuPy {cupy.__version__}; {count} device(s), device 0: {name} "
                 f"(sm_{props['major']}{props['minor']}, {props['totalGlobalMem'] / 2**30:.0f} GiB); "
                 f"driver CUDA {_cuda_version(driver)}, runtime CUDA {_cuda_version(runtime)}")


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"


def _probe_cuda_kernels(cupy_works: bool) -> Probe:
    """Compile dnnstress's own kernels with NVRTC: the step a GPU sweep needs first."""
    name = "dnnstress CUDA kernels"
    if not cupy_works:
        return Probe(name, False, "needs a working CuPy (above)", GPU_INSTALL_HINT)
    from dnnstress import _cuda

    try:
        for source, functions in _cuda.entry_points().items():
            for function in functions:
                _cuda._function(source, function)
    except Exception as error:  # NVRTC compile errors arrive as CuPy's CompileException
        return Probe(name, False, _error_text(error),
                     "install CuPy with its CUDA toolkit wheels: " + GPU_INSTALL_HINT)
    count = sum(len(functions) for functions in _cuda.entry_points().values())
    return Probe(name, True, f"{count} entry points compiled with NVRTC")


def _probe_onnxruntime() -> list[Probe]:
    try:
        ort = importlib.import_module("onnxruntime")
    except Exception as error:
        return [Probe("onnxruntime (CPU inference)", False, _error_text(error),
                      "pip install onnxruntime")]
    probes = [Probe("onnxruntime (CPU inference)", True,
                    f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}")]
    name = "onnxruntime CUDA provider (GPU inference)"
    both = _version("onnxruntime") and _version("onnxruntime-gpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        why = ("onnxruntime and onnxruntime-gpu are both installed: the CPU build hides the "
               "CUDA provider" if both else "this onnxruntime build has no CUDA provider")
        probes.append(Probe(name, False, why, ORT_GPU_FIX))
        return probes
    try:
        providers = _session_providers(ort)
    except Exception as error:
        probes.append(Probe(name, False, _error_text(error), ORT_GPU_FIX))
        return probes
    if providers[0] != "CUDAExecutionProvider":
        probes.append(Probe(name, False, f"a session asked for CUDA got {providers} (CUDA or "
                            "cuDNN libraries missing, or no GPU)", ORT_GPU_FIX))
    else:
        probes.append(Probe(name, True, f"a test session runs on {providers[0]}"))
    return probes


def _session_providers(ort) -> list[str]:
    """Providers of a one-node session that asked for CUDA first."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu >= 1.21: CUDA/cuDNN from NVIDIA wheels
        ort.preload_dlls()
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    return session.get_providers()


def _probe_cuml() -> Probe:
    name = "cuml (optional solver='cuml')"
    try:
        cuml = importlib.import_module("cuml")
    except Exception as error:
        return Probe(name, False, _error_text(error),
                     "pip install 'dnnstress[cuml-cuda13]' (or [cuml-cuda12]); optional: "
                     "the default solver needs no cuML")
    return Probe(name, True, f"cuML {cuml.__version__}")
