"""Read a state dict saved in PyTorch's legacy (pre-1.6, non-zip) format with numpy alone.

The embedded EfficientNet-Lite0 weights ship in this format (see
``docs/embedded-default.md``), and PyTorch is not a dependency.  The file is
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
and friends) is refused before it can be called.  The state of an object (pickle's
``BUILD``) may only be set on the state dict itself.  Every size the file declares is
checked before anything is allocated: a storage holds no more than the file's bytes, a
tensor reads only inside its storage, and the tensors together never take more memory
than the file, so a few crafted bytes cannot ask for gigabytes.
"""

from __future__ import annotations

import collections
import io
import math
import operator
import os
import pickle
import reprlib
from dataclasses import dataclass

import numpy as np

__all__ = ["LegacyFormatError", "load_legacy_state_dict"]

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
#: More dimensions than any real tensor has; a bound on what a crafted file can ask for.
MAX_DIMS = 32

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

# Error messages quote file content through this: bounded in length and nesting depth, so
# a deeply nested or huge crafted value can neither recurse without end nor flood the line.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 40, 40
_describe = _REPR.repr


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

    @property
    def nbytes(self) -> int:
        return math.prod(self.size) * self.storage.dtype.itemsize


def _integer(value, what: str) -> int:
    if isinstance(value, bool):
        raise LegacyFormatError(f"{what} is {value!r}, not an integer")
    try:
        return operator.index(value)
    except TypeError:
        raise LegacyFormatError(f"{what} is {_describe(value)}, not an integer") from None


def _integers(values, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or len(values) > MAX_DIMS:
        raise LegacyFormatError(f"tensor {what} is {_describe(values)}, not a tuple of at "
                                f"most {MAX_DIMS} integers")
    return tuple(_integer(value, f"a tensor {what[:-1]}") for value in values)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored):
    """Check the view a tensor takes of its storage and record it (nothing is allocated).

    The view must lie inside the storage and hold no more elements than the storage:
    strides are non-negative, so a zero stride cannot repeat a few stored values into an
    arbitrarily large tensor.
    """
    # The trailing arguments (requires_grad, backward hooks, metadata) do not affect values.
    if not isinstance(storage, _StorageRef):
        raise LegacyFormatError("a tensor refers to something that is not a storage")
    ref = _TensorRef(storage, _integer(storage_offset, "a tensor's storage offset"),
                     _integers(size, "sizes"), _integers(stride, "strides"))
    if len(ref.size) != len(ref.stride):
        raise LegacyFormatError(f"a tensor has {len(ref.size)} sizes but "
                                f"{len(ref.stride)} strides")
    if min(ref.size, default=0) < 0 or min(ref.stride, default=0) < 0 or ref.offset < 0:
        raise LegacyFormatError(f"a tensor has a negative size, stride or offset (size "
                                f"{ref.size}, stride {ref.stride}, offset {ref.offset})")
    elements = math.prod(ref.size)
    if elements == 0:
        if max(ref.size, default=0) > storage.numel + MAX_DIMS:
            raise LegacyFormatError(f"an empty tensor declares size {ref.size}")
        return ref
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= storage.numel or elements > storage.numel:
        raise LegacyFormatError(
            f"a tensor of size {ref.size}, stride {ref.stride} and offset {ref.offset} "
            f"reaches outside its storage of {storage.numel} elements")
    return ref


def _allowed_global(module: str, name: str):
    """The stand-in for an allowed ``module.name`` global, or ``None`` if refused."""
    if (module, name) == ("collections", "OrderedDict"):
        return collections.OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
        return _rebuild_tensor_v2
    if module == "torch" and name in STORAGE_DTYPES:
        return _StorageType(name)
    return None


class _RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that can only build dicts, tensor stand-ins and storage references.

    The pure-Python unpickler, not the C one: its dispatch table can refuse ``BUILD``,
    and its memo is a dict, so a crafted memo index cannot allocate a huge table.

    Parameters
    ----------
    stream : binary file
    max_bytes : int
        Bytes of storage data the file can hold at most (its size): a storage declaring
        more elements is refused before anything is read.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, stream, max_bytes: int):
        super().__init__(stream)
        self.max_bytes = max_bytes
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module, name):
        found = _allowed_global(module, name)
        if found is None:
            raise LegacyFormatError(
                f"refusing to load global {module[:60]}.{name[:60]} from the "
                "weight file: only collections.OrderedDict, torch._utils._rebuild_tensor_v2 "
                "and torch storage types are allowed in a state dict")
        return found

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise LegacyFormatError(f"unexpected persistent id {_describe(pid)}")
        storage_type, key, location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise LegacyFormatError(f"persistent id names no storage type: {_describe(pid)}")
        if not (isinstance(key, str) and isinstance(location, str)):
            raise LegacyFormatError(f"malformed storage key or location in {_describe(pid)}")
        if len(pid) > 5 and pid[5] is not None:
            raise LegacyFormatError("storage views are not supported")
        ref = _StorageRef(key, storage_type.dtype, _integer(numel, "a storage size"))
        if not 0 <= ref.numel * ref.dtype.itemsize <= self.max_bytes:
            raise LegacyFormatError(f"storage {key!r} declares {ref.numel} elements, more "
                                    f"than the file's {self.max_bytes} bytes can hold")
        if self.storages.setdefault(key, ref) != ref:
            raise LegacyFormatError(f"storage {key!r} is declared twice, differently")
        return ref

    def load_build(self):
        # torch keeps the modules' versions in the state dict's ``_metadata`` attribute;
        # they do not change values.  State set on anything else (a function, a class, a
        # stand-in) would change this reader itself: refused.
        state = self.stack.pop()
        target = self.stack[-1]
        if type(target) is not collections.OrderedDict:
            raise LegacyFormatError(f"refusing to set the state of {_describe(target)} "
                                    f"to {_describe(state)}")

    dispatch[pickle.BUILD[0]] = load_build


