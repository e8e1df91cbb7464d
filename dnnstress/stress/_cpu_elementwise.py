"""Compiled CPU kernels (numba) for the elementwise stressors: binary and float casts.

The numpy forms (``binary.BinaryQuantizer``, ``floatcast._NATIVE_CASTS``) make several
passes over the data with a boolean or uint32 temporary each, plus a separate
``isfinite`` pass, at a fraction of memory bandwidth.  These kernels read every value
once and write it once, a row per task, in the style of ``_cpu_kernels``: each pass over
a row is its own inner loop (the main one vectorises; the NaN/inf count re-reads a row
that is still in the L1 cache).  Results equal the numpy forms bit for bit; tests assert
equality.
"""

from __future__ import annotations

import llvmlite.ir
import numba
import numba.extending
import numpy as np

from dnnstress.stress._cpu_kernels import _count_not_finite, _raise_if_not_finite

_JIT = dict(parallel=True, cache=True, nogil=True, error_model="numpy")


@numba.njit(**_JIT)
def _binary_kernel(X, threshold, low, high, zero, out, bad_per_row):
    for i in numba.prange(X.shape[0]):
        x_row, out_row = X[i], out[i]
        for j in range(x_row.shape[0]):
            # Both levels loaded first: a select, not a branch the data would mispredict
            # (as a branch, 16384 x 4096 took 1.2 s, ten times a copy).
            above, below = high[j], low[j]
            out_row[j] = above if x_row[j] > threshold[j] else below
        bad_per_row[i] = _count_not_finite(x_row, zero)


def binary(X, threshold, low, high, out_dtype):
    """``where(X > threshold, high, low)`` per dimension: levels as ``out_dtype`` (the
    transform) or codes 0/1 (``low``/``high`` given as uint8 0 and 1).  NaN or inf in
    ``X``: a ValueError, counted in the same pass.  float16 ``X`` is widened (exactly)
    to float32."""
    X = np.ascontiguousarray(X, dtype=np.float32 if X.dtype.itemsize < 4 else X.dtype)
    out, bad = np.empty(X.shape, out_dtype), np.empty(X.shape[0], np.int64)
    _binary_kernel(X, _threshold_in(threshold, X.dtype), low.astype(out_dtype),
                   high.astype(out_dtype), X.dtype.type(0), out, bad)
    _raise_if_not_finite(bad)
    return out


def _threshold_in(threshold, dtype):
    """A threshold of ``dtype`` that every value of ``dtype`` exceeds exactly when it
    exceeds the float64 ``threshold`` (numpy's float32 > float64 comparison): the largest
    ``dtype`` value not above it, so that the kernel compares in one type and vectorises."""
    with np.errstate(over="ignore"):  # beyond float32: inf, stepped down to its max
        rounded = threshold.astype(dtype)
    return np.where(rounded > threshold, np.nextafter(rounded, dtype.type(-np.inf)), rounded)


@numba.extending.intrinsic
def _bits_of(typingctx, value):
    """The IEEE bit pattern of a float32 as a uint32 (a bit cast, free in the loop)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvmlite.ir.IntType(32))
    return numba.types.uint32(numba.types.float32), codegen


@numba.extending.intrinsic
def _float_of(typingctx, bits):
    """The float32 whose IEEE bit pattern is the uint32 ``bits``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvmlite.ir.FloatType())
    return numba.types.float32(numba.types.uint32), codegen


@numba.njit(**_JIT)
def _round_kernel(X, drop, half, keep, limit_bits, max_bits, overflow_bits, smallest_normal,
                  scale, inverse_scale, zero, out, bad_per_row):
    sign_mask, magnitude_mask = np.uint32(0x80000000), np.uint32(0x7FFFFFFF)
    one = np.uint32(1)
    for i in numba.prange(X.shape[0]):
        x_row, y_row = X[i], out[i]
        # One vectorised loop, both roundings computed and one selected: the float32
        # pattern rounded to nearest even at bit ``drop`` (the carry runs into the
        # exponent; saturation clips the magnitude to the largest finite pattern), and,
        # below the format's smallest normal, where it has fewer bits, the value scaled
        # to an integer and back (exact: powers of two).  A separate fix-up loop that
        # stored only the subnormals did not vectorise: 1.4 - 1.6x slower.
        for j in range(x_row.shape[0]):
            x = x_row[j]
            b = _bits_of(x)
            m = min(b & magnitude_mask, limit_bits)
            r = (m + half + ((m >> drop) & one)) & keep
            normal = _float_of((b & sign_mask) | (overflow_bits if r > max_bits else r))
            magnitude = abs(x)
            subnormal = np.copysign(np.rint(magnitude * scale) * inverse_scale, x)
            y_row[j] = subnormal if magnitude < smallest_normal else normal
        bad_per_row[i] = _count_not_finite(x_row, zero)


def round_float32(X, mantissa_bits, min_exponent, max_finite, has_infinity, saturate):
    """float32 ``X`` rounded to a narrow float format (nearest even), as float32.

    Overflow gives inf, or NaN for a format without infinity; ``saturate`` clips to
    ``max_finite`` instead.  NaN or inf in ``X``: a ValueError.
    """
    X = np.ascontiguousarray(X)
    out, bad = np.empty_like(X), np.empty(X.shape[0], np.int64)
    drop = 23 - mantissa_bits
    max_bits = np.float32(max_finite).view(np.uint32)
    overflow = np.float32(np.inf if has_infinity else np.nan).view(np.uint32)
    limit = max_bits if saturate else np.uint32(0x7FFFFFFF)
    # bfloat16's subnormals are float32's, which the pattern rounding handles.
    float32_subnormals = min_exponent <= np.finfo(np.float32).minexp
    smallest_normal = 0.0 if float32_subnormals else 2.0 ** min_exponent
    scale = 1.0 if float32_subnormals else 2.0 ** (mantissa_bits - min_exponent)
    _round_kernel(X, np.uint32(drop), np.uint32((1 << (drop - 1)) - 1),
                  np.uint32(0xFFFFFFFF ^ ((1 << drop) - 1)), np.uint32(limit),
                  np.uint32(max_bits), np.uint32(overflow), np.float32(smallest_normal),
                  np.float32(scale), np.float32(1 / scale), np.float32(0), out, bad)
    _raise_if_not_finite(bad)
    return out
