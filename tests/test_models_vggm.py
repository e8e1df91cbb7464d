"""MatConvNet simplenn -> ONNX conversion (dnnstress.models.vggm).

A tiny network with the structure of imagenet-vgg-m.mat is written with scipy.io.savemat,
converted, run with onnxruntime, and every layer's output compared with a direct numpy
transcription of MatConvNet's documented formulas (vl_nnconv, vl_nnpool, vl_nnnormalize,
vl_nnrelu, vl_nnsoftmax), written here in MatConvNet's own H x W x C layout.
"""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import scipy.io

from dnnstress.models.vggm import (
    convert_simplenn,
    layer_shapes,
    load_simplenn,
    simplenn_to_onnx,
    vggm_spec,
)

SIZE = 32


# ---------------------------------------------------------------------------------------
# The synthetic network
# ---------------------------------------------------------------------------------------

def _cell(*items):
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


def _tiny_layers(rng):
    """MatConvNet layer structs (as dicts) exercising every supported feature."""
    def conv(name, fh, fw, fin, fout, stride, pad):
        filters = rng.standard_normal((fh, fw, fin, fout)).astype(np.float32)
        filters /= np.sqrt(fh * fw * fin)
        biases = rng.standard_normal((1, fout)).astype(np.float32) * 0.1
        return {"type": "conv", "name": name, "weights": _cell(filters, biases),
                "stride": np.array([stride], dtype=float), "pad": np.array([pad], dtype=float)}

    return [
        conv("conv1", 5, 5, 3, 6, [2, 2], [1, 2, 0, 1]),           # 32x32 -> 16x15
        {"type": "relu", "name": "relu1", "leak": 0.0},
        {"type": "lrn", "name": "norm1", "param": np.array([[5, 2, 0.05, 0.75]])},
        {"type": "pool", "name": "pool1", "method": "max", "pool": np.array([[3, 3]]),
         "stride": 2.0, "pad": np.array([[0, 1, 0, 1]])},          # -> 8x7
        conv("conv2", 3, 3, 3, 8, [1, 1], [1, 1, 1, 1]),           # 2 groups of 3 channels
        {"type": "relu", "name": "relu2", "leak": 0.0},
        {"type": "pool", "name": "pool2", "method": "avg", "pool": np.array([[2, 3]]),
         "stride": np.array([[2, 1]]), "pad": np.array([[1, 0, 1, 1]])},  # -> 4x7
        conv("fc6", 4, 7, 8, 10, [1, 1], [0, 0, 0, 0]),            # covers the map: 1x1
        {"type": "relu", "name": "relu6", "leak": 0.1},
        {"type": "dropout", "name": "drop6", "rate": 0.5},
        conv("fc7", 1, 1, 10, 5, [1, 1], [0, 0, 0, 0]),
        {"type": "softmax", "name": "prob"},
    ]


def _save_net(path, layers, average_image, *, legacy=False, extra=None):
    if legacy:  # pre-beta-12 files: filters/biases fields, 'normalize', top-level meta
        for layer in layers:
            if layer["type"] == "conv":
                layer["filters"], layer["biases"] = layer.pop("weights")[0]
            if layer["type"] == "lrn":
                layer["type"] = "normalize"
    normalization = {"averageImage": average_image,
                     "imageSize": np.array([[SIZE, SIZE, 3]], dtype=float)}
    contents = {"layers": _cell(*layers)}
    if legacy:
        contents["normalization"] = normalization
    else:
        contents["meta"] = {"normalization": normalization,
                            "classes": {"description": _cell("cat", "dog", "a", "b", "c")}}
    contents.update(extra or {})
    scipy.io.savemat(path, contents)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("vggm") / "tiny.mat"
    average = rng.uniform(100, 130, (SIZE, SIZE, 3)).astype(np.float32)
    layers = _tiny_layers(rng)
    _save_net(path, layers, average)
    return path, layers, average