def _load_pickle(stream, max_bytes: int):
    unpickler = _RestrictedUnpickler(stream, max_bytes)
    try:
        return unpickler.load(), unpickler.storages
    except LegacyFormatError:
        raise
    except Exception as exc:  # truncated or garbled pickle: say so in one line
        raise LegacyFormatError(f"corrupt legacy PyTorch file ({_describe(exc)})") from exc


def _check_header(stream, max_bytes: int) -> None:
    try:
        magic = _load_pickle(stream, max_bytes)[0]
    except LegacyFormatError:  # a zip file, say, read as a pickle
        magic = None
    if magic != MAGIC_NUMBER:
        raise LegacyFormatError(
            "not a legacy PyTorch file (bad magic number); zip-format .pt/.pth files "
            "saved by PyTorch >= 1.6 are not supported")
    protocol = _load_pickle(stream, max_bytes)[0]
    if protocol != PROTOCOL_VERSION:
        raise LegacyFormatError(f"unsupported legacy protocol version {_describe(protocol)}")
    sys_info = _load_pickle(stream, max_bytes)[0]
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian", False) is True):
        raise LegacyFormatError("only little-endian legacy files are supported")


def _read_storages(buffer: bytes, position: int, keys, refs: dict[str, _StorageRef]):
    """Slice each storage's elements out of ``buffer``; returns ``{key: 1-D array}``."""
    storages = {}
    for key in keys:
        if key not in refs:
            raise LegacyFormatError(f"storage {key!r} is listed but used by no tensor")
        if key in storages:
            raise LegacyFormatError(f"storage {key!r} is listed twice")
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
    """Apply the tensor's offset, size and (element) strides to its storage; copy out.

    :func:`_rebuild_tensor_v2` has checked that the view lies inside the storage.
    """
    if math.prod(ref.size) == 0:
        return np.zeros(ref.size, storage.dtype.newbyteorder("="))
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
        Parameter name to a native-endian copy of the tensor, in file order.  Entries
        that are the same view of the same storage (tied weights) share one array.

    Raises
    ------
    LegacyFormatError
        If the file is not in this format, is truncated, names any global outside the
        small allowed set (the pickle is never allowed to run arbitrary code), or
        declares tensors outside their storage or larger, together, than the file.
    """
    with open(path, "rb") as file:
        buffer = file.read()
    try:
        return _load(buffer)
    except LegacyFormatError as exc:
        raise LegacyFormatError(f"{os.fspath(path)}: {exc}") from exc.__cause__


def _load(buffer: bytes) -> collections.OrderedDict:
    stream = io.BytesIO(buffer)
    _check_header(stream, len(buffer))
    state, refs = _load_pickle(stream, len(buffer))
    if not isinstance(state, dict):
        raise LegacyFormatError(f"expected a state dict, found {type(state).__name__}")
    keys, _ = _load_pickle(stream, len(buffer))
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise LegacyFormatError("the storage key list is malformed")
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise LegacyFormatError(f"entry {_describe(name)} is not a tensor")
    # Each distinct view is copied once, so the copies together must fit in the file.
    needed = sum(ref.nbytes for ref in set(state.values()))
    if needed > len(buffer):
        raise LegacyFormatError(f"the tensors would take {needed} bytes, more than the "
                                f"{len(buffer)}-byte file holds")
    storages = _read_storages(buffer, stream.tell(), keys, refs)
    missing = {ref.storage.key for ref in state.values()} - storages.keys()
    if missing:
        raise LegacyFormatError(f"no data for storage(s) {sorted(missing)}")
    arrays = {ref: _materialise(ref, storages[ref.storage.key]) for ref in set(state.values())}
    return collections.OrderedDict((name, arrays[ref]) for name, ref in state.items())
