"""The CUDA kernels compiled for the CPU, and a stand-in CuPy that launches them.

``build`` compiles the real ``kernels/*.cu`` with g++ after ``kernels/host_shim.cuh``
(CUDA keywords, built-in variables and a serial launcher; the kernels' inline PTX is
behind ``#ifdef __CUDA_ARCH__``, so their portable C++ branch runs) into a shared
library with one exported launcher per entry point of ``dnnstress._cuda``.

``HostCupy`` is just enough of CuPy for ``dnnstress._cuda`` and the stressors: arrays
are numpy arrays of a subclass whose module reads ``cupy`` (so ``is_cupy_array`` says
yes), and ``RawModule(...).get_function(name)(grid, block, args)`` runs the host build
of that kernel, after checking every argument's type against the kernel's signature.
So the wrappers' own launch code (vector widths, the grid of ``_row_walk_launch``, the
parameter casts, the NaN counter) runs unchanged against the real kernels.

``quantizer_problem`` makes the test data of both kernel test modules.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

from dnnstress import _cuda

KERNEL_DIR = Path(__file__).resolve().parents[1] / "kernels"
GXX = shutil.which("g++")
SANITIZE_ENV = "DNNSTRESS_HOST_SANITIZE"
FLAGS = ["-std=c++17", "-O1", "-fno-fast-math", "-ffp-contract=off", "-fno-strict-aliasing",
         "-Wall", "-Werror", "-Wno-unknown-pragmas", "-shared", "-fPIC"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer"]


def launcher_source() -> str:
    """The translation unit: the shim, the real sources, one launcher per entry point."""
    lines = [f'#include "{KERNEL_DIR / "host_shim.cuh"}"']
    points = _cuda.entry_points()
    lines += [f'#include "{KERNEL_DIR / name}"' for name in sorted(points)]
    lines += [f"DNNSTRESS_HOST({kernel})" for name in sorted(points) for kernel in points[name]]
    return "\n".join(lines) + "\n"


def build(folder: Path, sanitize: bool = False) -> Path:
    """Compile the host library into ``folder`` (named by a hash of sources and flags)."""
    source = launcher_source()
    flags = FLAGS + (SANITIZE_FLAGS if sanitize else [])
    digest = hashlib.sha256("\0".join(
        [source, *flags, *(p.read_text() for p in sorted(KERNEL_DIR.glob("*.cu*")))]
    ).encode()).hexdigest()[:16]
    library = folder / f"dnnstress_kernels_{digest}.so"
    if not library.exists():
        cpp = folder / f"launchers_{digest}.cpp"
        cpp.write_text(source)
        result = subprocess.run([GXX, *flags, "-o", str(library), str(cpp)],
                                capture_output=True, text=True, check=False)
        if result.returncode:
            raise RuntimeError(f"g++ failed:\n{result.stderr}")
    return library


class ndarray(np.ndarray):
    """A host array that dnnstress takes for a CuPy array."""

    __module__ = "cupy"

    @property
    def data(self):  # CuPy's MemoryPointer: only .ptr is used
        return types.SimpleNamespace(ptr=self.ctypes.data)

    def get(self):
        return np.array(self).view(np.ndarray)


def _device(a):
    return a.view(ndarray) if isinstance(a, np.ndarray) else a


class HostCupy(types.ModuleType):
    """The stand-in ``cupy`` module (numpy underneath, kernels from the host library)."""

    ndarray = ndarray

    def __init__(self, library: Path, multiprocessors: int = 132):
        super().__init__("cupy")
        self.library = ctypes.CDLL(str(library))
        self.launches = []  # (kernel, grid, block) of every launch, for the geometry tests
        host = self

        class Device:
            def __init__(self, device_id=0):
                self.id = device_id
                self.attributes = {"MultiProcessorCount": multiprocessors}

        class RawModule:
            def __init__(self, code, options):
                self.options = options

            def get_function(self, name):
                return host.kernel(name)

        self.cuda = types.SimpleNamespace(
            Device=Device, runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
        self.RawModule = RawModule

    def __getattr__(self, name):
        # numpy's functions and types, their array results taken as device arrays.
        value = getattr(np, name)
        if callable(value) and not isinstance(value, type):
            return lambda *args, **kwargs: _device(value(*args, **kwargs))
        return value

    def asarray(self, a, dtype=None, order=None):
        if isinstance(a, ndarray) and (dtype is None or a.dtype == dtype):
            return a
        return np.array(a, dtype=dtype, order=order or "K").view(ndarray)

    def asnumpy(self, a):
        return np.array(a).view(np.ndarray)

    def ascontiguousarray(self, a):
        return np.ascontiguousarray(a).view(ndarray)

    def ReductionKernel(self, *definition):
        # The one CuPy reduction dnnstress defines, _array's non-finite counter.
        assert definition[-1] == "dnnstress_count_nonfinite", definition
        return lambda X: np.int64(X.size - np.count_nonzero(np.isfinite(X)))

    def kernel(self, name: str):
        launch = getattr(self.library, f"host_{name}")
        launch.restype = ctypes.c_int
        signature = getattr(self.library, f"signature_{name}")
        signature.restype = ctypes.c_char_p
        codes = signature().decode()

        def run(grid, block, args):
            assert len(args) == len(codes), f"{name} takes {len(codes)} arguments"
            boxed = [_box(code, arg, name) for code, arg in zip(codes, args)]
            pointers = (ctypes.c_void_p * len(boxed))(
                *(ctypes.cast(ctypes.byref(b), ctypes.c_void_p) for b in boxed))
            geometry = (ctypes.c_uint * 6)(*grid, *block)
            self.launches.append((name, tuple(grid), tuple(block)))
            assert launch(geometry, pointers) == 0, f"CUDA would refuse {grid} x {block}"

        return run


_POINTEE = {"F": np.float32, "D": np.float64, "B": np.uint8, "H": np.uint16, "Q": np.uint64}
_SCALAR = {"q": (np.int64, ctypes.c_longlong), "I": (np.uint32, ctypes.c_uint),
           "i": (np.int32, ctypes.c_int)}


def _box(code, arg, kernel):
    """One kernel argument as a ctypes value, refused unless its type is the parameter's
    (CuPy would pass a wrong-sized scalar or pointer silently)."""
    if code in _POINTEE:
        assert isinstance(arg, ndarray) and arg.dtype == _POINTEE[code], (
            f"{kernel}: expected a {np.dtype(_POINTEE[code])} device array, got {arg!r}")
        assert arg.flags.c_contiguous, f"{kernel}: array argument not C-contiguous"
        return ctypes.c_void_p(arg.ctypes.data)
    numpy_type, ctype = _SCALAR[code]
    assert type(arg) is numpy_type, f"{kernel}: expected {numpy_type.__name__}, got {arg!r}"
    return ctype(int(arg))


def asan_runtime() -> str | None:
    """Path of g++'s AddressSanitizer runtime, or None where it is not installed."""
    if GXX is None:
        return None
    found = subprocess.run([GXX, "-print-file-name=libasan.so"], capture_output=True,
                           text=True, check=True).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


