"""Listing and exposing inner tensors of user ONNX files (dnnstress.models.onnx_layers),
and the optional torchvision export script's behaviour without PyTorch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from dnnstress.models.onnx_layers import LayerInfo, expose_layers, list_layers, onnx_file_spec

ROOT = Path(__file__).resolve().parents[1]
EXPORT_SCRIPT = ROOT / "models" / "export_torchvision.py"

rng = np.random.default_rng(0)
W1 = rng.standard_normal((6, 5)).astype(np.float32)
W2 = rng.standard_normal((5, 3)).astype(np.float32)


def _mlp(ir_version=14):
    """x (N, 6) -> MatMul -> h -> Relu -> r -> MatMul -> y (N, 3); only y is an output."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["hidden"], name="fc1"),
         helper.make_node("Relu", ["hidden"], ["hidden_relu"], name="relu1"),
         helper.make_node("MatMul", ["hidden_relu", "w2"], ["y"], name="fc2")],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(W1, "w1"), numpy_helper.from_array(W2, "w2")])
    # ir_version 14 is what onnx 1.23 writes by default, newer than onnxruntime reads.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=ir_version)


def test_list_layers_names_ops_and_inferred_shapes():
    assert list_layers(_mlp()) == [
        LayerInfo("hidden", "MatMul", ("batch", 5)),
        LayerInfo("hidden_relu", "Relu", ("batch", 5)),
        LayerInfo("y", "MatMul", ("batch", 3)),
    ]


