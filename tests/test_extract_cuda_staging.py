"""The CUDA branch of extraction, run on the CPU against a stand-in for CuPy whose copies
really are asynchronous (queued on their stream until an event is waited for) and a
stand-in IO binding that runs the real CPU session on the memory it was bound to.  A
missing wait, a wrong slice of a partial batch or a buffer reused too early would give
wrong features here.  The real GPU run is tests/test_extract.py's gpu-marked test."""

import ctypes
import sys
import types

import numpy as np
import pytest

from dnnstress.extract import (ExtractionOptions, create_session, extract_split,
                               extract_split_layers)
from dnnstress.models import resolve_layer, resolve_layers
from test_extract import TINY, expected_means, make_split
from test_extract_layers import FOUR


class Pinned(bytearray):
    """Page-locked host memory (as far as the stand-in can tell)."""


class DeviceArray(np.ndarray):
    """Device memory, held in host memory: ``set`` and ``get`` as CuPy has them."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)

    @property
    def device(self):
        return types.SimpleNamespace(id=0)

    def set(self, host, stream):
        assert isinstance(_owner(host), Pinned), "uploads must come from pinned memory"
        stream.queue.append((self, host.copy()))
        if stream.eager:  # the copy lands at once, while the batch before may still run
            stream.queue.pop()[0][...] = host

    def get(self):
        return np.array(self)


class Stream:
    """Copies land when an event after them is waited for (the latest a GPU may finish
    them), or at once with ``eager`` (the earliest)."""

    eager = False

    def __init__(self, non_blocking=False):
        self.queue = []

    def record(self):
        return Event(self, len(self.queue))


class Event:
    def __init__(self, stream, upto):
        self.stream, self.upto = stream, upto

    def synchronize(self):
        for target, values in self.stream.queue[:self.upto]:
            target[...] = values
        del self.stream.queue[:self.upto]


def fake_cupy(eager):
    module = types.ModuleType("cupy")
    module.float32 = np.float32
    module.empty = lambda shape, dtype: np.full(shape, np.nan, dtype).view(DeviceArray)
    stream = type("Stream", (Stream,), {"eager": eager})
    module.cuda = types.SimpleNamespace(Stream=stream, alloc_pinned_memory=Pinned)
    return module


class BoundSession:
    """The CPU session behind an io_binding(): reads and writes the bound addresses."""

    def __init__(self, session):
        self.session = session

    def io_binding(self):
        return Binding()

    def run_with_iobinding(self, binding):
        (name, (shape, pointer)), = binding.inputs.items()
        images = _at(pointer, shape)
        outputs = self.session.run(list(binding.outputs), {name: images.copy()})
        for (out_shape, out_pointer), out in zip(binding.outputs.values(), outputs):
            _at(out_pointer, out_shape)[...] = out


class Binding:
    def __init__(self):
        self.inputs, self.outputs = {}, {}

    def bind_input(self, name, device, device_id, dtype, shape, pointer):
        assert device == "cuda" and dtype is np.float32
        self.inputs[name] = (shape, pointer)

    def bind_output(self, name, device, device_id, dtype, shape, pointer):
        self.outputs[name] = (shape, pointer)

    def synchronize_outputs(self):
        pass


def _owner(array):
    while isinstance(array, np.ndarray):
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


def _at(pointer, shape):
    return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape)


@pytest.mark.parametrize("eager", [False, True], ids=["copies-late", "copies-early"])
@pytest.mark.parametrize("n, batch_size, decode_threads", [(23, 4, 3), (5, 8, 1), (16, 4, 2)])
def test_cuda_staging_gives_the_cpu_features(monkeypatch, tmp_path, n, batch_size,
                                             decode_threads, eager):
    monkeypatch.setenv("DNNSTRESS_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(eager))
    split = make_split(n, seed=n)
    options = ExtractionOptions(batch_size=batch_size, policy="resize", progress=False,
                                device="cuda", decode_threads=decode_threads)
    session = BoundSession(create_session(TINY.onnx_path(), "cpu"))
    features, kept = extract_split(split, TINY, resolve_layer(TINY), options, session=session)
    assert kept.all() and isinstance(features, np.ndarray) and features.shape == (n, 3)
    np.testing.assert_allclose(features, expected_means(split.images), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("eager", [False, True], ids=["copies-late", "copies-early"])
def test_cuda_staging_of_several_layers_gives_the_cpu_features(monkeypatch, tmp_path, eager):
    monkeypatch.setenv("DNNSTRESS_CACHE", str(tmp_path))
    split = make_split(11, seed=4)
    layers = resolve_layers(FOUR, "flat,means,mix")
    cpu, _ = extract_split_layers(split, FOUR, layers, ExtractionOptions(
        batch_size=4, policy="resize", progress=False))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(eager))
    options = ExtractionOptions(batch_size=4, policy="resize", progress=False,
                                device="cuda", decode_threads=2)
    session = BoundSession(create_session(FOUR.onnx_path(), "cpu"))
    cuda, kept = extract_split_layers(split, FOUR, layers, options, session=session)
    assert kept.all() and [f.shape for f in cuda] == [(11, 192), (11, 3), (11, 4)]
    for name, on_cuda, on_cpu in zip(("flat", "means", "mix"), cuda, cpu):
        np.testing.assert_array_equal(on_cuda, on_cpu, err_msg=name)