def sanitizer_env() -> dict:
    """Environment for a Python child that loads the ASan/UBSan build."""
    runtime = asan_runtime()
    return {**os.environ, SANITIZE_ENV: "1", "LD_PRELOAD": runtime,
            "ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1",
            "PYTHONPATH": os.pathsep.join(sys.path)}


def quantizer_problem(rng, n, d, dtype, h):
    """Fitted (lo, step) and test rows: constant dimensions, values outside the training
    range, and values on the bin edges (where the tie rule decides the code)."""
    train = rng.standard_normal((50, d)) * rng.uniform(0.1, 10, size=d) + rng.normal(size=d)
    train[:, ::4] = rng.normal(size=train[:, ::4].shape[1])  # constant dimensions
    train = train.astype(dtype)
    lo = train.min(axis=0).astype(np.float64)
    step = (train.max(axis=0).astype(np.float64) - lo) / h
    X = rng.standard_normal((n, d)) * 1.5 * (train.std(axis=0) + 1) + train.mean(axis=0)
    edges = lo + rng.integers(-1, h + 2, size=(n, d)) * step
    X = np.where(rng.random((n, d)) < 0.3, edges, X).astype(dtype)
    X[0], X[-1] = train.min(axis=0), train.max(axis=0)
    return X, lo, step