def _run(model, image):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"image": image}), strict=True))


# ---------------------------------------------------------------------------------------
# MatConvNet's formulas in numpy (H x W x C, float64), independent of the converter
# ---------------------------------------------------------------------------------------

def _pad_spatial(x, pad, value):
    top, bottom, left, right = pad
    return np.pad(x, ((top, bottom), (left, right), (0, 0)), constant_values=value)


def _ref_conv(x, layer):
    filters, biases = (np.asarray(w, dtype=np.float64) for w in layer["weights"][0])
    fh, fw, fin, fout = filters.shape
    sy, sx = np.broadcast_to(np.ravel(layer["stride"]), (2,)).astype(int)
    xp = _pad_spatial(x, np.ravel(layer["pad"]).astype(int), 0.0)
    out_h = (xp.shape[0] - fh) // sy + 1
    out_w = (xp.shape[1] - fw) // sx + 1
    groups = x.shape[2] // fin
    y = np.empty((out_h, out_w, fout))
    per_group = fout // groups
    for k in range(fout):
        g = k // per_group
        for i in range(out_h):
            for j in range(out_w):
                patch = xp[i * sy:i * sy + fh, j * sx:j * sx + fw, g * fin:(g + 1) * fin]
                y[i, j, k] = np.sum(patch * filters[:, :, :, k]) + biases.ravel()[k]
    return y


def _ref_pool(x, layer):
    ph, pw = np.ravel(layer["pool"]).astype(int)
    sy, sx = np.broadcast_to(np.ravel(layer["stride"]), (2,)).astype(int)
    pad = np.ravel(layer["pad"]).astype(int)
    # NaN marks padding: max ignores it (as -inf would), avg divides by the real count.
    xp = _pad_spatial(x, pad, np.nan)
    out_h = (xp.shape[0] - ph) // sy + 1
    out_w = (xp.shape[1] - pw) // sx + 1
    reduce = np.nanmax if layer["method"] == "max" else np.nanmean
    y = np.empty((out_h, out_w, x.shape[2]))
    for i in range(out_h):
        for j in range(out_w):
            y[i, j] = reduce(xp[i * sy:i * sy + ph, j * sx:j * sx + pw], axis=(0, 1))
    return y


def _ref_lrn(x, layer):
    n, kappa, alpha, beta = np.ravel(layer["param"])
    n = int(n)
    depth = x.shape[2]
    y = np.empty_like(x)
    for k in range(depth):
        # G(k) = [k - floor((N-1)/2), k + ceil((N-1)/2)] clipped to the channels
        lo, hi = max(0, k - (n - 1) // 2), min(depth - 1, k + n // 2)
        y[:, :, k] = x[:, :, k] * (kappa + alpha * np.sum(x[:, :, lo:hi + 1] ** 2, axis=2)) ** -beta
    return y


def _ref_forward(image_hwc, layers, average):
    x = image_hwc.astype(np.float64) - average
    outputs = []
    for layer in layers:
        kind = layer["type"]
        if kind == "conv":
            x = _ref_conv(x, layer)
        elif kind == "pool":
            x = _ref_pool(x, layer)
        elif kind in ("lrn", "normalize"):
            x = _ref_lrn(x, layer)
        elif kind == "relu":
            x = np.where(x > 0, x, layer["leak"] * x)
        elif kind == "softmax":
            e = np.exp(x - x.max(axis=2, keepdims=True))
            x = e / e.sum(axis=2, keepdims=True)
        outputs.append(x)  # dropout: identity at test time
    return outputs


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------

def test_every_layer_matches_matconvnet_formulas(tiny):
    path, layers, average = tiny
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, SIZE, SIZE, 3))
    outputs = _run(simplenn_to_onnx(load_simplenn(path)),
                   images.transpose(0, 3, 1, 2).astype(np.float32))
    assert list(outputs) == [f"L{i}" for i in range(1, len(layers) + 1)]
    for n, image in enumerate(images):
        for i, expected in enumerate(_ref_forward(image, layers, average), start=1):
            got = outputs[f"L{i}"][n].transpose(1, 2, 0)  # NCHW -> MatConvNet's HWC
            assert got.shape == expected.shape, f"L{i}"
            scale = np.abs(expected).max()
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale,
                                       err_msg=f"layer L{i} ({layers[i - 1]['name']})")


