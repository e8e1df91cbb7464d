"""Several layers from one forward pass (`extract_layers`, `dnnstress extract --layer A,B`):
equal bit for bit to one extraction per layer, sharing checkpoints and cache entries with
them both ways, resuming after a fault between two layers' writes, and the errors.  On a
tiny ONNX network with four outputs whose values are easy to compute by hand."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from dnnstress import extract
from dnnstress.datasets import ImageFileSplit
from dnnstress.extract import ExtractionOptions, extract_features, extract_layers, layer_file_name
from dnnstress.features import FeatureSet
from dnnstress.models import ALL_LAYERS, Layer, ModelSpec, register, resolve_layers
from test_extract import SIZE, write_image_folder

MIX = np.array([[1.0, -2.0, 0.5, 0.0], [0.25, 1.0, -1.0, 3.0], [2.0, 0.0, 1.5, -0.5]],
               np.float32)


def build_four_outputs(path, names=("means", "maxes", "mix", "flat")):
    """input (N, 3, 8, 8) -> channel means (N, 3), channel maxima (N, 3), means @ MIX
    (N, 4) and the flattened input (N, 192)."""
    means, maxes, mix, flat = names
    nodes = [helper.make_node("ReduceMean", ["input"], [means], axes=[2, 3], keepdims=0),
             helper.make_node("ReduceMax", ["input"], [maxes], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", [means, "mix.weight"], [mix]),
             helper.make_node("Flatten", ["input"], [flat], axis=1)]
    graph = helper.make_graph(
        nodes, "four_outputs",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", d])
         for name, d in zip(names, (3, 3, 4, 3 * SIZE * SIZE))],
        [numpy_helper.from_array(MIX, "mix.weight")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


FOUR = register(ModelSpec(
    name="tiny-four", description="four outputs (test network)",
    layers={layer.name: layer for layer in (
        Layer("means", "means", (3,), "mean of each channel"),
        Layer("maxes", "maxes", (3,), "maximum of each channel"),
        Layer("mix", "mix", (4,), "means times a fixed matrix"),
        Layer("flat", "flat", (3 * SIZE * SIZE,), "the input, flattened"))},
    default_layer="means", input_name="input", input_size=SIZE, resize_size=SIZE,
    mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), artifact="tiny-four-v1.onnx",
    builder=build_four_outputs), replace=True)


def expected_layers(folder):
    """Every layer computed from the image files with PIL and numpy."""
    pixels = np.stack([np.asarray(Image.open(path).convert("RGB").resize(
        (SIZE, SIZE), Image.Resampling.BICUBIC), np.float32).transpose(2, 0, 1)
        for path in sorted(folder.rglob("*.png"))])
    means = pixels.mean(axis=(2, 3))
    return {"means": means, "maxes": pixels.max(axis=(2, 3)),
            "mix": means.astype(np.float64) @ MIX, "flat": pixels.reshape(len(pixels), -1)}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNSTRESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def images(tmp_path):
    write_image_folder(tmp_path / "images")  # 6 train and 6 test images of 2 classes
    return tmp_path / "images"


@pytest.fixture
def options():
    return ExtractionOptions(batch_size=4, policy="resize", progress=False)  # 4 + 2


class Runs:
    """Records the outputs every network run fetches (sessions made by extract)."""

    def __init__(self, monkeypatch):
        self.fetched, self.sessions = [], 0
        create = extract.create_session

        def recording_session(*args, **kwargs):
            self.sessions += 1
            session = create(*args, **kwargs)
            runs = self

            class Recording:
                def run(self, names, feeds):
                    runs.fetched.append(list(names))
                    return session.run(names, feeds)

            return Recording()

        monkeypatch.setattr(extract, "create_session", recording_session)


@pytest.fixture
def loads(monkeypatch):
    """Counts image loads per split."""
    counts = {"train": 0, "test": 0}
    original = ImageFileSplit.load_image

    def counting(self, i):
        counts[self.name] += 1
        return original(self, i)

    monkeypatch.setattr(ImageFileSplit, "load_image", counting)
    return counts


def _assert_same_sets(one: FeatureSet, other: FeatureSet):
    for name in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(one, name), getattr(other, name), err_msg=name)
    assert one.metadata == other.metadata and one.class_names == other.class_names


def test_one_pass_equals_one_extraction_per_layer_bit_for_bit(tmp_path, images, options,
                                                              monkeypatch):
    runs = Runs(monkeypatch)
    together = extract_layers("tiny-four", ["flat", "means", "mix"], "folder", images,
                              options=options, cache_dir=tmp_path / "together")
    assert list(together) == ["flat", "means", "mix"]  # the order asked for
    assert runs.sessions == 1 and runs.fetched == [["flat", "means", "mix"]] * 4  # 2 batches x 2
    reference = expected_layers(images / "train")
    for name, features in together.items():
        alone = extract_features("tiny-four", name, "folder", images, options=options,
                                 cache_dir=tmp_path / f"alone-{name}")
        _assert_same_sets(features, alone)
        assert features.metadata["layer"] == name
        np.testing.assert_allclose(features.train_x, reference[name], rtol=1e-5, atol=1e-3)
    assert runs.fetched[4:] == [["flat"]] * 4 + [["means"]] * 4 + [["mix"]] * 4


def test_a_single_layer_extraction_reads_what_a_several_layer_one_cached(images, options,
                                                                         monkeypatch):
    together = extract_layers("tiny-four", "means,mix", "folder", images, options=options)
    runs = Runs(monkeypatch)
    for name in ("means", "mix"):
        _assert_same_sets(extract_features("tiny-four", name, "folder", images,
                                           options=options), together[name])
    assert runs.sessions == 0


def test_a_several_layer_extraction_runs_only_the_layers_not_cached(images, options,
                                                                    monkeypatch):
    means = extract_features("tiny-four", "means", "folder", images, options=options)
    runs = Runs(monkeypatch)
    together = extract_layers("tiny-four", ["mix", "means", "maxes"], "folder", images,
                              options=options)
    assert runs.fetched == [["mix", "maxes"]] * 4
    _assert_same_sets(together["means"], means)
    assert list(together) == ["mix", "means", "maxes"]
    runs.fetched.clear()
    again = extract_layers("tiny-four", ["maxes", "means", "mix"], "folder", images,
                           options=options)
    assert runs.sessions == 1 and runs.fetched == []  # all cached: no network at all
    for name in again:
        _assert_same_sets(again[name], together[name])


def test_a_run_killed_between_two_layers_writes_resumes_identically(tmp_path, images,
                                                                    options, monkeypatch,
                                                                    cache, loads):
    clean = extract_layers("tiny-four", "means,mix,flat", "folder", images, options=options,
                           cache_dir=tmp_path / "clean")
    write = extract._Checkpoint.write
    calls = []

    def killed_at_the_fifth_write(self, *args):
        calls.append(self.prefix)
        if len(calls) == 5:  # batch 2 of the train split: "means" written, "mix" not yet
            raise KeyboardInterrupt
        write(self, *args)

    monkeypatch.setattr(extract._Checkpoint, "write", killed_at_the_fifth_write)
    with pytest.raises(KeyboardInterrupt):
        extract_layers("tiny-four", "means,mix,flat", "folder", images, options=options)
    states = sorted(p.name for p in (cache / "features").glob(".*.state.json"))
    assert len(states) == 3  # one checkpoint per layer
    monkeypatch.setattr(extract._Checkpoint, "write", write)
    loads.update(train=0, test=0)
    resumed = extract_layers("tiny-four", "means,mix,flat", "folder", images, options=options)
    # Batch 1 (images 0-3) was in every layer's checkpoint: only images 4 and 5 again.
    assert loads == {"train": 2, "test": 6}
    for name in clean:
        _assert_same_sets(resumed[name], clean[name])
    assert not [p for p in (cache / "features").iterdir() if p.name.startswith(".")]


def test_a_run_killed_after_a_set_was_stored_leaves_no_checkpoint_behind(
        images, options, monkeypatch, cache):
    """Killed between storing a layer's set and removing its checkpoints (seen once in
    the SIGKILL chain of test_extract_faults): the next run, finding the set stored,
    removes them."""
    remove_checkpoints = extract._CacheEntry.remove_checkpoints
    monkeypatch.setattr(extract._CacheEntry, "remove_checkpoints",
                        lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        extract_layers("tiny-four", "means,mix", "folder", images, options=options)
    folder = cache / "features"
    assert len(list(folder.glob("*.npz"))) == 1 and list(folder.glob(".*.state.json"))
    monkeypatch.setattr(extract._CacheEntry, "remove_checkpoints", remove_checkpoints)
    extract_layers("tiny-four", "means,mix", "folder", images, options=options)
    assert len(list(folder.glob("*.npz"))) == 2
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_a_run_killed_after_one_layers_set_was_stored_resumes_without_images(
        images, options, monkeypatch, cache, loads):
    save = FeatureSet.save

    def killed_at_the_second_save(self, path):
        if "mix" in path.name:
            raise KeyboardInterrupt
        return save(self, path)

    monkeypatch.setattr(FeatureSet, "save", killed_at_the_second_save)
    with pytest.raises(KeyboardInterrupt):
        extract_layers("tiny-four", "means,mix", "folder", images, options=options)
    monkeypatch.setattr(FeatureSet, "save", save)
    loads.update(train=0, test=0)
    runs = Runs(monkeypatch)
    resumed = extract_layers("tiny-four", "means,mix", "folder", images, options=options)
    assert loads == {"train": 0, "test": 0} and runs.fetched == []  # checkpoints complete
    expected = expected_layers(images / "test")
    np.testing.assert_allclose(resumed["mix"].test_x, expected["mix"], rtol=1e-5, atol=1e-3)
    assert len(list((cache / "features").glob("*.npz"))) == 2


def test_resolve_layers_reads_every_form_of_request():
    def names(request):
        return [layer.name for layer in resolve_layers(FOUR, request)]

    assert names(None) == ["means"]
    assert names(ALL_LAYERS) == names(f" {ALL_LAYERS} ") == names([ALL_LAYERS]) == [
        "means", "maxes", "mix", "flat"]
    assert names("flat, means,flat") == ["flat", "means"]
    assert names(("mix",)) == ["mix"]


@pytest.mark.parametrize("request_, error, message", [
    ("means,fc7", ValueError, "no layer 'fc7'; available: means, maxes, mix, flat, or 'all' "
                              "for every one$"),
    (["means", "all"], ValueError, "'all' already names every layer: ask for it alone"),
    ("all,means", ValueError, "'all' already names every layer"),
    ("means,,mix", ValueError, "empty layer name in 'means,,mix': name layers separated by "
                               "commas; available: means"),
    ([], ValueError, r"no layer named in \[\]; available: means, maxes, mix, flat, or"),
    (["means", 3], TypeError, "must be strings"),
    ("fc7,means,fc8", ValueError, "no layer 'fc7', 'fc8'; available"),  # all at once
    (3, TypeError, "a comma-separated string or a sequence of names, got int 3"),
])
def test_bad_layer_requests_are_named_before_any_work(request_, error, message, images,
                                                      cache):
    with pytest.raises(error, match=message):
        extract_layers("tiny-four", request_, "folder", images)
    assert not cache.exists()  # not even the network was built


def test_a_single_layer_request_for_all_points_at_the_several_layer_api(images):
    with pytest.raises(ValueError, match="no layer 'all'; available: means, maxes, mix, "
                                         "flat; 'all' asks for several layers: see "
                                         "resolve_layers and extract_layers$"):
        extract_features("tiny-four", ALL_LAYERS, "folder", images)


def test_cli_all_layers_writes_one_file_per_layer(tmp_path, images, capsys):
    from dnnstress.cli import main

    out = tmp_path / "out"
    base = ["extract", "--model", "tiny-four", "--dataset", "folder", "--root", str(images),
            "--policy", "resize", "--batch-size", "4", "--no-progress"]
    assert main(base + ["--layer", "all", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"features-{name}.npz" for name in FOUR.layers)
    assert printed == [f"wrote {out / f'features-{name}.npz'}: 6 train + 6 test vectors of "
                       f"{FOUR.layers[name].n_features} dims (tiny-four, layer {name})"
                       for name in FOUR.layers]
    assert main(base + ["--layer", "mix", "--out", str(tmp_path / "one")]) == 0
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["features.npz"]
    _assert_same_sets(FeatureSet.load(tmp_path / "one" / "features.npz"),
                      FeatureSet.load(out / "features-mix.npz"))


def test_cli_unknown_layer_is_a_one_line_error_listing_the_layers(tmp_path, images, capsys):
    from dnnstress.cli import main

    assert main(["extract", "--model", "tiny-four", "--layer", "means,fc7", "--dataset",
                 "folder", "--root", str(images), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no layer 'fc7'; available: means, maxes, mix, flat" in err


def test_cli_several_tensors_of_an_onnx_file(tmp_path, images, capsys):
    from dnnstress.cli import main

    network = tmp_path / "four.onnx"
    build_four_outputs(network, names=("means", "pool/max", "mix", "flat"))
    base = ["extract", "--model", str(network), "--mean", "0,0,0", "--std", "1,1,1",
            "--dataset", "folder", "--root", str(images), "--policy", "resize", "--quiet"]
    assert main(base + ["--layer", "all", "--out", str(tmp_path / "all")]) == 1
    assert ("--layer all is for a registered model's listed layers; an .onnx file has no "
            "list: name its tensors (list them with `dnnstress models --onnx"
            in capsys.readouterr().err)
    assert main(base + ["--layer", "mix,,flat", "--out", str(tmp_path / "gap")]) == 1
    assert "empty layer name in 'mix,,flat'" in capsys.readouterr().err
    out = tmp_path / "two"
    assert main(base + ["--layer", "pool/max,mix", "--out", str(out)]) == 0
    assert layer_file_name("pool/max") == "features-pool_max.npz"
    assert sorted(p.name for p in out.iterdir()) == ["features-mix.npz", "features-pool_max.npz"]
    expected = expected_layers(images / "test")
    np.testing.assert_allclose(FeatureSet.load(out / "features-pool_max.npz").test_x,
                               expected["maxes"], rtol=1e-5, atol=1e-3)


def test_overlapping_requests_take_the_layer_locks_in_one_order(images, options,
                                                                monkeypatch):
    """Two processes asking for "mix,means" and "means,mix" must not each hold one lock
    while waiting for the other's."""
    taken = []
    exclusive = extract._exclusive

    def recording(path):
        taken.append(path.name)
        return exclusive(path)

    monkeypatch.setattr(extract, "_exclusive", recording)
    extract_layers("tiny-four", "mix,means,flat", "folder", images, options=options)
    first, taken[:] = list(taken), []
    extract_layers("tiny-four", "flat,means,mix", "folder", images, options=options)
    assert len(first) == 3 and taken == first
