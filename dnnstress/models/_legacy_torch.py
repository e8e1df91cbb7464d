"""Read a state dict saved in PyTorch's legacy (pre-1.6, non-zip) format with numpy alone.

The embedded EfficientNet-Lite0 weights ship in this format (see
``shared/reference/embedded-default.md``), and PyTorch is not a dependency.  The file is
a sequence of pickles followed by raw storage bytes:

1. the magic number ``0x1950a86a20f9469cfc6c``,
2. the protocol version ``1001``,
3. system info (``little_endian``, type sizes),
4. the state dict: an ``OrderedDict`` whose values are
   ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` and whose
   storages are persistent ids ``('storage', torch.FloatStorage, key, location, numel,
   view_metadata)``,
5. the list of storage keys, in the order their data follows,
6. for each key, an int64 element count and then the little-endian elements.

Unpickling runs code named by the file, so the unpickler here resolves only the handful
of globals this format needs, each to a harmless stand-in; anything else (``os.system``
and friends) is refused before it can be called.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from dataclasses import dataclass

import numpy as np

__all__ = ["LegacyFormatError", "load_legacy_state_dict"]

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

#: torch storage class name -> little-endian numpy dtype of its elements.
STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class LegacyFormatError(ValueError):
    """The file is not a legacy PyTorch state dict this reader can safely load."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a ``torch.*Storage`` class: only its element dtype matters."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass(frozen=True)
class _StorageRef:
    """A storage named by a persistent id; its bytes come after the pickles."""

    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """What ``_rebuild_tensor_v2`` would build, recorded until the storages are read."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored):
    # The trailing arguments (requires_grad, backward hooks, metadata) do not affect values.
    if not isinstance(storage, _StorageRef):
        raise LegacyFormatError("a tensor refers to something that is not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(map(int, size)),
                      tuple(map(int, stride)))


def _allowed_global(module: str, name: str):
    """The stand-in for an allowed ``module.name`` global, or ``None`` if refused."""
    if (module, name) == ("collections", "OrderedDict"):
        return collections.OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
        return _rebuild_tensor_v2
    if module == "torch" and name in STORAGE_DTYPES:
        return _StorageType(name)
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only build dicts, tensor stand-ins and storage references."""

    def find_class(self, module, name):
        found = _allowed_global(module, name)
        if found is None:
            raise LegacyFormatError(
                f"refusing to load global {module}.{name!s} from the weight file: only "
                "collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch "
                "storage types are allowed in a state dict")
        return found

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise LegacyFormatError(f"unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise LegacyFormatError(f"persistent id names no storage type: {pid!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise LegacyFormatError("storage views are not supported")
        return _StorageRef(str(key), storage_type.dtype, int(numel))


def _load_pickle(stream):
    try:
        return _RestrictedUnpickler(stream).load()
    except LegacyFormatError:
        raise
    except Exception as exc:  # truncated or garbled pickle: say so in one line
        raise LegacyFormatError(f"corrupt legacy PyTorch file ({exc})") from exc


def _check_header(stream) -> None:
    if _load_pickle(stream) != MAGIC_NUMBER:
        raise LegacyFormatError(
            "not a legacy PyTorch file (bad magic number); zip-format .pt/.pth files "
            "saved by PyTorch >= 1.6 are not supported")
    protocol = _load_pickle(stream)
    if protocol != PROTOCOL_VERSION:
        raise LegacyFormatError(f"unsupported legacy protocol version {protocol!r}")
    sys_info = _load_pickle(stream)
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian", False)):
        raise LegacyFormatError("only little-endian legacy files are supported")


def _read_storages(buffer: bytes, position: int, keys, refs: dict[str, _StorageRef]):
    """Slice each storage's elements out of ``buffer``; returns ``{key: 1-D array}``."""
    storages = {}
    for key in keys:
        if key not in refs:
            raise LegacyFormatError(f"storage {key!r} is listed but used by no tensor")
        ref = refs[key]
        if position + 8 > len(buffer):
            raise LegacyFormatError("file truncated in the storage data")
        count = int(np.frombuffer(buffer, "<i8", 1, position)[0])
        position += 8
        if count != ref.numel:
            raise LegacyFormatError(
                f"storage {key!r} holds {count} elements, the pickle says {ref.numel}")
        nbytes = count * ref.dtype.itemsize
        if position + nbytes > len(buffer):
            raise LegacyFormatError("file truncated in the storage data")
        storages[key] = np.frombuffer(buffer, ref.dtype, count, position)
        position += nbytes
    return storages


def _materialise(ref: _TensorRef, storage: np.ndarray) -> np.ndarray:
    """Apply the tensor's offset, size and (element) strides to its storage; copy out."""
    extent = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride) if n > 0)
    if any(n == 0 for n in ref.size):
        return np.zeros(ref.size, storage.dtype)
    if ref.offset < 0 or min(ref.stride, default=0) < 0 or extent >= storage.size:
        raise LegacyFormatError("a tensor reaches outside its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[ref.offset:], shape=ref.size,
        strides=tuple(s * storage.itemsize for s in ref.stride), writeable=False)
    return np.array(view, dtype=storage.dtype.newbyteorder("="))


def load_legacy_state_dict(path: str | os.PathLike) -> collections.OrderedDict:
    """Load a legacy-format PyTorch state dict as numpy arrays, without PyTorch.

    Parameters
    ----------
    path : str or path-like
        A ``.pth`` file written by ``torch.save`` before PyTorch 1.6 (or with
        ``_use_new_zipfile_serialization=False``) holding a flat dict of tensors.

    Returns
    -------
    collections.OrderedDict of str -> numpy.ndarray
        Parameter name to a native-endian copy of the tensor, in file order.

    Raises
    ------
    LegacyFormatError
        If the file is not in this format, is truncated, or names any global outside
        the small allowed set (the pickle is never allowed to run arbitrary code).
    """
    with open(path, "rb") as file:
        buffer = file.read()
    stream = io.BytesIO(buffer)
    _check_header(stream)
    state = _load_pickle(stream)
    if not isinstance(state, dict):
        raise LegacyFormatError(f"expected a state dict, found {type(state).__name__}")
    keys = _load_pickle(stream)
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise LegacyFormatError("the storage key list is malformed")
    refs = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise LegacyFormatError(f"entry {name!r} is not a tensor")
        refs[value.storage.key] = value.storage
    storages = _read_storages(buffer, stream.tell(), keys, refs)
    missing = refs.keys() - storages.keys()
    if missing:
        raise LegacyFormatError(f"no data for storage(s) {sorted(missing)}")
    return collections.OrderedDict(
        (name, _materialise(ref, storages[ref.storage.key])) for name, ref in state.items())