def test_expected_shapes_and_metadata(tiny):
    path, layers, _ = tiny
    model = simplenn_to_onnx(load_simplenn(path))
    props = {p.key: p.value for p in model.metadata_props}
    table = json.loads(props["dnnstress.layers"])
    assert [row["name"] for row in table] == [layer["name"] for layer in layers]
    shapes = [tuple(row["shape"]) for row in table]
    assert shapes[0] == (6, 16, 15)           # (32 + 1 + 2 - 5) // 2 + 1, (32 + 0 + 1 - 5) // 2 + 1
    assert shapes[3] == (6, 8, 7)             # max pool with [0 1 0 1] padding
    assert shapes[6] == (8, 4, 7)             # avg pool 2x3, stride [2 1], pad [1 0 1 1]
    assert shapes[7] == shapes[9] == (10, 1, 1)
    assert shapes[11] == (5, 1, 1)
    assert layer_shapes(load_simplenn(path)) == shapes
    assert json.loads(props["dnnstress.class_descriptions"]) == ["cat", "dog", "a", "b", "c"]
    # the declared output shapes agree with ONNX's own shape inference
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    assert model.ir_version <= 10
    for out in inferred.graph.output:
        dims = [d.dim_value for d in out.type.tensor_type.shape.dim[1:]]
        assert tuple(dims) == tuple(table[int(out.name[1:]) - 1]["shape"])


def test_legacy_layout_gives_the_same_network(tiny, tmp_path):
    path, layers, average = tiny
    legacy_layers = [dict(layer) for layer in layers]
    legacy = _save_net(tmp_path / "legacy.mat", legacy_layers, average, legacy=True)
    image = np.random.default_rng(2).uniform(0, 255, (1, 3, SIZE, SIZE)).astype(np.float32)
    modern_out = _run(simplenn_to_onnx(load_simplenn(path)), image)
    legacy_out = _run(simplenn_to_onnx(load_simplenn(legacy)), image)
    assert [layer.type for layer in load_simplenn(legacy).layers][2] == "lrn"
    for name, value in modern_out.items():
        np.testing.assert_array_equal(legacy_out[name], value)


def test_per_channel_mean_and_file_conversion(tiny, tmp_path):
    _, layers, _ = tiny
    mean = np.array([[[120.0, 110.0, 100.0]]], dtype=np.float32)  # 1x1x3
    path = _save_net(tmp_path / "mean.mat", [dict(layer) for layer in layers], mean)
    onnx_path = convert_simplenn(path, tmp_path / "mean.onnx")
    model = onnx.load(onnx_path)
    image = np.random.default_rng(3).uniform(0, 255, (SIZE, SIZE, 3))
    got = _run(model, image.transpose(2, 0, 1)[None].astype(np.float32))["L1"][0]
    expected = _ref_forward(image, layers[:1], mean.astype(np.float64))[0]
    np.testing.assert_allclose(got.transpose(1, 2, 0), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())


def test_three_dimensional_filters_are_one_output(tmp_path):
    # MATLAB drops trailing singleton dimensions: a 1-output 3x3x2 filter bank is 3-D.
    filters = np.arange(18, dtype=np.float32).reshape(3, 3, 2)
    layers = [{"type": "conv", "name": "c", "weights": _cell(filters, np.zeros((1, 1), np.float32)),
               "stride": 1.0, "pad": 0.0}]
    contents = {"layers": _cell(*layers),
                "meta": {"normalization": {"imageSize": np.array([[3, 3, 2]], dtype=float)}}}
    scipy.io.savemat(tmp_path / "one.mat", contents)
    net = load_simplenn(tmp_path / "one.mat")
    assert net.layers[0].params["filters"].shape == (3, 3, 2, 1)
    x = np.ones((1, 2, 3, 3), np.float32)
    assert _run(simplenn_to_onnx(net), x)["L1"].ravel().tolist() == [float(filters.sum())]


