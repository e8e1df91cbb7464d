"""Compiled CPU kernels for uniform quantization (numba), bit-exact with their twins.

Why numba: the array-API formula in ``_uniform`` makes seven full passes over the data
(convert, subtract, divide, ceil, clip, multiply, add) with a float64 temporary each
time, so it runs at a few percent of memory bandwidth.  A fused loop reads every value
once and writes it once, and ``prange`` spreads the rows over the cores.  The arithmetic
is the same IEEE sequence in the input's type (no fastmath, so LLVM contracts nothing
into an FMA; constants are passed in that type so nothing is promoted to float64), which
keeps the results identical to ``_uniform`` and ``_packing``; tests assert equality,
not closeness.

Every kernel works a row at a time, and each pass over a row is its own inner loop: the
quantization, the NaN/inf count, the codes' range check (a max reduction).  A loop that
both writes codes and accumulates a count vectorises badly (LLVM narrows it to 4 lanes
and shuffles every result byte into place); the count's own loop re-reads a row that is
still in the L1 cache and costs a few percent.  Measured on 16384 x 4096 float32: with
the count in the loop, encode ran at 5 GB/s (20 % of a copy); split, at 67 - 82 %.
"""

from __future__ import annotations

import functools

import numba
import numba.extending
import numpy as np

from dnnstress._array import output_array
from dnnstress.stress import _packing
from dnnstress.stress._decode_lines import (X86, line_span, store_fence, store_lines,
                                            stream_lines, touch_pages)
from dnnstress.stress._uniform import code_dtype, safe_step

_JIT = dict(parallel=True, cache=True, nogil=True, error_model="numpy")
_TASKS = 256  # row ranges the fused kernels share among the threads, a scratch row each
# Decoded outputs this large, given or new, take streamed stores (see _decode_output).
STREAM_INTO_GIVEN = 64 << 20
STREAM_INTO_NEW = 160 << 20
HUGE_PAGE = 2 << 20  # bytes of an x86-64 transparent huge page
_BYTE = np.uint64(0xFF)


@numba.njit(inline="always")
def _code(x, lo, divisor, zero, one, top):
    """The bin index of ``x`` as a float (``_uniform.encode``).

    ``max(zero, c)`` returns ``zero`` when ``c`` is NaN (x - lo overflowing on a constant
    dimension, whose divisor is inf), as the twin and the CUDA kernels do.
    """
    return min(max(zero, np.ceil((x - lo) / divisor) - one), top)


@numba.njit(inline="always")
def _count_not_finite(row, zero):
    # x - x is NaN for NaN and inf, 0 otherwise.
    count = 0
    for j in range(row.shape[0]):
        x = row[j]
        count += np.int64(x - x != zero)
    return count


@numba.njit(inline="always")
def _largest(codes_row, check, largest):
    """The largest of ``largest`` (0 of the codes' type) and a row of unsigned codes, if
    ``check``: no check is needed where the code type (or the packed width) cannot hold
    a code beyond the levels.  A max reduction, which vectorises, unlike a count."""
    if check:
        for j in range(codes_row.shape[0]):
            largest = max(largest, codes_row[j])
    return largest


def _as_type_of(value, like):
    """``value`` converted to the type of ``like`` (numba alone would promote a uint16
    meeting a float32 to float64, and round differently from ``astype(float32)``)."""
    return type(like)(value)


@numba.extending.overload(_as_type_of)
def _as_type_of_compiled(value, like):
    cast = like  # the numba type of ``like``, which converts when called
    return lambda value, like: cast(value)


@numba.njit(inline="always")
def _centre(code, low, width, half):
    """The centre of bin ``code`` (a float of ``half``'s type) of a dimension starting
    at ``low`` with bins ``width`` wide: ``_uniform.decode``'s formula, operation for
    operation."""
    return low + (code + half) * width