def test_list_layers_reads_files_and_reports_unknown_shapes(tmp_path):
    # A Reshape to a runtime-computed shape: inference knows the rank only partly.
    graph = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("Reshape", ["x", "dyn"], ["r"]),
         helper.make_node("Identity", ["x"], ["x_copy"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("dyn", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("x_copy", TensorProto.FLOAT, [2, 3])])
    path = tmp_path / "g.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    layers = {info.name: info for info in list_layers(path)}
    assert layers["s"] == LayerInfo("s", "Shape", (2,))
    assert layers["x_copy"].shape == (2, 3)
    assert layers["r"].op_type == "Reshape" and layers["r"].shape is None


def test_exposed_tensor_matches_numpy_and_original_output_is_kept(tmp_path):
    model = _mlp()
    before = model.SerializeToString()
    out = expose_layers(model, ["hidden_relu", "hidden"], tmp_path / "exposed.onnx")
    assert model.SerializeToString() == before  # the caller's model is not modified
    exposed = onnx.load(out)
    assert exposed.ir_version <= 10
    assert [o.name for o in exposed.graph.output] == ["y", "hidden_relu", "hidden"]
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((4, 6)).astype(np.float32)
    y, relu, hidden = session.run(None, {"x": x})
    np.testing.assert_allclose(hidden, x @ W1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(relu, np.maximum(x @ W1, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, np.maximum(x @ W1, 0) @ W2, rtol=1e-5, atol=1e-5)
    assert session.get_outputs()[1].shape == ["batch", 5]


def test_expose_from_file_with_external_weights(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    onnx.save_model(_mlp(), source / "mlp.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="mlp.weights", size_threshold=0)
    out = expose_layers(source / "mlp.onnx", "hidden_relu", tmp_path / "out.onnx")
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((2, 6)).astype(np.float32)
    np.testing.assert_allclose(session.run(["hidden_relu"], {"x": x})[0],
                               np.maximum(x @ W1, 0), rtol=1e-5, atol=1e-6)


def test_exposing_an_existing_output_does_not_duplicate_it(tmp_path):
    out = expose_layers(_mlp(ir_version=8), ["y", "y"], tmp_path / "same.onnx")
    exposed = onnx.load(out)
    assert [o.name for o in exposed.graph.output] == ["y"]
    assert exposed.ir_version == 8  # already readable: left as it was


def test_unknown_name_lists_close_matches(tmp_path):
    with pytest.raises(ValueError, match=r"no tensor named 'hiden_relu'.*'hidden_relu'"):
        expose_layers(_mlp(), ["hiden_relu"], tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="no tensor named 'x'"):  # an input, not produced
        expose_layers(_mlp(), ["x"], tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="empty"):
        expose_layers(_mlp(), [], tmp_path / "x.onnx")
    assert not os.path.exists(tmp_path / "x.onnx")


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="no ONNX file"):
        list_layers(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\x00not protobuf" * 10)
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        list_layers(tmp_path / "junk.onnx")
    with pytest.raises(TypeError, match="path to an .onnx file"):
        list_layers(42)


# --- models/export_torchvision.py ----------------------------------------------------

def test_export_script_help_works_without_torch():
    result = subprocess.run([sys.executable, str(EXPORT_SCRIPT), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for word in ("vgg16", "googlenet", "resnet50", "inception5b", "pooled"):
        assert word in result.stdout


def test_export_script_says_torch_is_missing(tmp_path):
    # Hide torch even where it is installed, so the message path always runs.
    output = str(tmp_path / "r.onnx")
    code = ("import runpy, sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "
            f"sys.argv = ['export_torchvision.py', 'resnet50', '-o', {output!r}]; "
            f"runpy.run_path({str(EXPORT_SCRIPT)!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "needs PyTorch and torchvision" in result.stderr
    assert not (tmp_path / "r.onnx").exists()


# --- registry entry -------------------------------------------------------------------

def _small_cnn(tmp_path, recipe=None, spatial=(8, 8)):
    """image (N, 3, 8, 8) -> Conv 3x3 -> Relu ("feat") -> GlobalAveragePool ("pooled")."""
    kernel = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "k"], ["conv"], kernel_shape=[3, 3]),
         helper.make_node("Relu", ["conv"], ["feat"]),
         helper.make_node("GlobalAveragePool", ["feat"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["logits"])],
        "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, *spatial])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        initializer=[numpy_helper.from_array(kernel, "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if recipe is not None:
        helper.set_model_props(model, {"dnnstress.preprocessing": json.dumps(recipe)})
    path = tmp_path / "cnn.onnx"
    onnx.save_model(model, path)
    return path, kernel


def _numpy_conv_relu(x, kernel):
    out = np.zeros((x.shape[0], 4, 6, 6))
    for i in range(6):
        for j in range(6):
            out[:, :, i, j] = np.einsum("ncuv,kcuv->nk", x[:, :, i:i + 3, j:j + 3], kernel)
    return np.maximum(out, 0)


def test_onnx_file_spec_exposes_layers_through_the_cache(tmp_path):
    path, kernel = _small_cnn(tmp_path)
    spec = onnx_file_spec(path, ["pooled", "feat"], mean=(10, 20, 30), std=(2, 4, 8))
    assert spec.name == "cnn" and spec.input_name == "image" and spec.input_size == 8
    assert spec.default_layer == "pooled" and spec.resize_size == 9  # 8 * 8 // 7
    assert spec.layers["feat"].shape == (4, 6, 6) and spec.layers["pooled"].shape == (4, 1, 1)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    x = spec.preprocess(image, policy="resize")[None]
    np.testing.assert_allclose(
        x[0], ((image - np.array([10, 20, 30])) / np.array([2, 4, 8])).transpose(2, 0, 1),
        rtol=1e-6)
    session = ort.InferenceSession(str(spec.onnx_path(cache_dir=tmp_path / "cache")),
                                   providers=["CPUExecutionProvider"])
    feat, pooled = session.run(["feat", "pooled"], {"image": x})
    expected = _numpy_conv_relu(x.astype(np.float64), kernel)
    np.testing.assert_allclose(feat, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled[:, :, 0, 0], expected.mean(axis=(2, 3)), rtol=1e-5,
                               atol=1e-5)
    other = onnx_file_spec(path, ["feat"], mean=(0, 0, 0), std=(1, 1, 1))
    assert other.artifact != spec.artifact  # other layers, other cache file


def test_onnx_file_spec_uses_the_export_recipe(tmp_path):
    recipe = {"resize_shorter_side": 10, "crop_size": 8, "mean": [0.485, 0.456, 0.406],
              "std": [0.229, 0.224, 0.225], "input_range": "0..255"}
    path, _ = _small_cnn(tmp_path, recipe=recipe)
    spec = onnx_file_spec(path, "feat", name="exported")
    assert (spec.mean, spec.std, spec.resize_size) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 10)


def test_onnx_file_spec_errors(tmp_path):
    path, _ = _small_cnn(tmp_path)
    with pytest.raises(ValueError, match="pass mean= and std="):
        onnx_file_spec(path, ["feat"])
    with pytest.raises(ValueError, match=r"no tensor named 'feet'.*'feat'"):
        onnx_file_spec(path, ["feet"], mean=(0, 0, 0), std=(1, 1, 1))
    (tmp_path / "dynamic").mkdir()
    dynamic, _ = _small_cnn(tmp_path / "dynamic", spatial=("H", "W"))
    with pytest.raises(ValueError, match="pass input_size="):
        onnx_file_spec(dynamic, ["pooled"], mean=(0, 0, 0), std=(1, 1, 1))
    with pytest.raises(ValueError, match="feature size must be known"):
        onnx_file_spec(dynamic, ["feat"], input_size=8, mean=(0, 0, 0), std=(1, 1, 1))


# --- fixed-batch files and external data ----------------------------------------------------

def _fixed_batch_cnn(tmp_path, batch=2, opset=17):
    """image (2, 3, 8, 8) -> Conv -> Relu ("feat") -> Reshape to the baked (2, 144) ("flat")
    and GlobalAveragePool ("pooled"), as an export with a fixed batch writes it."""
    kernel = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "k"], ["conv"], kernel_shape=[3, 3]),
         helper.make_node("Relu", ["conv"], ["feat"]),
         helper.make_node("Reshape", ["feat", "flat_shape"], ["flat"]),
         helper.make_node("GlobalAveragePool", ["feat"], ["pooled"])],
        "fixed",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("flat", TensorProto.FLOAT, [batch, 144])],
        initializer=[numpy_helper.from_array(kernel, "k"),
                     numpy_helper.from_array(np.array([batch, 144], np.int64), "flat_shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=8)
    path = tmp_path / "fixed.onnx"
    onnx.save_model(model, path)
    return path, kernel


@pytest.mark.parametrize("n_images", [1, 2, 5, 32])
def test_fixed_batch_file_runs_any_batch(tmp_path, n_images):
    path, kernel = _fixed_batch_cnn(tmp_path)
    spec = onnx_file_spec(path, ["flat", "pooled"], mean=(0, 0, 0), std=(1, 1, 1))
    assert spec.layers["flat"].shape == (144,) and spec.layers["pooled"].shape == (4, 1, 1)
    session = ort.InferenceSession(str(spec.onnx_path(cache_dir=tmp_path / "cache")),
                                   providers=["CPUExecutionProvider"])
    x = rng.standard_normal((n_images, 3, 8, 8)).astype(np.float32)
    flat, pooled = session.run(["flat", "pooled"], {"image": x})
    expected = _numpy_conv_relu(x.astype(np.float64), kernel)
    assert flat.shape == (n_images, 144) and pooled.shape == (n_images, 4, 1, 1)
    np.testing.assert_allclose(flat, expected.reshape(n_images, -1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled[:, :, 0, 0], expected.mean(axis=(2, 3)), rtol=1e-5,
                               atol=1e-5)


def test_fixed_batch_file_with_old_opset_says_to_re_export(tmp_path):
    path, _ = _fixed_batch_cnn(tmp_path, opset=10)
    with pytest.raises(ValueError, match="fixed batch of 2 images with opset 10; re-export"):
        expose_layers(path, ["flat"], tmp_path / "out.onnx", any_batch=True)
    expose_layers(path, ["flat"], tmp_path / "same.onnx")  # without any_batch: as it is
    assert _shape_of(onnx.load(tmp_path / "same.onnx").graph.input[0]) == [2, 3, 8, 8]


def _shape_of(info):
    return [d.dim_value or d.dim_param for d in info.type.tensor_type.shape.dim]


def _with_external_weights(tmp_path, location):
    """The small CNN saved with its kernel in ``outside/w.bin``, its location then set."""
    path, _ = _small_cnn(tmp_path)
    model = onnx.load(path)
    (tmp_path / "outside").mkdir(exist_ok=True)
    (tmp_path / "model").mkdir(exist_ok=True)
    onnx.save_model(model, tmp_path / "outside" / "m.onnx", save_as_external_data=True,
                    location="w.bin", size_threshold=0)
    model = onnx.load(tmp_path / "outside" / "m.onnx", load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    target = tmp_path / "model" / "m.onnx"
    onnx.save_model(model, target)
    return target


@pytest.mark.parametrize("location", ["../outside/w.bin", "ABSOLUTE", "link.bin", "."])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, location):
    if location == "ABSOLUTE":
        location = str(tmp_path / "outside" / "w.bin")
    if location == "link.bin":
        (tmp_path / "model").mkdir()
        os.symlink(tmp_path / "outside" / "w.bin", tmp_path / "model" / "link.bin")
    path = _with_external_weights(tmp_path, location)
    message = r"tensor 'k' keeps its data at .*, outside the model's folder"
    for call in (lambda: list_layers(path), lambda: expose_layers(path, "feat", tmp_path / "o"),
                 lambda: onnx_file_spec(path, "feat", mean=(0, 0, 0), std=(1, 1, 1))):
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    assert not (tmp_path / "o").exists()


def test_external_data_beside_the_model_is_read(tmp_path):
    path, kernel = _small_cnn(tmp_path)
    (tmp_path / "ext").mkdir()
    onnx.save_model(onnx.load(path), tmp_path / "ext" / "m.onnx", save_as_external_data=True,
                    location="sub_w.bin", size_threshold=0)
    out = expose_layers(tmp_path / "ext" / "m.onnx", "feat", tmp_path / "o.onnx")
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["feat"], {"image": x})[0],
                               _numpy_conv_relu(x.astype(np.float64), kernel), rtol=1e-5,
                               atol=1e-5)