# --- errors ---------------------------------------------------------------------------

def test_file_without_layers_is_refused(tmp_path):
    scipy.io.savemat(tmp_path / "nolayers.mat", {"weights": np.ones((2, 2))})
    with pytest.raises(ValueError, match="no 'layers' variable"):
        load_simplenn(tmp_path / "nolayers.mat")


def test_unknown_layer_type_is_named(tiny, tmp_path):
    _, layers, average = tiny
    bad = [dict(layer) for layer in layers]
    bad[4] = {"type": "bnorm", "name": "bn2"}
    _save_net(tmp_path / "bad.mat", bad, average)
    with pytest.raises(ValueError, match=r"layer 5 \('bn2'\).*unsupported.*'bnorm'"):
        load_simplenn(tmp_path / "bad.mat")


def test_dagnn_file_is_refused(tmp_path):
    scipy.io.savemat(tmp_path / "dag.mat", {"layers": _cell({"name": "conv1"}),
                                            "vars": _cell({"name": "x"}), "params": _cell()})
    with pytest.raises(ValueError, match="DagNN"):
        load_simplenn(tmp_path / "dag.mat")


@pytest.mark.parametrize("change, message", [
    ({"param": np.array([[4, 2, 1e-4, 0.75]])}, "even"),
    ({"param": np.array([[5, 2]])}, "expected 4 finite numbers"),
])
def test_bad_lrn_parameters(tiny, tmp_path, change, message):
    _, layers, average = tiny
    bad = [dict(layer) for layer in layers]
    bad[2] = {**bad[2], **change}
    _save_net(tmp_path / "lrn.mat", bad, average)
    with pytest.raises(ValueError, match=message):
        load_simplenn(tmp_path / "lrn.mat")


@pytest.mark.parametrize("content", [b"", b"MATLAB 5.0 MAT-file" + bytes(10), bytes(300)],
                         ids=["empty", "truncated-header", "zeros"])
def test_unreadable_mat_file_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "bad.mat"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.mat is not a readable MATLAB file") as info:
        load_simplenn(path)
    assert "\n" not in str(info.value)


def test_missing_mat_file_says_where_to_download_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no MatConvNet file at .*nothere\.mat: "
                       r"download imagenet-vgg-m\.mat from https://www\.vlfeat\.org/"
                       r"matconvnet/models/imagenet-vgg-m\.mat"):
        load_simplenn(tmp_path / "nothere.mat")
    with pytest.raises(ValueError, match="is not a file"):
        load_simplenn(tmp_path)  # scipy would look for a sibling "<dir>.mat"


@pytest.mark.parametrize("index, change, message", [
    (0, {"pad": np.array([[1e6]])}, r"pad: expected integers from 0 to 4096"),
    (0, {"pad": np.array([[40, 40, 0, 0]])}, r"padding \[40, 40, 0, 0\] is larger than the 5x5"),
    (0, {"stride": np.array([[1e9, 1]])}, r"stride: expected integers from 1 to 4096"),
    (2, {"param": np.array([[10001, 2, 0.05, 0.75]])}, "wider than the 6 channels"),
    (2, {"param": np.array([[5, 0, 0.05, 0.75]])}, "kappa > 0"),
    (2, {"param": np.array([[5, 2, 0.05, -1]])}, "beta >= 0"),
    (3, {"pool": np.array([[3, 1e7]])}, r"pool: expected integers from 1 to 4096"),
], ids=["huge-pad", "pad-beyond-window", "huge-stride", "lrn-window", "lrn-kappa",
        "lrn-beta", "huge-pool"])
