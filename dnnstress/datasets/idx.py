"""Reader for the IDX format of (Fashion-)MNIST, gzipped or not.

Layout: two zero bytes, a type code, the number of dimensions, then one big-endian
uint32 per dimension, then the data in C order, big-endian.  Every header field and the
data length are checked, so a truncated download fails with a message naming the file
instead of a reshape error or a silently short array.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

# Type codes of the IDX specification -> big-endian numpy dtypes.
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path) -> np.ndarray:
    """The array stored in IDX file ``path`` (gzip is detected from the content).

    Returns
    -------
    numpy.ndarray
        Native byte order, shape and type from the header.

    Raises
    ------
    ValueError
        The file is not IDX, its header is inconsistent, or it is truncated.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()!r})")
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        raise ValueError(f"{path}: not an IDX file (unknown type code 0x{code:02x})")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    dtype = np.dtype(_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_size
    if actual != expected:
        state = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(f"{path}: IDX file {state}: header declares shape {shape} "
                         f"({expected} data bytes) but {actual} bytes follow")
    data = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: corrupt or truncated gzip data ({error})") from error
