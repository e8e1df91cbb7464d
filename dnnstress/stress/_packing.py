"""Bit packing of quantization codes: the array-API twin of ``kernels/pack.cu``.

A quantized value costs ``bits = ceil(log2 h)`` bits (reference README, "storage cost");
packing makes that cost real.  The layout, which the CUDA kernels reproduce bit for bit:

- value ``j`` of a row occupies bits ``[j * bits, (j + 1) * bits)`` of the row's bit
  stream, least significant bit first;
- bit ``k`` of the stream is bit ``k % 8`` of byte ``k // 8`` (little-endian);
- each row is padded with zero bits to ``ceil(d * bits / 8)`` bytes, so that every row
  stays addressable on its own (the rounding to whole bytes is per row, never per value).

The code is written against the input's array namespace and runs on numpy or CuPy
(the GPU has its own kernels in ``dnnstress._cuda``; this is their specification).
The numpy path is vectorised over groups of 8 values, which fill exactly ``bits`` bytes:
the group is assembled in one or two 64-bit words and those words' bytes are the output.
"""

from __future__ import annotations

import operator

import numpy as np

from dnnstress._array import array_namespace

MAX_BITS = 16
_GROUP = 8  # 8 values of b bits fill exactly b bytes
_CHUNK_VALUES = 1 << 16  # rows per chunk hold about this many values: temporaries stay in cache


def packed_row_bytes(n_cols: int, bits: int) -> int:
    """Bytes of one packed row: ``ceil(n_cols * bits / 8)``."""
    return (n_cols * bits + 7) // 8


def code_dtype_for_bits(bits: int):
    """The unsigned type ``unpack_codes`` returns: uint8 up to 8 bits, uint16 above."""
    return np.uint8 if bits <= 8 else np.uint16


def pack_codes(codes, bits: int):
    """Pack integer codes into ``bits`` bits each, every row padded to whole bytes.

    Parameters
    ----------
    codes : array of shape (n, d), unsigned (or non-negative) integers
        Quantization codes, each below ``2**bits``.
    bits : int
        Bits per value, 0 to 16 (``ceil(log2 h)`` for ``h`` levels; 0 for ``h = 1``,
        which stores nothing).

    Returns
    -------
    packed : uint8 array of shape (n, ceil(d * bits / 8))
        On the same backend as ``codes``.

    Examples
    --------
    >>> pack_codes(np.array([[1, 2, 3]], dtype=np.uint8), 2).tolist()
    [[57]]
    """
    xp = array_namespace(codes)
    bits = _check_bits(bits)
    check_codes(codes, bits)
    n, d = codes.shape
    packed = xp.zeros((n, packed_row_bytes(d, bits)), dtype=xp.uint8)
    if packed.size == 0:
        return packed
    if bits == 8:
        packed[...] = codes
    elif bits == 16:
        packed[...] = _bytes_of(codes.astype(xp.uint16, copy=False), "<u2", n)
    else:
        for rows in _row_chunks(n, d):
            packed[rows] = _pack_rows(xp, codes[rows], bits)[:, :packed.shape[1]]
    return packed


def unpack_codes(packed, bits: int, n_cols: int):
    """Inverse of :func:`pack_codes`: codes of shape (n, n_cols).

    Parameters
    ----------
    packed : uint8 array of shape (n, ceil(n_cols * bits / 8))
    bits : int
        Bits per value used when packing, 0 to 16.
    n_cols : int
        Values per row (the padding bits at the end of a row are ignored).

    Returns
    -------
    codes : array of shape (n, n_cols)
        uint8 for ``bits <= 8``, uint16 above; on the same backend as ``packed``.
    """
    xp = array_namespace(packed)
    bits = _check_bits(bits)
    n_cols = _check_n_cols(n_cols)
    check_packed(packed, bits, n_cols)
    n = packed.shape[0]
    dtype = code_dtype_for_bits(bits)
    codes = xp.zeros((n, n_cols), dtype=dtype)
    if codes.size == 0 or bits == 0:
        return codes
    if bits == 8:
        codes[...] = packed
    elif bits == 16:
        codes[...] = xp.ascontiguousarray(packed).view("<u2")
    else:
        for rows in _row_chunks(n, n_cols):
            codes[rows] = _unpack_rows(xp, packed[rows], bits, n_cols).astype(dtype)
    return codes