def test_absurd_layer_parameters_are_refused_at_conversion(tiny, tmp_path, index, change,
                                                           message):
    _, layers, average = tiny
    bad = [dict(layer) for layer in layers]
    bad[index] = {**bad[index], **change}
    path = _save_net(tmp_path / "absurd.mat", bad, average)
    with pytest.raises(ValueError, match=message):
        layer_shapes(load_simplenn(path))


@pytest.mark.parametrize("image_size, message", [
    ([[1e6, 1e6, 3]], r"imageSize \[1000000\.0, 1000000\.0, 3\.0\]: expected integers "
                      "from 1 to 4096"),
    ([[4096, 4096, 3]], r"layer 1 \('conv1'\) would output 6 x 2048 x 2047 values"),
])
def test_absurd_image_size_is_refused_at_conversion(tiny, tmp_path, image_size, message):
    # A huge input made one crafted file's extraction checkpoint 12.8 TB (sparse).
    _, layers, _ = tiny
    normalization = {"averageImage": np.zeros((1, 1, 3), np.float32),
                     "imageSize": np.array(image_size, dtype=float)}
    path = tmp_path / "big.mat"
    scipy.io.savemat(path, {"layers": _cell(*[dict(layer) for layer in layers]),
                            "meta": {"normalization": normalization}})
    with pytest.raises(ValueError, match=message):
        vggm_spec(path)


def test_filter_larger_than_the_map_is_refused(tiny, tmp_path):
    _, layers, average = tiny
    small = np.zeros((16, 16, 3), np.float32)
    path = _save_net(tmp_path / "small.mat", [dict(layer) for layer in layers], small)
    with pytest.raises(ValueError, match="does not match"):
        simplenn_to_onnx(load_simplenn(path))  # imageSize 32 vs 16x16 average image
    net = load_simplenn(path)
    net = type(net)(layers=net.layers, average_image=None, image_size=None)
    with pytest.raises(ValueError, match=r"layer 8 \('fc6'\).*does not fit the 3x5"):
        simplenn_to_onnx(net, image_size=(24, 24))  # pool2 then gives 3x5 maps; fc6 is 4x7


def test_channel_mismatch_is_refused(tiny):
    path, _, _ = tiny
    net = load_simplenn(path)
    with pytest.raises(ValueError, match="input size"):
        simplenn_to_onnx(type(net)(layers=net.layers, average_image=None, image_size=None))
    one_channel = type(net)(layers=net.layers, average_image=None, image_size=(SIZE, SIZE, 1))
    with pytest.raises(ValueError, match=r"layer 1 \('conv1'\): filters take 3 input channels"):
        simplenn_to_onnx(one_channel)


# --- registry entry -------------------------------------------------------------------

def test_vggm_spec_builds_and_runs_through_the_cache(tiny, tmp_path):
    path, layers, average = tiny
    spec = vggm_spec(path, name="tiny")
    assert list(spec.layers) == [f"L{i}" for i in range(1, 13)]
    assert spec.default_layer == "L12"  # fewer than 19 layers: the last one
    assert spec.layers["L8"].shape == (10, 1, 1) and spec.layers["L8"].n_features == 10
    assert spec.layers["L1"].description.startswith("conv1 (conv)")
    assert spec.input_size == SIZE and spec.artifact.startswith("tiny-")

    # The authors' preprocessing: whole image resized, RGB, 0..255 (no mean: in the graph).
    photo = np.random.default_rng(5).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    x = spec.preprocess(photo, policy="resize")
    np.testing.assert_array_equal(x, photo.transpose(2, 0, 1).astype(np.float32))

    onnx_file = spec.onnx_path(cache_dir=tmp_path)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (got,) = session.run([spec.layers["L8"].output], {spec.input_name: x[None]})
    expected = _ref_forward(photo.astype(np.float64), layers[:8], average)[-1]
    np.testing.assert_allclose(got[0].transpose(1, 2, 0), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())


