"""Data set readers on tiny fake copies of each on-disk layout, and stratified subsets."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dnnstress.datasets import (
    CorruptImageError,
    DatasetNotFoundError,
    available_datasets,
    fashion_mnist,
    open_dataset,
    stratified_subset,
)
from dnnstress.datasets.idx import read_idx
from dnnstress.datasets.voc2007 import CLASS_NAMES as VOC_CLASSES
from fakes import make_fashion, write_idx

# ---------------------------------------------------------------- fake data writers

def write_image(path, color=(200, 30, 40), size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture(autouse=True)
def isolated_locations(tmp_path, monkeypatch):
    """No data set of this machine (cache, env, Debian package) may leak into a test."""
    monkeypatch.delenv("DNNSTRESS_DATA", raising=False)
    monkeypatch.setenv("DNNSTRESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian-share")


# ---------------------------------------------------------------- registry

def test_available_datasets_lists_every_reader():
    assert available_datasets() == ["fashion-mnist", "voc2007", "mit67", "food101", "folder"]


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown data set 'imagenet'.*voc2007"):
        open_dataset("imagenet")


def test_aliases_reach_the_same_reader(tmp_path):
    make_fashion(tmp_path / "fm")
    splits = open_dataset("Fashion_MNIST", tmp_path / "fm")
    assert splits["train"].dataset == "fashion-mnist"


# ---------------------------------------------------------------- IDX and Fashion-MNIST

@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_reads_back_what_was_written(tmp_path, compress):
    arrays = make_fashion(tmp_path / "fm", compress=compress)
    splits = open_dataset("fashion-mnist", tmp_path / "fm")
    assert set(splits) == {"train", "test"}
    for name, (images, labels) in arrays.items():
        split = splits[name]
        assert split.name == name and len(split) == len(labels)
        assert split.labels.dtype == np.int64
        np.testing.assert_array_equal(split.labels, labels)
        assert split.class_names[0] == "T-shirt/top" and split.class_names[9] == "Ankle boot"
        image = split.load_image(3)
        assert image.mode == "L" and image.size == (28, 28)
        np.testing.assert_array_equal(np.asarray(image), images[3])
    assert splits["test"].describe(4) == "fashion-mnist test #4"


def test_array_subset_keeps_given_order_and_original_names(tmp_path):
    images, labels = make_fashion(tmp_path / "fm")["train"]
    train = open_dataset("fashion-mnist", tmp_path / "fm")["train"]
    part = train.subset([7, 2, 5])
    assert len(part) == 3
    np.testing.assert_array_equal(part.labels, labels[[7, 2, 5]])
    np.testing.assert_array_equal(np.asarray(part.load_image(1)), images[2])
    assert part.describe(0) == "fashion-mnist train #7"
    assert part.subset([2]).describe(0) == "fashion-mnist train #5"


@pytest.mark.parametrize("indices, error", [([0, 30], ValueError), ([-1], ValueError),
                                            ([0.0, 1.0], TypeError), ([[0]], ValueError)])
def test_subset_rejects_bad_indices(tmp_path, indices, error):
    make_fashion(tmp_path / "fm")
    train = open_dataset("fashion-mnist", tmp_path / "fm")["train"]
    with pytest.raises(error):
        train.subset(indices)


def test_read_idx_other_types_big_endian(tmp_path):
    values = np.array([[1, -2, 70000], [2**31 - 1, 0, -(2**31)]], dtype=np.int32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a", values)), values)
    floats = np.array([0.5, -1e300, 3.25])
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "b", floats, compress=False)),
                                  floats)


def test_corrupt_idx_files_are_named(tmp_path):
    good = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = write_idx(tmp_path / "x.idx", good, compress=False)
    raw = path.read_bytes()
    cases = {
        "bad-magic": (b"\x01\x02" + raw[2:], "bad magic number"),
        "bad-type": (raw[:2] + b"\x07" + raw[3:], "unknown type code"),
        "truncated": (raw[:-1], "truncated"),
        "trailing": (raw + b"\x00", "trailing bytes"),
        "short-header": (raw[:6], "truncated IDX header"),
        "bad-gzip": (gzip.compress(raw)[:-10], "corrupt or truncated gzip"),
    }
    for name, (content, message) in cases.items():
        broken = tmp_path / name
        broken.write_bytes(content)
        with pytest.raises(ValueError, match=message) as info:
            read_idx(broken)
        assert str(broken) in str(info.value)


def test_fashion_mnist_with_truncated_file_names_it(tmp_path):
    make_fashion(tmp_path / "fm")
    path = tmp_path / "fm" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz: IDX file truncated"):
        open_dataset("fashion-mnist", tmp_path / "fm")


def test_fashion_mnist_label_out_of_range(tmp_path):
    make_fashion(tmp_path / "fm")
    write_idx(tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz", np.full(10, 10, dtype=np.uint8))
    with pytest.raises(ValueError, match="label 10 out of range"):
        open_dataset("fashion-mnist", tmp_path / "fm")


def test_missing_fashion_mnist_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        open_dataset("fashion-mnist")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / "cache" / "datasets" / "fashion-mnist") in message
    assert str(tmp_path / "debian-share") in message
    assert "dnnstress data fetch fashion-mnist" in message and "--root" in message
    assert info.value.searched[-1] == tmp_path / "debian-share"


def test_lookup_order_env_then_cache_then_debian(tmp_path, monkeypatch):
    make_fashion(tmp_path / "debian-share", n_train=3)
    assert len(open_dataset("fashion-mnist")["train"]) == 3
    make_fashion(tmp_path / "cache" / "datasets" / "fashion-mnist", n_train=4)
    assert len(open_dataset("fashion-mnist")["train"]) == 4
    make_fashion(tmp_path / "data" / "fashion-mnist", n_train=5)
    monkeypatch.setenv("DNNSTRESS_DATA", str(tmp_path / "data"))
    assert len(open_dataset("fashion-mnist")["train"]) == 5
    assert open_dataset("fashion-mnist")["train"].root == tmp_path / "data" / "fashion-mnist"


def test_explicit_root_does_not_fall_back(tmp_path):
    make_fashion(tmp_path / "cache" / "datasets" / "fashion-mnist")
    with pytest.raises(DatasetNotFoundError, match="typo.*does not exist") as info:
        open_dataset("fashion-mnist", tmp_path / "typo")
    assert info.value.searched == [tmp_path / "typo"]


# ---------------------------------------------------------------- VOC 2007

def make_voc(base, ids, seed=0):
    """A VOC2007 tree under base; returns {split: (ids, labels (n, 20))}."""
    rng = np.random.default_rng(seed)
    main = base / "ImageSets" / "Main"
    main.mkdir(parents=True)
    truth = {}
    for stem, split_ids in ids.items():
        labels = rng.choice(np.array([1, -1, 0], dtype=np.int8), size=(len(split_ids), 20))
        for column, name in enumerate(VOC_CLASSES):
            # The devkit pads positives with an extra space: "000005  1".
            lines = [f"{image_id} {'' if v < 0 else ' '}{v}"
                     for image_id, v in zip(split_ids, labels[:, column], strict=True)]
            (main / f"{name}_{stem}.txt").write_text("\n".join(lines) + "\n")
        for image_id in split_ids:
            write_image(base / "JPEGImages" / f"{image_id}.jpg")
        truth[stem] = (split_ids, labels)
    return truth


@pytest.mark.parametrize("root_below", ["", "VOCdevkit", "VOCdevkit/VOC2007"])
def test_voc2007_labels_and_roots(tmp_path, root_below):
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    truth = make_voc(voc, {"trainval": ["000005", "000007", "000009", "000012"],
                           "test": ["000001", "000002", "000003"]})
    splits = open_dataset("voc2007", tmp_path / root_below)
    for split, stem in (("train", "trainval"), ("test", "test")):
        ids, labels = truth[stem]
        assert splits[split].labels.dtype == np.int8
        np.testing.assert_array_equal(splits[split].labels, labels)
        assert splits[split].class_names == VOC_CLASSES
        assert splits[split].describe(1) == str(voc / "JPEGImages" / f"{ids[1]}.jpg")
    assert VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[-1] == "tvmonitor"
    assert len(VOC_CLASSES) == 20
    assert splits["test"].load_image(0).size == (8, 6)
    assert splits["train"].subset([3, 0]).labels.tolist() == truth["trainval"][1][[3, 0]].tolist()


def test_voc2007_missing_test_labels_points_to_test_tar(tmp_path):
    make_voc(tmp_path, {"trainval": ["000005"]})
    with pytest.raises(FileNotFoundError, match="aeroplane_test.txt.*VOCtest_06-Nov-2007"):
        open_dataset("voc2007", tmp_path)


def test_voc2007_bad_label_line_is_located(tmp_path):
    make_voc(tmp_path, {"trainval": ["000005"], "test": ["000001"]})
    (tmp_path / "ImageSets" / "Main" / "cat_test.txt").write_text("000001 2\n")
    with pytest.raises(ValueError, match="cat_test.txt, line 1"):
        open_dataset("voc2007", tmp_path)


def test_voc2007_not_found_gives_download_page(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="host.robots.ox.ac.uk"):
        open_dataset("voc2007")


# ---------------------------------------------------------------- MIT-67

def test_mit67_split_lists_and_sorted_classes(tmp_path):
    files = {"train": ["kitchen/a.jpg", "bar/b.jpg", "kitchen/c.jpg", "airport_inside/d.jpg"],
             "test": ["bar/e.jpg", "airport_inside/f.jpg"]}
    for entry in files["train"] + files["test"]:
        write_image(tmp_path / "Images" / entry)
    # The published lists have Windows line ends.
    (tmp_path / "TrainImages.txt").write_bytes("\r\n".join(files["train"]).encode() + b"\r\n")
    (tmp_path / "TestImages.txt").write_text("\n".join(files["test"]))
    splits = open_dataset("mit67", tmp_path)
    assert splits["train"].class_names == ["airport_inside", "bar", "kitchen"]
    assert splits["train"].labels.tolist() == [2, 1, 2, 0]
    assert splits["test"].labels.tolist() == [1, 0]
    assert splits["test"].describe(0) == str(tmp_path / "Images" / "bar" / "e.jpg")
    assert splits["train"].layout == "mit67"


def test_mit67_not_found_names_the_page(tmp_path):
    (tmp_path / "Images").mkdir()
    with pytest.raises(DatasetNotFoundError, match="exists but has no such layout") as info:
        open_dataset("mit67", tmp_path)
    assert "web.mit.edu/torralba" in str(info.value)


# ---------------------------------------------------------------- Food-101

def test_food101_ethz_layout(tmp_path):
    root = tmp_path / "food-101"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("apple_pie\nbaklava\nsushi\n")
    (root / "meta" / "train.txt").write_text("sushi/11\napple_pie/12\nbaklava/13\n")
    (root / "meta" / "test.txt").write_text("baklava/21\nsushi/22\n")
    for entry in ("sushi/11", "apple_pie/12", "baklava/13", "baklava/21", "sushi/22"):
        write_image(root / "images" / f"{entry}.jpg")
    splits = open_dataset("food101", tmp_path)  # finds food-101/ below the root
    assert splits["train"].layout == "ethz"
    assert splits["train"].class_names == ["apple_pie", "baklava", "sushi"]
    assert splits["train"].labels.tolist() == [2, 0, 1]
    assert splits["test"].labels.tolist() == [1, 2]
    assert splits["test"].describe(1) == str(root / "images" / "sushi" / "22.jpg")


def test_food101_ethz_unknown_class_is_reported(tmp_path):
    (tmp_path / "meta").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "meta" / "classes.txt").write_text("apple_pie\n")
    (tmp_path / "meta" / "train.txt").write_text("apple_pie/1\n")
    (tmp_path / "meta" / "test.txt").write_text("pizza/2\n")
    with pytest.raises(ValueError, match="class 'pizza'"):
        open_dataset("food101", tmp_path)


def test_food101_upmc_layout(tmp_path):
    root = tmp_path / "UPMC_Food101"
    for split, entries in {"train": ["pizza/p1.jpg", "pizza/p2.jpg", "apple_pie/a1.jpg"],
                           "test": ["apple_pie/a9.jpg", "pizza/p9.jpg"]}.items():
        for entry in entries:
            write_image(root / "images" / split / entry)
    splits = open_dataset("food101", tmp_path)
    assert splits["test"].layout == "upmc"
    assert splits["train"].class_names == ["apple_pie", "pizza"]
    assert splits["train"].labels.tolist() == [0, 1, 1]
    assert splits["test"].labels.tolist() == [0, 1]


# ---------------------------------------------------------------- generic folder

def test_folder_layout_extensions_and_shared_classes(tmp_path):
    write_image(tmp_path / "train" / "cat" / "1.JPG")
    write_image(tmp_path / "train" / "cat" / "2.png")
    write_image(tmp_path / "train" / "dog" / "3.jpeg")
    write_image(tmp_path / "test" / "dog" / "4.webp")
    write_image(tmp_path / "test" / "emu" / "5.bmp")  # a class seen only in test
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    write_image(tmp_path / "train" / "cat" / ".hidden.jpg")
    (tmp_path / "train" / "empty").mkdir()
    splits = open_dataset("folder", tmp_path)
    assert splits["train"].class_names == ["cat", "dog", "emu"]
    assert splits["train"].labels.tolist() == [0, 0, 1]
    assert splits["test"].labels.tolist() == [1, 2]
    assert [p.rsplit("/", 1)[1] for p in splits["train"].paths] == ["1.JPG", "2.png", "3.jpeg"]


def test_folder_needs_a_root(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="--root"):
        open_dataset("folder")
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetNotFoundError, match="lacks train/ or test/"):
        open_dataset("folder", tmp_path)


# ---------------------------------------------------------------- image decoding

def _folder_with(tmp_path, name, content):
    write_image(tmp_path / "train" / "a" / "ok.jpg")
    bad = tmp_path / "test" / "a" / name
    bad.parent.mkdir(parents=True)
    bad.write_bytes(content)
    return open_dataset("folder", tmp_path)["test"], bad


def test_garbage_image_raises_corrupt_image_error_naming_path(tmp_path):
    split, bad = _folder_with(tmp_path, "bad.jpg", b"this is not a jpeg")
    with pytest.raises(CorruptImageError) as info:
        split.load_image(0)
    assert isinstance(info.value, ValueError)
    assert info.value.path == bad and str(bad) in str(info.value)


def test_truncated_jpeg_raises_corrupt_image_error(tmp_path):
    good = write_image(tmp_path / "full.jpg", size=(64, 64))
    split, bad = _folder_with(tmp_path, "cut.jpg", good.read_bytes()[:200])
    with pytest.raises(CorruptImageError, match="cut.jpg"):
        split.load_image(0)


def test_missing_listed_image_is_file_not_found(tmp_path):
    split, bad = _folder_with(tmp_path, "gone.jpg", b"")
    bad.unlink()
    with pytest.raises(FileNotFoundError):
        split.load_image(0)


def test_transparent_pixels_become_white(tmp_path):
    path = tmp_path / "train" / "a" / "stamp.png"
    path.parent.mkdir(parents=True)
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque; the rest fully transparent black
    Image.fromarray(rgba).save(path)
    write_image(tmp_path / "test" / "a" / "x.png")
    pixels = np.asarray(open_dataset("folder", tmp_path)["train"].load_image(0))
    assert pixels[0, 0].tolist() == [10, 20, 30]
    assert pixels[1, 1].tolist() == [255, 255, 255]


def test_grayscale_and_palette_files_come_out_rgb(tmp_path):
    Image.new("L", (3, 3), 77).save(write_image(tmp_path / "train" / "a" / "g.png"))
    Image.new("P", (3, 3), 5).save(write_image(tmp_path / "test" / "a" / "p.gif"))
    splits = open_dataset("folder", tmp_path)
    assert np.asarray(splits["train"].load_image(0)).tolist()[0][0] == [77, 77, 77]
    assert splits["test"].load_image(0).mode == "RGB"


# ---------------------------------------------------------------- stratified_subset

def test_stratified_subset_hand_computed():
    labels = np.array([0] * 4 + [1] * 6)
    picked = stratified_subset(labels, 5)
    assert np.bincount(labels[picked]).tolist() == [2, 3]
    # 3 classes of 1 item, n = 2: remainders tie, the lower classes win.
    assert stratified_subset([5, 7, 9], 2).tolist() == [0, 1]


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=8),
       fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1),
       shuffle_seed=st.integers(0, 1000))
def test_stratified_subset_properties(counts, fraction, seed, shuffle_seed):
    labels = np.repeat(np.arange(len(counts)) * 3, counts)  # class ids need not be 0..k-1
    np.random.default_rng(shuffle_seed).shuffle(labels)
    total = len(labels)
    n = max(1, int(round(fraction * total)))
    picked = stratified_subset(labels, n, seed=seed)
    assert picked.dtype == np.int64 and len(picked) == n
    assert np.all(np.diff(picked) > 0)  # sorted, distinct
    assert picked.min() >= 0 and picked.max() < total
    for k, count in enumerate(counts):
        taken = np.count_nonzero(labels[picked] == 3 * k)
        assert abs(taken - n * count / total) < 1
    np.testing.assert_array_equal(picked, stratified_subset(labels, n, seed=seed))


def test_stratified_subset_seed_changes_draw_and_all_when_n_large():
    labels = np.repeat(np.arange(4), 50)
    assert not np.array_equal(stratified_subset(labels, 20, seed=0),
                              stratified_subset(labels, 20, seed=1))
    np.testing.assert_array_equal(stratified_subset(labels, 500), np.arange(200))


def test_stratified_subset_multilabel_is_seeded_random_subset():
    labels = np.ones((50, 20), dtype=np.int8)
    picked = stratified_subset(labels, 10, seed=3)
    assert len(picked) == 10 and np.all(np.diff(picked) > 0) and picked.max() < 50
    np.testing.assert_array_equal(picked, stratified_subset(labels, 10, seed=3))
    assert not np.array_equal(picked, stratified_subset(labels, 10, seed=4))


@pytest.mark.parametrize("labels, n, error", [
    ([0, 1], 0, ValueError), ([0, 1], 1.5, TypeError), ([0, 1], True, TypeError),
    ([0.5, 1.0], 1, TypeError), (np.zeros((2, 2, 2)), 1, ValueError)])
def test_stratified_subset_bad_input(labels, n, error):
    with pytest.raises(error):
        stratified_subset(labels, n)
