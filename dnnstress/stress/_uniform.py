"""The arithmetic of uniform scalar quantization, written once for every array backend.

These functions are the *specification* of Q-1/Q-2 (paper Sec. 2.2, reference README
"Q-1 / Q-2").  The CPU fast path (``_cpu_kernels``) and the CUDA kernels in ``kernels/``
must reproduce them bit for bit; tests compare each against these twins.

The parameters are fitted in float64 and cast to the input's floating type; all the
arithmetic then runs in that type (float32 features are quantized in float32, which
halves the cost of the division on CPUs and GPUs alike and is exact enough: codes up
to 65535 are integers in float32):

    lo        low end of the range (per dimension; Q-1 repeats one): the training
              minimum, or a calibrated end (``_ranges``)
    step      (high - lo) / h, 0 for a range of width 0 (a constant dimension)
    safe_step step where step > 0, +inf where step == 0
    t         (x - lo) / safe_step              IEEE division, no reciprocal
    code      clip(ceil(t) - 1, 0, h - 1)       nearest centre; an exact tie between two
                                                centres goes to the lower one, as argmin
                                                over the dictionary does; a NaN t clips
                                                to 0 (fmax/fmin, as PTX max/min do)
    value     lo + (code + 0.5) * step          no fused multiply-add

A constant dimension therefore gets code 0 (t = 0) and value lo; values outside the
range clamp to the first or last centre.  The callers keep two preconditions
(``UniformQuantizer`` does): ``max - min`` is finite in X's type, and ``step`` is 0
where it would round to 0 in X's type (else that dimension divides by zero).

On CuPy, ``decode`` runs dnnstress's CUDA kernel instead of the formula: CuPy compiles
its elementwise kernels with -ftz=true, which would flush float32 subnormal centres.
(float16 centres, which CuPy computes through float32 with no float32 subnormal on the
way, keep the formula.)
"""

from __future__ import annotations

import numpy as np

from dnnstress._array import array_namespace, output_array

MAX_LEVELS = 65536


def code_dtype(n_levels: int):
    """Smallest unsigned integer type that holds codes 0 .. n_levels - 1."""
    return np.uint8 if n_levels <= 256 else np.uint16


def safe_step(step):
    """``step`` with +inf where it is 0, so that constant dimensions divide to t = 0."""
    xp = array_namespace(step)
    return xp.where(step > 0, step, xp.inf)


def encode(X, lo, step_or_inf, n_levels: int):
    """Integer codes of ``X`` (n x d) given per-dimension ``lo`` and ``safe_step`` (d,)."""
    xp = array_namespace(X)
    lo, step_or_inf = lo.astype(X.dtype), step_or_inf.astype(X.dtype)
    one = xp.asarray(1, dtype=X.dtype)  # keeps float32 arithmetic in float32
    # x - lo may overflow to +-inf for a test value far outside the training range: the
    # clip then gives it the first or last code, as for any value beyond the range; on
    # a constant dimension that is inf / inf = NaN, which fmax takes to code 0.
    with np.errstate(over="ignore", invalid="ignore"):
        t = (X - lo) / step_or_inf
    codes = xp.fmin(xp.fmax(xp.ceil(t) - one, 0), n_levels - 1)
    return codes.astype(code_dtype(n_levels))


def decode(codes, lo, step, dtype, out=None):
    """Bin centres for ``codes``: ``lo + (code + 0.5) * step``, computed in ``dtype``
    (into ``out`` if given, see ``output_array``)."""
    xp = array_namespace(codes)
    if xp is not np and np.dtype(dtype) in (np.float32, np.float64):
        from dnnstress import _cuda
        if codes.dtype not in (np.uint8, np.uint16):
            codes = codes.astype(np.uint16)  # the callers check codes < h <= 65536
        return _cuda.decode(codes, lo, step, dtype, out=out)
    if out is not None:  # refused before any work
        out = output_array(out, codes.shape, dtype, codes)
    half = xp.asarray(0.5, dtype=dtype)
    centres = lo.astype(dtype) + (codes.astype(dtype) + half) * step.astype(dtype)
    if out is None:
        return centres
    out[...] = centres
    return out


def reconstruct(X, lo, step, n_levels: int):
    """Nearest bin centre of every value: ``decode(encode(X))`` in one call."""
    return decode(encode(X, lo, safe_step(step), n_levels), lo, step, X.dtype)