def test_vggm_spec_defaults_to_layer_19(tmp_path):
    # 21 layers like VGG-M: 19 ReLUs on a 1x1 map after a 1x1 conv, then conv + softmax.
    rng = np.random.default_rng(6)
    conv = {"type": "conv", "name": "c", "stride": 1.0, "pad": 0.0,
            "weights": _cell(rng.standard_normal((1, 1, 3, 4)).astype(np.float32),
                             np.zeros((1, 4), np.float32))}
    relus = [{"type": "relu", "name": f"r{i}", "leak": 0.0} for i in range(18)]
    layers = [conv, *relus, dict(conv, name="fc"), {"type": "softmax", "name": "prob"}]
    layers[-2]["weights"] = _cell(rng.standard_normal((1, 1, 4, 2)).astype(np.float32),
                                  np.zeros((1, 2), np.float32))
    path = _save_net(tmp_path / "deep.mat", layers, np.zeros((1, 1, 3), np.float32))
    spec = vggm_spec(path)
    assert spec.name == "vgg-m" and spec.default_layer == "L19"
    assert spec.layers["L19"].shape == (4, 32, 32) and spec.layers["L21"].shape == (2, 32, 32)


def test_cli_extracts_vggm_features_with_the_authors_preprocessing(tiny, tmp_path,
                                                                   monkeypatch):
    from PIL import Image

    from dnnstress.cli import main

    path, _, _ = tiny
    monkeypatch.setenv("DNNSTRESS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(9)
    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    out = tmp_path / "vggm"
    assert main(["extract", "--vggm-mat", str(path), "--layer", "L8", "--dataset", "folder",
                 "--root", str(tmp_path / "images"), "--out", str(out),
                 "--no-progress"]) == 0
    features = np.load(out / "features.npz")
    assert features["train_x"].shape == (4, 10) and features["test_x"].shape == (4, 10)
    metadata = str(features["metadata"])
    assert '"model": "vgg-m"' in metadata and '"policy": "resize"' in metadata
    # Every layer in one pass (not read from the cache): L8 as extracted alone, bit for bit.
    every = tmp_path / "every"
    assert main(["extract", "--vggm-mat", str(path), "--layer", "all", "--dataset", "folder",
                 "--root", str(tmp_path / "images"), "--out", str(every), "--no-cache",
                 "--quiet"]) == 0
    assert sorted(p.name for p in every.iterdir()) == sorted(
        f"features-L{i}.npz" for i in range(1, 13))
    alone = np.load(every / "features-L8.npz")
    for name in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(alone[name], features[name], err_msg=name)
    assert np.load(every / "features-L1.npz")["train_x"].shape[1] == np.prod(
        vggm_spec(path).layers["L1"].shape)


def test_models_command_lists_vgg_m_and_how_to_enable_it(tiny, monkeypatch, capsys):
    from dnnstress.cli import main
    from dnnstress.models import get_model, registry

    monkeypatch.setattr(registry, "_REGISTRY",
                        {k: v for k, v in registry._REGISTRY.items() if k != "vgg-m"})
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "vgg-m (not enabled)" in listing and "--vggm-mat PATH" in listing
    assert "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-m.mat" in listing
    with pytest.raises(ValueError, match=r"vgg-m is not enabled: download https://www\.vlfeat"
                                         r"\.org/matconvnet/models/imagenet-vgg-m\.mat and "
                                         r"pass --vggm-mat PATH"):
        get_model("vgg-m")

    assert main(["models", "--vggm-mat", str(tiny[0])]) == 0
    listing = capsys.readouterr().out
    assert "vgg-m: MatConvNet simplenn network tiny.mat" in listing
    assert "  L12 " in listing and "not enabled" not in listing
    assert main(["models", "--vggm-mat", str(tiny[0].parent / "missing.mat")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no MatConvNet file at" in err and "Errno" not in err