def _pack_rows(xp, codes, bits: int):
    """Packed bytes of a few rows, ``ceil(d / 8) * bits`` per row (zero padding at the end)."""
    m, d = codes.shape
    groups = -(-d // _GROUP)
    values = xp.zeros((m, groups * _GROUP), dtype=xp.uint64)
    values[:, :d] = codes
    values = values.reshape(m, groups, _GROUP)
    # A group of 8 values spans up to 128 bits: word 0 takes bits 0-63, word 1 the rest.
    words = xp.zeros((m, groups, 2 if bits > 8 else 1), dtype=xp.uint64)
    for k in range(_GROUP):
        shift, value = k * bits, values[:, :, k]
        if shift < 64:
            words[:, :, 0] |= value << shift  # bits beyond 64 drop here, word 1 gets them
        if shift + bits > 64:
            words[:, :, 1] |= value >> (64 - shift) if shift < 64 else value << (shift - 64)
    return _bytes_of(words, "<u8", m)[:, :, :bits].reshape(m, groups * bits)


def _unpack_rows(xp, packed, bits: int, n_cols: int):
    """Codes (as uint64) of a few packed rows; the inverse of ``_pack_rows``."""
    m, row_bytes = packed.shape
    groups = -(-n_cols // _GROUP)
    n_words = 2 if bits > 8 else 1
    raw = xp.zeros((m, groups, 8 * n_words), dtype=xp.uint8)
    flat = xp.zeros((m, groups * bits), dtype=xp.uint8)
    flat[:, :row_bytes] = packed
    raw[:, :, :bits] = flat.reshape(m, groups, bits)
    words = raw.view("<u8")
    mask = (1 << bits) - 1
    values = xp.empty((m, groups, _GROUP), dtype=xp.uint64)
    for k in range(_GROUP):
        shift = k * bits
        value = words[:, :, 0] >> shift if shift < 64 else words[:, :, 1] >> (shift - 64)
        if shift < 64 < shift + bits:
            value = value | (words[:, :, 1] << (64 - shift))
        values[:, :, k] = value & mask
    return values.reshape(m, groups * _GROUP)[:, :n_cols]


def _bytes_of(words, little_endian_dtype: str, n_rows: int):
    """The little-endian bytes of unsigned ``words``, one row per leading index."""
    xp = array_namespace(words)
    words = xp.ascontiguousarray(words.astype(little_endian_dtype, copy=False))
    return words.view(xp.uint8).reshape(n_rows, *words.shape[1:-1], -1)


def _row_chunks(n: int, d: int):
    """Slices of rows holding about ``_CHUNK_VALUES`` values each."""
    step = max(1, _CHUNK_VALUES // max(d, 1))
    return (slice(start, min(start + step, n)) for start in range(0, n, step))


def _check_bits(bits) -> int:
    try:
        bits = operator.index(bits)
    except TypeError:
        raise TypeError(f"bits must be an integer, got {bits!r}") from None
    if not 0 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in [0, {MAX_BITS}], got {bits}")
    return bits


def _check_n_cols(n_cols) -> int:
    try:
        n_cols = operator.index(n_cols)
    except TypeError:
        raise TypeError(f"n_cols must be an integer, got {n_cols!r}") from None
    if n_cols < 0:
        raise ValueError(f"n_cols must be non-negative, got {n_cols}")
    return n_cols


def check_codes(codes, bits: int) -> None:
    if getattr(codes, "ndim", None) != 2:
        raise ValueError(f"codes must be a 2-D array (rows x values), got "
                         f"{getattr(codes, 'shape', type(codes).__name__)}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"codes must be integers, got dtype {codes.dtype}")
    if codes.size == 0:
        return
    low, high = int(codes.min()), int(codes.max())
    if low < 0 or high >= 1 << bits:
        raise ValueError(f"codes must lie in [0, {(1 << bits) - 1}] to fit in {bits} bits, "
                         f"got values in [{low}, {high}]")


def check_packed(packed, bits: int, n_cols: int) -> None:
    if getattr(packed, "ndim", None) != 2:
        raise ValueError(f"packed must be a 2-D array (rows x bytes), got "
                         f"{getattr(packed, 'shape', type(packed).__name__)}")
    if packed.dtype != np.uint8:
        raise TypeError(f"packed must be uint8 bytes, got dtype {packed.dtype}")
    expected = packed_row_bytes(n_cols, bits)
    if packed.shape[1] != expected:
        raise ValueError(f"packed rows have {packed.shape[1]} bytes, but {n_cols} values of "
                         f"{bits} bits need ceil({n_cols} * {bits} / 8) = {expected}")