@numba.njit(inline="always")
def _decode_values(codes_row, lo, step, half, out_row, start, stop):
    """``_uniform.decode`` of values ``start .. stop`` of a row, one by one."""
    for j in range(start, stop):
        out_row[j] = _centre(_as_type_of(codes_row[j], half), lo[j], step[j], half)


@numba.njit(inline="always")
def _decode_row(codes_row, lo, step, half, stream, out_row):
    """``_uniform.decode`` of one row, in ``half``'s type: the row's whole cache lines
    by a vector loop (streamed past the caches if ``stream``), the few values before
    and after them one by one."""
    first, last = line_span(out_row)
    _decode_values(codes_row, lo, step, half, out_row, 0, first)
    if stream:
        stream_lines(codes_row, lo, step, half, out_row, first, last)
    else:
        store_lines(codes_row, lo, step, half, out_row, first, last)
    _decode_values(codes_row, lo, step, half, out_row, last, codes_row.shape[0])


@numba.njit(**_JIT)
def _reconstruct_kernel(X, lo, step, divisor, zero, half, one, top, out, bad_per_row):
    n, d = X.shape
    for i in numba.prange(n):
        for j in range(d):
            out[i, j] = _centre(_code(X[i, j], lo[j], divisor[j], zero, one, top), lo[j],
                                step[j], half)
        bad_per_row[i] = _count_not_finite(X[i], zero)


@numba.njit(inline="always")
def _encode_row(x_row, lo, divisor, zero, one, top, codes_row):
    for j in range(x_row.shape[0]):
        codes_row[j] = _code(x_row[j], lo[j], divisor[j], zero, one, top)
    return _count_not_finite(x_row, zero)


@numba.njit(**_JIT)
def _encode_kernel(X, lo, divisor, zero, one, top, out, bad_per_row):
    for i in numba.prange(X.shape[0]):
        bad_per_row[i] = _encode_row(X[i], lo, divisor, zero, one, top, out[i])


