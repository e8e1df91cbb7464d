"""Array-backend plumbing: one code path for numpy and CuPy inputs.

The stressors, PCA, the SVM solver and the metrics are written once against the
namespace of their input (``xp``), so the code that runs on the GPU is the code the
CPU tests exercise.  CuPy is only imported when the caller hands us a CuPy array:
importing dnnstress never imports it (the einops backend idea, see STYLE.md).
"""

from __future__ import annotations

import functools
import operator
import sys
import types

import numpy as np


def is_cupy_array(x) -> bool:
    """True for a ``cupy.ndarray``, decided without importing CuPy."""
    return type(x).__module__.split(".", 1)[0] == "cupy"


def array_namespace(*arrays) -> types.ModuleType:
    """The module (``numpy`` or ``cupy``) whose functions operate on ``arrays``.

    ``None`` entries are ignored.  Mixing host and device arrays is an error: a silent
    transfer would hide a host round trip that GPU callers want to avoid.
    """
    kinds = {is_cupy_array(a) for a in arrays if a is not None}
    if len(kinds) > 1:
        raise TypeError("mixed numpy and CuPy arrays: move them to one device first")
    if kinds == {True}:
        return sys.modules["cupy"]  # imported by whoever made the array
    return np


def to_numpy(x) -> np.ndarray:
    """Copy a device array to the host; numpy arrays pass through unchanged."""
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)


def check_features(X, *, name: str = "X", n_features: int | None = None,
                   allow_empty: bool = False, check_finite: bool = True):
    """Validate a 2-D floating feature matrix and return it unchanged.

    Raises a ``TypeError``/``ValueError`` that names the problem instead of letting a bad
    array fail deep inside numpy or, worse, produce NaN scores.  Integer input is refused
    rather than converted, since quantizing integer codes as if they were features is
    almost always a mistake (use ``X.astype(np.float32)`` to mean it); so is long double
    (float128), which no kernel computes in.  ``check_finite``
    False leaves the NaN/inf check to a kernel that makes it in its own pass.
    """
    if not (isinstance(X, np.ndarray) or is_cupy_array(X)):
        raise TypeError(f"{name} must be a numpy or CuPy array, got {type(X).__name__}")
    xp = array_namespace(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x features), got shape {X.shape}")
    if not xp.issubdtype(X.dtype, xp.floating):
        raise TypeError(
            f"{name} has dtype {X.dtype}; features must be floating point "
            f"(convert explicitly, e.g. {name}.astype(numpy.float32))")
    if X.dtype.itemsize > 8:
        raise TypeError(
            f"{name} has dtype {X.dtype}; dnnstress computes in float32 or float64, and "
            f"long double would be silently rounded (convert explicitly, e.g. "
            f"{name}.astype(numpy.float64))")
    if not allow_empty and (X.shape[0] == 0 or X.shape[1] == 0):
        raise ValueError(f"{name} is empty (shape {X.shape})")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} features but the stressor was fitted on {n_features}")
    if check_finite and X.size:
        raise_if_nonfinite(count_nonfinite(X), name)
    return X


def raise_if_nonfinite(count: int, name: str = "X") -> None:
    """The one error for NaN/inf input, whichever pass counted it (numpy, a kernel)."""
    if count:
        raise ValueError(f"{name} contains {count} NaN or infinite value(s)")


def astype_exact(X, dtype):
    """``X`` as float32 or float64 with IEEE rounding on every backend.

    On CuPy, ``astype`` between float32 and float64 runs under -ftz=true and flushes
    float32 subnormals to zero; dnnstress's own conversion kernel does not.
    """
    dtype = np.dtype(dtype)
    if is_cupy_array(X) and X.dtype != dtype and {X.dtype, dtype} <= _FLOATS:
        from dnnstress import _cuda
        return _cuda.convert(X, dtype)
    return X.astype(dtype)


_FLOATS = {np.dtype(np.float32), np.dtype(np.float64)}


def count_nonfinite(X) -> int:
    """Number of NaN and infinite values of ``X``.

    On the GPU one reduction kernel reads ``X`` once; ``isfinite(X).all()`` would first
    write a boolean mask as large as a quarter of ``X`` and read it back.
    """
    if is_cupy_array(X):
        return int(_cupy_nonfinite_counter()(X))
    return int(X.size - np.count_nonzero(np.isfinite(X)))


@functools.lru_cache(maxsize=1)
def _cupy_nonfinite_counter():
    import cupy

    return cupy.ReductionKernel("T x", "int64 count", "isfinite(x) ? 0 : 1", "a + b",
                                "count = a", "0", "dnnstress_count_nonfinite")


def check_count(value, name: str, low: int, high: int) -> int:
    """An integer parameter in ``[low, high]``, or a ValueError/TypeError naming it.

    ``bool`` (and numpy's bool) is refused although Python treats True as 1: a count
    given as True is a mistake, not a request for one level.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def output_array(out, shape, dtype, like):
    """``out`` checked to hold a result of ``shape`` and ``dtype`` on ``like``'s backend,
    or a new array when ``out`` is None.

    Writing into a caller's array saves the allocation and, for large results, the page
    faults of touching fresh memory, which cost a streaming kernel more than its work.
    If the kernel then raises (NaN or inf in its input), ``out`` holds garbage.
    """
    xp = array_namespace(like)
    if out is None:
        return xp.empty(shape, dtype=dtype)
    if is_cupy_array(out) != is_cupy_array(like) or not hasattr(out, "flags"):
        raise TypeError(f"out must be a {xp.__name__} array like the input, "
                        f"got {type(out).__name__}")
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"out must have shape {tuple(shape)} and dtype {np.dtype(dtype)}, "
                         f"got {out.shape} and {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not getattr(out.flags, "writeable", True):  # CuPy arrays have no such flag
        raise ValueError("out is read-only")
    if xp.may_share_memory(out, like):
        # The kernels read and write in parallel, and validate while they write: an
        # overlapping output would corrupt the input or be left half-written.
        raise ValueError("out must not share memory with the input")
    return out
