"""Fake data files the tests write: made from the format's specification, not by the
reader under test."""

import gzip
import struct

import numpy as np


def write_idx(path, array, *, compress=True):
    """IDX file written from the specification: 0, 0, type code, ndim, >u4 dims, >data."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float64): 0x0E}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path