@numba.njit(**_JIT)
def _decode_kernel(codes, lo, step, half, check, stream, out, largest_per_row):
    # Contiguous ranges of rows, a task each, as in unpack_decode_rows (a prange over
    # the rows themselves, as numba's OpenMP layer schedules them, took 8 - 12 % longer
    # side by side).
    n, tasks = codes.shape[0], min(codes.shape[0], _TASKS)
    for task in numba.prange(tasks):
        for i in range(task * n // tasks, (task + 1) * n // tasks):
            largest_per_row[i] = _largest(codes[i], check, largest_per_row[i])
            _decode_row(codes[i], lo, step, half, stream, out[i])
        if stream:
            store_fence()


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


def decode(codes, lo, step, n_levels, dtype, out=None):
    """Bin centres of integer ``codes`` in ``dtype`` (see ``_uniform.decode``), into
    ``out`` if given (see ``output_array``).

    ``dtype`` is float32 or float64; codes outside ``[0, n_levels)`` raise a ValueError,
    found in the same pass that decodes.
    """
    codes, dtype = _narrow_codes(codes, n_levels), np.dtype(dtype)
    out, stream = _decode_output(out, codes.shape, dtype, codes)
    largest = np.zeros(codes.shape[0], codes.dtype)
    _decode_kernel(codes, lo.astype(dtype), step.astype(dtype), dtype.type(0.5),
                   n_levels <= np.iinfo(codes.dtype).max, stream, out, largest)
    _raise_if_beyond(largest, n_levels)
    return out


def _decode_output(out, shape, dtype, like):
    """``(out, stream)``: the array a decode writes (``out`` checked, or a new one) and
    whether it streams its stores past the caches (see ``_decode_lines``), in which case
    its pages have been touched.

    A caller's ``out`` streams from ``STREAM_INTO_GIVEN`` up, where it no longer stays in
    the cache (measured on a 2-core Xeon: a tie with plain stores at 64 MiB, 1.6x faster
    at 96 MiB, 2x at 256 MiB).  A new array's pages arrive zeroed in the cache, where
    plain stores do as well up to ``STREAM_INTO_NEW`` (they win up to 96 MiB, tie at 128
    and lose by 2 - 5 % from 192 MiB); above, it starts on a huge-page boundary, so that
    transparent huge pages back all of it (a 16384 x 4096 float32 decode: 25.4 - 25.8 ms
    against 26.6 - 27.1 with plain stores into numpy's array, faiss's 26.7 - 27.3).
    Such an array is a view of a buffer 2 MiB longer (``owndata`` False, so it cannot be
    resized in place).  Only x86 CPUs stream: the thresholds were measured on one.
    """
    if out is not None:
        out = output_array(out, shape, dtype, like)
        stream = X86 and out.nbytes >= STREAM_INTO_GIVEN
    else:
        size = int(np.prod(shape)) * dtype.itemsize
        stream = X86 and size >= STREAM_INTO_NEW
        if stream:
            buffer = np.empty(size + HUGE_PAGE, np.uint8)  # untouched pages cost nothing
            start = -buffer.ctypes.data % HUGE_PAGE
            out = buffer[start:start + size].view(dtype).reshape(shape)
        else:
            out = np.empty(shape, dtype)
    if stream:
        _touch_kernel(out.reshape(-1))
    return out, stream


@numba.njit(**_JIT)
def _touch_kernel(flat):
    for task in numba.prange(_TASKS):
        touch_pages(flat, task * flat.size // _TASKS, (task + 1) * flat.size // _TASKS)


def _narrow_codes(codes, n_levels):
    """``codes`` as C-contiguous uint8 or uint16 (what ``encode`` and ``unpack`` give):
    the decode kernel is compiled for those two, not for every integer type and layout."""
    if codes.dtype in (np.uint8, np.uint16):
        return np.require(codes, requirements="CA")  # the line loops load them aligned
    if codes.size:
        _raise_if_beyond(np.array([codes.min(), codes.max()]), n_levels)
    return codes.astype(code_dtype(n_levels))


def _raise_if_not_finite(bad_per_row):
    count = int(bad_per_row.sum())
    if count:
        raise ValueError(f"X contains {count} NaN or infinite value(s)")


def _raise_if_beyond(codes, n_levels):
    """A ValueError naming the first of ``codes`` outside ``[0, n_levels)``, if any."""
    outside = codes[(codes < 0) | (codes >= n_levels)]
    if outside.size:
        raise ValueError(f"codes must lie in [0, {n_levels - 1}], got {int(outside[0])}")


# Packing works on groups of 8 values, which fill exactly ``bits`` bytes (``_packing``'s
# layout): the group is assembled in 64-bit words, one for up to 8 bits per value (8 x 8
# bits), two above.  Away from the end of a row a group moves as whole words (LLVM turns
# 8 byte stores or loads of one word into a single one); the bytes a word has beyond the
# group are zero on store and overwritten by the next group.  The last groups of a row,
# where a whole word would cross into the next row, move byte by byte.

@numba.njit(inline="always")
def _group_words(codes_row, start, count, bits):
    """The (low, high) words holding values ``start .. start + count`` of a row."""
    low, high = np.uint64(0), np.uint64(0)
    for k in range(count):
        value, shift = np.uint64(codes_row[start + k]), k * bits
        if shift < 64:
            low |= value << np.uint64(shift)
            if shift + bits > 64:  # straddles the two words
                high |= value >> np.uint64(64 - shift)
        else:
            high |= value << np.uint64(shift - 64)
    return low, high


@numba.njit(inline="always")
def _group_value(low, high, k, bits, mask):
    """Value ``k`` of a group held in (low, high): the inverse of ``_group_words``."""
    shift = k * bits
    if shift >= 64:
        return (high >> np.uint64(shift - 64)) & mask
    value = low >> np.uint64(shift)
    if shift + bits > 64:
        value |= high << np.uint64(64 - shift)
    return value & mask


@numba.njit(inline="always")
def _store_bytes(out_row, position, word, n_bytes):
    for b in range(n_bytes):
        out_row[position + b] = np.uint8((word >> np.uint64(8 * b)) & _BYTE)


@numba.njit(inline="always")
def _load_bytes(packed_row, position, n_bytes):
    word = np.uint64(0)
    for b in range(n_bytes):
        word |= np.uint64(packed_row[position + b]) << np.uint64(8 * b)
    return word


@numba.njit(inline="always")
def _whole_word_groups(n_values, row_bytes, bits):
    """Groups of 8 values a row can move as whole words without leaving the row."""
    word_bytes = 8 if bits <= 8 else 16
    return max(0, min(n_values // 8, (row_bytes - word_bytes) // bits + 1))


@numba.njit(inline="always")
def _pack_row(codes_row, bits, out_row):
    d, row_bytes = codes_row.shape[0], out_row.shape[0]
    fast = _whole_word_groups(d, row_bytes, bits)
    if bits <= 8:  # one word per group; constant trip counts, so LLVM unrolls
        for g in range(fast):
            word = np.uint64(0)
            for k in range(8):
                word |= np.uint64(codes_row[8 * g + k]) << np.uint64(k * bits)
            _store_bytes(out_row, g * bits, word, 8)
    else:
        for g in range(fast):
            low, high = _group_words(codes_row, 8 * g, 8, bits)
            _store_bytes(out_row, g * bits, low, 8)
            _store_bytes(out_row, g * bits + 8, high, 8)
    for g in range(fast, (d + 7) // 8):  # the end of the row, byte by byte
        start, position = 8 * g, g * bits
        low, high = _group_words(codes_row, start, min(8, d - start), bits)
        n_bytes = min(bits, row_bytes - position)
        _store_bytes(out_row, position, low, min(8, n_bytes))
        _store_bytes(out_row, position + 8, high, n_bytes - 8)


@numba.njit(inline="always")
def _unpack_row(packed_row, bits, codes_row):
    d, row_bytes = codes_row.shape[0], packed_row.shape[0]
    fast = _whole_word_groups(d, row_bytes, bits)
    mask = np.uint64((1 << bits) - 1)
    if bits <= 8:
        for g in range(fast):
            word = _load_bytes(packed_row, g * bits, 8)
            for k in range(8):
                codes_row[8 * g + k] = (word >> np.uint64(k * bits)) & mask
    else:
        for g in range(fast):
            low = _load_bytes(packed_row, g * bits, 8)
            high = _load_bytes(packed_row, g * bits + 8, 8)
            for k in range(8):
                codes_row[8 * g + k] = _group_value(low, high, k, bits, mask)
    for g in range(fast, (d + 7) // 8):
        start, position = 8 * g, g * bits
        n_bytes = min(bits, row_bytes - position)
        low = _load_bytes(packed_row, position, min(8, n_bytes))
        high = _load_bytes(packed_row, position + 8, n_bytes - 8)
        for k in range(min(8, d - start)):
            codes_row[start + k] = _group_value(low, high, k, bits, mask)


# With ``bits`` a compile-time constant, LLVM unrolls and vectorises the group of 8
# (constant shifts): 4-8x faster than a run-time width for 1 to 7 bits.  Each of those
# widths gets kernels of its own, compiled (and cached on disk) the first time it is
# used; above 8 bits, the two-word groups gain less and share kernels that read the
# width at run time.
_NARROW_WIDTHS = range(1, 8)


def _packing_kernels(bits):
    return _kernels_of_width(bits if bits in _NARROW_WIDTHS else 0)


@functools.lru_cache(maxsize=None)
def _kernels_of_width(width):
    """(pack, unpack, unpack-and-decode) kernels; ``width`` 0 takes ``bits`` at run time."""

    @numba.njit(**_JIT)
    def pack_rows(codes, bits, out):
        bits = bits if width == 0 else width
        for i in numba.prange(codes.shape[0]):
            _pack_row(codes[i], bits, out[i])

    @numba.njit(**_JIT)
    def unpack_rows(packed, bits, out):
        bits = bits if width == 0 else width
        for i in numba.prange(packed.shape[0]):
            _unpack_row(packed[i], bits, out[i])

    @numba.njit(**_JIT)
    def unpack_decode_rows(packed, bits, lo, step, half, check, stream, scratch, out,
                           largest_per_row):
        # The codes of a task's rows pass through one scratch row, which stays in the
        # cache: a full codes matrix would cost a write and a read of memory.
        bits = bits if width == 0 else width
        n, tasks = packed.shape[0], scratch.shape[0]
        for task in numba.prange(tasks):
            codes_row = scratch[task]
            for i in range(task * n // tasks, (task + 1) * n // tasks):
                _unpack_row(packed[i], bits, codes_row)
                largest_per_row[i] = _largest(codes_row, check, largest_per_row[i])
                _decode_row(codes_row, lo, step, half, stream, out[i])
            if stream:
                store_fence()

    @numba.njit(**_JIT)
    def encode_pack_rows(X, lo, divisor, zero, one, top, bits, scratch, out, bad_per_row):
        # Codes pass through a scratch row, as in unpack_decode_rows.
        bits = bits if width == 0 else width
        n, tasks = X.shape[0], scratch.shape[0]
        for task in numba.prange(tasks):
            codes_row = scratch[task]
            for i in range(task * n // tasks, (task + 1) * n // tasks):
                bad_per_row[i] = _encode_row(X[i], lo, divisor, zero, one, top, codes_row)
                _pack_row(codes_row, bits, out[i])

    return pack_rows, unpack_rows, unpack_decode_rows, encode_pack_rows


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
    _packing_kernels(bits)[0](codes, bits, out)
    return out


def unpack(packed, bits, n_cols):
    """Inverse of :func:`pack` (see ``_packing.unpack_codes``)."""
    if bits in (0, 8, 16):
        return _packing.unpack_codes(packed, bits, n_cols)
    _packing.check_packed(packed, bits, n_cols)
    out = np.empty((packed.shape[0], n_cols), _packing.code_dtype_for_bits(bits))
    _packing_kernels(bits)[1](packed, bits, out)
    return out


def unpack_decode(packed, bits, n_cols, lo, step, n_levels, dtype, out=None):
    """``decode(unpack(packed, bits, n_cols), ...)`` in one pass, without a codes matrix
    (into ``out`` if given)."""
    if bits in (0, 8, 16):
        return decode(unpack(packed, bits, n_cols), lo, step, n_levels, dtype, out=out)
    _packing.check_packed(packed, bits, n_cols)
    n, dtype, code_type = packed.shape[0], np.dtype(dtype), _packing.code_dtype_for_bits(bits)
    out, stream = _decode_output(out, (n, n_cols), dtype, packed)
    scratch = np.empty((min(n, _TASKS), n_cols), code_type)
    largest = np.zeros(n, code_type)
    _packing_kernels(bits)[2](packed, bits, lo.astype(dtype), step.astype(dtype),
                              dtype.type(0.5), n_levels < 1 << bits, stream, scratch,
                              out, largest)
    _raise_if_beyond(largest, n_levels)
    return out


def encode_pack(X, lo, step, n_levels, bits):
    """``pack(encode(X, lo, step, n_levels), bits)`` in one pass, without a codes matrix.

    Raises a ValueError if ``X`` holds NaN or infinity.
    """
    if bits in (0, 8, 16):
        return pack(encode(X, lo, step, n_levels), bits, check_range=False)
    n, real = X.shape[0], X.dtype.type
    out = np.empty((n, _packing.packed_row_bytes(X.shape[1], bits)), np.uint8)
    scratch = np.empty((min(n, _TASKS), X.shape[1]), code_dtype(n_levels))
    bad = np.empty(n, np.int64)
    _packing_kernels(bits)[3](X, lo.astype(X.dtype), safe_step(step).astype(X.dtype), real(0),
                              real(1), real(n_levels - 1), bits, scratch, out, bad)
    _raise_if_not_finite(bad)
    return out
