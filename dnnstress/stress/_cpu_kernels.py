"""Compiled CPU kernels for uniform quantization (numba), bit-exact with ``_uniform``.

Why numba: the array-API formula in ``_uniform`` makes seven full passes over the data
(convert, subtract, divide, ceil, clip, multiply, add) with a float64 temporary each
time, so it runs at a few percent of memory bandwidth.  A fused loop reads every value
once and writes it once, and ``prange`` spreads the rows over the cores.  The arithmetic
is the same IEEE sequence in the input's type (no fastmath, so LLVM contracts nothing
into an FMA; constants are passed in that type so nothing is promoted to float64), which
keeps the results identical to the twin; tests assert equality, not closeness.
"""

from __future__ import annotations

import numba
import numpy as np

from dnnstress._array import output_array
from dnnstress.stress import _packing
from dnnstress.stress._uniform import code_dtype, safe_step

_JIT = dict(parallel=True, cache=True, nogil=True, error_model="numpy")


# Both kernels also count the non-finite inputs of each row (x - x is NaN for NaN and
# inf, 0 otherwise): checking in the same pass costs a fraction of a separate
# ``isfinite(X).all()``, which would read the data again and allocate a mask.

@numba.njit(inline="always")
def _code(x, lo, divisor, zero, one, top):
    """The bin index of ``x`` as a float (``_uniform.encode``), and 1 if ``x`` is not finite."""
    code = min(max(np.ceil((x - lo) / divisor) - one, zero), top)
    return code, np.int32(x - x != zero)


@numba.njit(**_JIT)
def _reconstruct_kernel(X, lo, step, divisor, zero, half, one, top, out, bad_per_row):
    n, d = X.shape
    for i in numba.prange(n):
        bad = 0
        for j in range(d):
            code, not_finite = _code(X[i, j], lo[j], divisor[j], zero, one, top)
            bad += not_finite
            out[i, j] = lo[j] + (code + half) * step[j]
        bad_per_row[i] = bad


@numba.njit(**_JIT)
def _encode_kernel(X, lo, divisor, zero, one, top, out, bad_per_row):
    n, d = X.shape
    for i in numba.prange(n):
        bad = 0
        for j in range(d):
            out[i, j], not_finite = _code(X[i, j], lo[j], divisor[j], zero, one, top)
            bad += not_finite
        bad_per_row[i] = bad


def reconstruct(X, lo, step, n_levels, out=None):
    """Nearest bin centre of every value of ``X`` (see ``_uniform.reconstruct``).

    Raises a ValueError, as ``check_features`` would, if ``X`` holds NaN or infinity.
    """
    out = output_array(out, X.shape, X.dtype, X)
    real, bad = X.dtype.type, np.empty(X.shape[0], np.int64)
    _reconstruct_kernel(X, lo.astype(X.dtype), step.astype(X.dtype),
                        safe_step(step).astype(X.dtype), real(0), real(0.5), real(1),
                        real(n_levels - 1), out, bad)
    _raise_if_not_finite(bad)
    return out


def encode(X, lo, step, n_levels, out=None):
    """Integer codes of ``X`` (see ``_uniform.encode``); NaN or inf: a ValueError."""
    out = output_array(out, X.shape, code_dtype(n_levels), X)
    real, bad = X.dtype.type, np.empty(X.shape[0], np.int64)
    _encode_kernel(X, lo.astype(X.dtype), safe_step(step).astype(X.dtype), real(0), real(1),
                   real(n_levels - 1), out, bad)
    _raise_if_not_finite(bad)
    return out


def _raise_if_not_finite(bad_per_row):
    count = int(bad_per_row.sum())
    if count:
        raise ValueError(f"X contains {count} NaN or infinite value(s)")


@numba.njit(**_JIT)
def _pack_kernel(codes, bits, out):
    # Bits enter a 64-bit accumulator LSB-first and leave it a byte at a time: the
    # layout of ``_packing`` (value j at bits [j*bits, (j+1)*bits) of its row).
    n, d = codes.shape
    for i in numba.prange(n):
        accumulator, filled, position = np.uint64(0), 0, 0
        for j in range(d):
            accumulator |= np.uint64(codes[i, j]) << np.uint64(filled)
            filled += bits
            while filled >= 8:
                out[i, position] = accumulator & np.uint64(0xFF)
                accumulator >>= np.uint64(8)
                filled -= 8
                position += 1
        if filled > 0:
            out[i, position] = accumulator & np.uint64(0xFF)


@numba.njit(**_JIT)
def _unpack_kernel(packed, bits, out):
    n, d = out.shape
    mask = np.uint64((1 << bits) - 1)
    for i in numba.prange(n):
        accumulator, filled, position = np.uint64(0), 0, 0
        for j in range(d):
            while filled < bits:
                accumulator |= np.uint64(packed[i, position]) << np.uint64(filled)
                filled += 8
                position += 1
            out[i, j] = accumulator & mask
            accumulator >>= np.uint64(bits)
            filled -= bits


def pack(codes, bits, *, check_range=True):
    """Codes packed ``bits`` per value, rows padded to whole bytes (see ``_packing``).

    ``check_range=False`` skips the pass that checks every code fits in ``bits``, for
    codes that are in range by construction (``UniformQuantizer.encode``'s).
    """
    if bits in (0, 8, 16):  # whole bytes or nothing: the twin is a plain copy
        return _packing.pack_codes(codes, bits)
    if check_range:
        _packing.check_codes(codes, bits)
    out = np.empty((codes.shape[0], _packing.packed_row_bytes(codes.shape[1], bits)), np.uint8)
    _pack_kernel(np.ascontiguousarray(codes), bits, out)
    return out


def unpack(packed, bits, n_cols):
    """Inverse of :func:`pack` (see ``_packing.unpack_codes``)."""
    if bits in (0, 8, 16):
        return _packing.unpack_codes(packed, bits, n_cols)
    _packing.check_packed(packed, bits, n_cols)
    out = np.empty((packed.shape[0], n_cols), _packing.code_dtype_for_bits(bits))
    _unpack_kernel(np.ascontiguousarray(packed), bits, out)
    return out
