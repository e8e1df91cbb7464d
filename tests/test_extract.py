"""Feature extraction: batching, prefetching, checkpoints, caching and errors, on a tiny
ONNX network whose output is easy to compute by hand (the channel means)."""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from dnnstress import extract
from dnnstress.datasets import ArraySplit, CorruptImageError
from dnnstress.extract import (ExtractionOptions, create_session, extract_features,
                               extract_split, remove_checkpoint)
from dnnstress.features import FeatureSet
from dnnstress.models import Layer, ModelSpec, register, resolve_layer
from fakes import write_idx

SIZE = 8


def build_channel_means(path):
    """input (N, 3, 8, 8) -> "means" (N, 3): the mean of every channel."""
    node = helper.make_node("ReduceMean", ["input"], ["means"], axes=[2, 3], keepdims=0)
    graph = helper.make_graph(
        [node], "channel_means",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("means", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


TINY = ModelSpec(
    name="tiny-means", description="channel means (test network)",
    layers={"means": Layer("means", "means", (3,), "mean of each channel")},
    default_layer="means", input_name="input", input_size=SIZE, resize_size=SIZE,
    mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), artifact="tiny-means-v1.onnx",
    builder=build_channel_means)
register(TINY, replace=True)


def expected_means(images):
    """What the tiny network must output for grayscale uint8 images resized to 8 x 8."""
    rows = []
    for image in images:
        resized = np.asarray(Image.fromarray(image).convert("RGB").resize(
            (SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float32)
        rows.append(resized.mean(axis=(0, 1)))
    return np.array(rows)


def make_split(n, seed=0, name="train"):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return ArraySplit(name, images, rng.integers(0, 3, n), ["a", "b", "c"],
                      dataset="synthetic", root="memory", layout="memory")


class CountingSplit:
    """A split that counts image loads and can stop the run at a given image."""

    def __init__(self, split, stop_at=None):
        self.split, self.stop_at, self.loads = split, stop_at, 0
        self.name, self.labels = split.name, split.labels

    def __len__(self):
        return len(self.split)

    def load_image(self, i):
        if i == self.stop_at:
            raise KeyboardInterrupt
        self.loads += 1
        return self.split.load_image(i)


@pytest.fixture
def options():
    return ExtractionOptions(batch_size=4, policy="resize", progress=False)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNSTRESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_features_equal_the_network_computed_by_hand(options):
    split = make_split(10)
    features, kept = extract_split(split, TINY, resolve_layer(TINY), options)
    assert kept.all() and features.shape == (10, 3) and features.dtype == np.float32
    np.testing.assert_allclose(features, expected_means(split.images), rtol=1e-5, atol=1e-3)


def test_interrupted_extraction_resumes_after_the_last_batch(tmp_path, options):
    split = make_split(18)
    complete, _ = extract_split(split, TINY, resolve_layer(TINY), options)
    checkpoint = tmp_path / "ckpt" / "train"
    first = CountingSplit(split, stop_at=13)
    with pytest.raises(KeyboardInterrupt):
        extract_split(first, TINY, resolve_layer(TINY), options, checkpoint=checkpoint)
    second = CountingSplit(split)
    resumed, _ = extract_split(second, TINY, resolve_layer(TINY), options, checkpoint=checkpoint)
    np.testing.assert_array_equal(resumed, complete)
    # Batches of 4: images 0-11 were saved before image 13 stopped the run, so the
    # rerun loads only images 12-17.  The checkpoint stays until the caller has stored
    # the features.
    assert second.loads == 6
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == [
        "train.features.npy", "train.kept.npy", "train.state.json"]
    remove_checkpoint(checkpoint)
    assert not list(checkpoint.parent.iterdir())


class CorruptAt:
    def __init__(self, split, bad):
        self.split, self.bad = split, bad
        self.name, self.labels = split.name, split.labels

    def __len__(self):
        return len(self.split)

    def load_image(self, i):
        if i == self.bad:
            raise CorruptImageError(f"/data/img{i}.jpg", "cannot identify image file")
        return self.split.load_image(i)


@pytest.mark.parametrize("decode_threads", [1, 3])
def test_corrupt_image_is_named_or_skipped_and_counted(options, capsys, decode_threads):
    options.decode_threads = decode_threads
    split = make_split(9)
    with pytest.raises(CorruptImageError, match="img5.jpg"):
        extract_split(CorruptAt(split, 5), TINY, resolve_layer(TINY), options)
    options.skip_corrupt = True
    features, kept = extract_split(CorruptAt(split, 5), TINY, resolve_layer(TINY), options)
    assert kept.sum() == 8 and not kept[5]
    np.testing.assert_allclose(features, expected_means(np.delete(split.images, 5, axis=0)),
                               rtol=1e-5, atol=1e-3)
    assert "skipped 1 corrupt image" in capsys.readouterr().out


def test_empty_split_is_refused(options):
    with pytest.raises(ValueError, match="empty"):
        extract_split(make_split(0), TINY, resolve_layer(TINY), options)


def test_cuda_request_never_falls_back_to_cpu(cache):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        create_session(TINY.onnx_path(), "cuda")


def test_unknown_layer_lists_the_available_ones():
    with pytest.raises(ValueError, match="no layer 'fc7'.*means"):
        resolve_layer(TINY, "fc7")


def write_image_folder(root, n_per_class=3):
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            for i in range(n_per_class):
                folder = root / split / label
                folder.mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_extract_features_is_cached(tmp_path, options, monkeypatch):
    write_image_folder(tmp_path / "images")
    first = extract_features("tiny-means", None, "folder", tmp_path / "images", options=options)
    assert first.train_x.shape == (6, 3) and first.test_x.shape == (6, 3)
    assert first.class_names == ["cat", "dog"]
    assert first.metadata["model"] == "tiny-means" and first.metadata["layer"] == "means"

    def no_session(*args, **kwargs):
        raise AssertionError("extracted again instead of reading the cache")

    monkeypatch.setattr(extract, "create_session", no_session)
    second = extract_features("tiny-means", None, "folder", tmp_path / "images", options=options)
    np.testing.assert_array_equal(second.train_x, first.train_x)
    # Another preprocessing is another key: extraction is needed again.
    options.policy = "resize_crop"
    with pytest.raises(AssertionError, match="extracted again"):
        extract_features("tiny-means", None, "folder", tmp_path / "images", options=options)


@pytest.fixture
def fake_fashion_mnist(tmp_path, monkeypatch):
    """Fashion-MNIST-shaped IDX files: class c is an image of brightness 25 * c."""
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 200), ("t10k", 100)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = (labels[:, None, None] * 25 + rng.integers(0, 20, (n, 28, 28))).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("DNNSTRESS_DATA", str(tmp_path / "data"))
    return folder


@pytest.mark.slow
def test_demo_end_to_end_on_the_embedded_network(tmp_path, fake_fashion_mnist, capsys):
    from dnnstress.cli import main

    out = tmp_path / "demo"
    status = main(["demo", "--out", str(out), "--train-size", "100", "--test-size", "50",
                   "--experiments", "baseline,q1,q2,dr2", "--no-progress", "--no-fetch"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "baseline" in printed.lower()
    for name in ("features.npz", "results.csv", "table3.md", "table3.csv", "fig4_q.png",
                 "fig2_dr.png"):
        assert (out / name).stat().st_size > 0, name
    features = np.load(out / "features.npz")
    assert features["train_x"].shape == (100, 1280) and features["test_x"].shape == (50, 1280)


def test_demo_without_data_and_without_fetch_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    from dnnstress.cli import main
    from dnnstress.datasets import fashion_mnist

    monkeypatch.setenv("DNNSTRESS_DATA", str(tmp_path / "nothing"))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    assert main(["demo", "--out", str(tmp_path / "d"), "--no-fetch"]) == 1
    assert "dnnstress data fetch fashion-mnist" in capsys.readouterr().err


def test_cli_extracts_a_user_onnx_file(tmp_path, capsys):
    from dnnstress.cli import main

    write_image_folder(tmp_path / "images")
    network = tmp_path / "means.onnx"
    build_channel_means(network)
    out = tmp_path / "f"
    args = ["extract", "--model", str(network), "--dataset", "folder", "--root",
            str(tmp_path / "images"), "--out", str(out), "--quiet"]
    assert main(args) == 1  # no --layer: the error says how to list the tensors
    assert "dnnstress models --onnx" in capsys.readouterr().err
    assert main(args + ["--layer", "means", "--mean", "0,0,0", "--std", "1,1,1"]) == 0
    assert capsys.readouterr().out == ""  # --quiet
    features = np.load(out / "features.npz")
    assert features["train_x"].shape == (6, 3)
    # The default policy for a photo data set is the network's: resize then crop.
    assert '"policy": "resize_crop"' in str(features["metadata"])


def test_extraction_interrupted_in_the_test_split_keeps_the_train_split(tmp_path, monkeypatch):
    from dnnstress.datasets import ImageFileSplit

    write_image_folder(tmp_path / "images")  # 6 train and 6 test images
    options = ExtractionOptions(batch_size=2, policy="resize", progress=False)
    clean = extract_features("tiny-means", None, "folder", tmp_path / "images",
                             options=options, cache_dir=tmp_path / "clean")
    original = ImageFileSplit.load_image
    loads = {"train": 0, "test": 0}

    def stop_in_test_split(self, i):
        if self.name == "test" and i == 3 and not loads["test"] >= 10:
            loads["test"] = 10  # stop once
            raise KeyboardInterrupt
        loads[self.name] += 1
        return original(self, i)

    monkeypatch.setattr(ImageFileSplit, "load_image", stop_in_test_split)
    with pytest.raises(KeyboardInterrupt):
        extract_features("tiny-means", None, "folder", tmp_path / "images", options=options,
                         cache_dir=tmp_path / "resumed")
    loads.update(train=0)
    resumed = extract_features("tiny-means", None, "folder", tmp_path / "images",
                               options=options, cache_dir=tmp_path / "resumed")
    assert loads["train"] == 0  # the train split came back from its checkpoint
    np.testing.assert_array_equal(resumed.train_x, clean.train_x)
    np.testing.assert_array_equal(resumed.test_x, clean.test_x)
    leftovers = [p.name for p in (tmp_path / "resumed" / "features").iterdir()
                 if p.name.startswith(".")]
    assert leftovers == []  # checkpoints removed once the features file is stored


@pytest.mark.parametrize("field, value", [("batch_size", 0), ("batch_size", -3),
                                          ("policy", "crop"), ("device", "tpu")])
def test_bad_extraction_options_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        ExtractionOptions(**{field: value})


def test_demo_rejects_an_unknown_experiment_before_any_work(capsys):
    from dnnstress.cli import main

    with pytest.raises(SystemExit):
        main(["demo", "--experiments", "q2,q3"])
    assert "unknown experiment" in capsys.readouterr().err


def _extract_folder(root, options):
    return extract_features("tiny-means", None, "folder", root, options=options)


def test_overwritten_images_are_extracted_again(tmp_path, options):
    write_image_folder(tmp_path / "images")
    first = _extract_folder(tmp_path / "images", options)
    # New pixels under the same names, written later (a newer modification time).
    rng = np.random.default_rng(7)
    for path in sorted((tmp_path / "images").rglob("*.png")):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(path)
        stamp = path.stat().st_mtime + 10
        os.utime(path, (stamp, stamp))
    second = _extract_folder(tmp_path / "images", options)
    assert not np.allclose(second.train_x, first.train_x)
    np.testing.assert_allclose(second.train_x, expected_means_of_files(
        tmp_path / "images" / "train"), rtol=1e-5, atol=1e-3)


def expected_means_of_files(folder):
    files = sorted(folder.rglob("*.png"))
    rows = [np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC),
                       np.float32).mean(axis=(0, 1)) for p in files]
    return np.array(rows)


def test_overwritten_idx_files_are_extracted_again_even_with_the_old_times(tmp_path, options):
    from fakes import make_fashion

    folder = tmp_path / "fashion"
    make_fashion(folder, n_train=12, n_test=6, seed=0)

    def run():
        return extract_features("tiny-means", None, "fashion-mnist", folder, options=options)

    first = run()
    times = {path: path.stat() for path in folder.iterdir()}
    make_fashion(folder, n_train=12, n_test=6, seed=1)  # same names and sizes
    for path, status in times.items():
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    second = run()
    assert not np.allclose(second.train_x, first.train_x)


def _only_cached_file(cache):
    (path,) = (cache / "features").glob("*.npz")
    return path


def test_bit_flipped_cached_file_is_reported_and_rebuilt(tmp_path, options, cache, capsys):
    write_image_folder(tmp_path / "images")
    first = _extract_folder(tmp_path / "images", options)
    path = _only_cached_file(cache)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x04
    path.write_bytes(bytes(data))
    second = _extract_folder(tmp_path / "images", options)
    assert "unreadable" in capsys.readouterr().err
    np.testing.assert_array_equal(second.train_x, first.train_x)
    np.testing.assert_array_equal(FeatureSet.load(path).test_x, first.test_x)


def test_foreign_file_in_the_cache_slot_is_reported_and_rebuilt(tmp_path, options, cache,
                                                                capsys):
    write_image_folder(tmp_path / "images")
    first = _extract_folder(tmp_path / "images", options)
    path = _only_cached_file(cache)
    rng = np.random.default_rng(0)
    FeatureSet(rng.normal(size=(6, 3)).astype(np.float32), np.arange(6) % 2,
               rng.normal(size=(6, 3)).astype(np.float32), np.arange(6) % 2).save(path)
    second = _extract_folder(tmp_path / "images", options)
    assert "describes other features" in capsys.readouterr().err
    np.testing.assert_array_equal(second.train_x, first.train_x)
    assert second.metadata["model"] == "tiny-means"


def test_sweep_on_a_corrupt_features_file_is_a_one_line_error(tmp_path, capsys):
    from dnnstress.cli import main

    path = FeatureSet(np.ones((4, 3), np.float32), np.array([0, 1, 0, 1]),
                      np.ones((2, 3), np.float32), np.array([1, 0])).save(tmp_path / "f.npz")
    path.write_bytes(path.read_bytes()[:-30])
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "not a readable .npz" in err


@pytest.mark.parametrize("decode_threads, batch_size", [(2, 1), (3, 2), (4, 5)])
def test_parallel_decoding_keeps_the_order(decode_threads, batch_size):
    split = make_split(23, seed=3)
    serial = ExtractionOptions(batch_size=batch_size, policy="resize", progress=False)
    parallel = ExtractionOptions(batch_size=batch_size, policy="resize", progress=False,
                                 decode_threads=decode_threads)
    one, _ = extract_split(split, TINY, resolve_layer(TINY), serial)
    many, kept = extract_split(split, TINY, resolve_layer(TINY), parallel)
    assert kept.all()
    np.testing.assert_array_equal(many, one)
    np.testing.assert_allclose(many, expected_means(split.images), rtol=1e-5, atol=1e-3)


class BrokenAt(CorruptAt):
    """Image ``bad`` is something preprocessing cannot take (not a corrupt file)."""

    def load_image(self, i):
        return "not an image" if i == self.bad else self.split.load_image(i)

    def describe(self, i):
        return f"item #{i}"


def test_a_preprocessing_failure_names_the_image(options):
    options.decode_threads = 2
    with pytest.raises(RuntimeError, match="cannot preprocess item #6: "):
        extract_split(BrokenAt(make_split(10), 6), TINY, resolve_layer(TINY), options)


def test_progress_advances_batch_by_batch_in_order(tmp_path, options, monkeypatch):
    updates = []

    class Bar:
        def __init__(self, total, initial, **kwargs):
            updates.append(("start", total, initial))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            updates.append(n)

    monkeypatch.setattr(extract, "tqdm", Bar)
    options.decode_threads = 3
    extract_split(make_split(10), TINY, resolve_layer(TINY), options)
    assert updates == [("start", 10, 0), 4, 4, 2]


@pytest.mark.gpu
def test_cuda_extraction_equals_the_cpu_one(cupy):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider")
    split = make_split(37, seed=5)
    cpu, _ = extract_split(split, TINY, resolve_layer(TINY),
                           ExtractionOptions(batch_size=8, policy="resize", progress=False))
    gpu, _ = extract_split(split, TINY, resolve_layer(TINY),
                           ExtractionOptions(batch_size=8, policy="resize", progress=False,
                                             device="cuda", decode_threads=3))
    assert isinstance(gpu, np.ndarray)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-4)


def test_without_the_cache_extraction_runs_and_stores_nothing(tmp_path, options, cache):
    write_image_folder(tmp_path / "images")
    first = extract_features("tiny-means", None, "folder", tmp_path / "images",
                             options=options, use_cache=False)
    assert not list((cache / "features").glob("*.npz"))
    cached = _extract_folder(tmp_path / "images", options)
    (_only_cached_file(cache)).write_bytes(b"stale")  # must not be read without the cache
    again = extract_features("tiny-means", None, "folder", tmp_path / "images",
                             options=options, use_cache=False)
    np.testing.assert_array_equal(again.train_x, first.train_x)
    np.testing.assert_array_equal(cached.train_x, first.train_x)
