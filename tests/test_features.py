"""FeatureSet: the .npz round trip and every validation error."""

import json
import os

import numpy as np
import pytest

from dnnstress.features import FeatureSet


def _single(n_train=6, n_test=4, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return dict(train_x=rng.normal(size=(n_train, d)).astype(np.float32),
                train_y=np.arange(n_train) % 3,
                test_x=rng.normal(size=(n_test, d)).astype(np.float32),
                test_y=np.arange(n_test) % 3)


def _multi(n_train=5, n_test=4, d=3, labels=2):
    rng = np.random.default_rng(1)
    return dict(train_x=rng.normal(size=(n_train, d)).astype(np.float32),
                train_y=rng.choice(np.array([1, -1, 0], np.int8), size=(n_train, labels)),
                test_x=rng.normal(size=(n_test, d)).astype(np.float32),
                test_y=rng.choice(np.array([1, -1, 0], np.int8), size=(n_test, labels)))


@pytest.mark.parametrize("make, names", [(_single, ["a", "b", "c"]), (_multi, ["cat", "dog"])])
def test_round_trip_keeps_arrays_dtypes_names_and_metadata(tmp_path, make, names):
    arrays = make()
    metadata = {"model": "vgg-m", "layer": 19, "nested": {"size": [224, 224]}}
    fs = FeatureSet(**arrays, class_names=names, metadata=metadata)
    path = fs.save(tmp_path / "sub" / "f.npz")
    loaded = FeatureSet.load(path)
    for name, array in arrays.items():
        got = getattr(loaded, name)
        assert got.dtype == array.dtype and np.array_equal(got, array), name
    assert loaded.class_names == names
    assert loaded.metadata == metadata
    assert loaded.is_multilabel == (make is _multi)


def test_round_trip_without_optional_entries(tmp_path):
    path = FeatureSet(**_single()).save(tmp_path / "f.npz")
    loaded = FeatureSet.load(path)
    assert loaded.class_names is None and loaded.metadata == {}


def test_file_written_by_hand_with_plain_numpy_loads(tmp_path):
    arrays = _multi()
    np.savez(tmp_path / "hand.npz", **arrays, metadata=json.dumps({"k": 1}))
    assert FeatureSet.load(tmp_path / "hand.npz").metadata == {"k": 1}


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "f.npz"
    FeatureSet(**_single(seed=0)).save(path)
    original = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        FeatureSet(**_single(seed=1)).save(path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["f.npz"]


def test_properties():
    fs = FeatureSet(**_single(d=5))
    assert (fs.n_features, fs.n_classes, fs.is_multilabel) == (5, 3, False)
    fm = FeatureSet(**_multi(labels=4))
    assert (fm.n_classes, fm.is_multilabel) == (4, True)


def _with(make=_single, **changes):
    arrays = make()
    arrays.update(changes)
    return arrays


BAD = {
    "x not 2-D": (_with(train_x=np.zeros(6, np.float32)), ValueError, "train_x must be 2-D"),
    "integer x": (_with(test_x=np.zeros((4, 3), np.int32)), TypeError, "floating point"),
    "empty x": (_with(train_x=np.zeros((0, 3), np.float32), train_y=np.zeros(0, int)),
                ValueError, "train_x is empty"),
    "zero width": (_with(train_x=np.zeros((6, 0), np.float32),
                         test_x=np.zeros((4, 0), np.float32)), ValueError, "empty"),
    "nan": (_with(test_x=np.full((4, 3), np.nan, np.float32)), ValueError, "12 NaN"),
    "inf": (_with(train_x=np.full((6, 3), np.inf, np.float32)), ValueError, "infinite"),
    "widths differ": (_with(test_x=np.zeros((4, 2), np.float32)), ValueError,
                      "3 features but test_x has 2"),
    "y rows": (_with(train_y=np.zeros(5, int)), ValueError, "train_y has 5 rows"),
    "float y": (_with(test_y=np.zeros(4)), TypeError, "labels must be integers"),
    "3-D y": (_with(test_y=np.zeros((4, 1, 1), int)), ValueError, "1-D classes or a 2-D"),
    "mixed kinds": (_with(test_y=np.ones((4, 2), np.int8)), ValueError, "both be 1-D"),
    "multilabel dtype": (_with(_multi, train_y=np.ones((5, 2), np.int64)), TypeError, "int8"),
    "multilabel values": (_with(_multi, test_y=np.full((4, 2), 2, np.int8)), ValueError,
                          "other than 1 / -1 / 0"),
    "multilabel columns": (_with(_multi, test_y=np.ones((4, 3), np.int8)), ValueError,
                           "2 label columns but test_y has 3"),
    "no columns": (_with(_multi, train_y=np.ones((5, 0), np.int8),
                         test_y=np.ones((4, 0), np.int8)), ValueError, "no label columns"),
    "list not array": (_with(train_y=[0, 1, 2, 0, 1, 2]), TypeError, "numpy array"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_invalid_arrays_raise_clear_errors(case):
    arrays, error, message = BAD[case]
    with pytest.raises(error, match=message):
        FeatureSet(**arrays)


def test_class_names_must_cover_labels_and_columns():
    with pytest.raises(ValueError, match="3 class names for 2 label columns"):
        FeatureSet(**_multi(), class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="labels range over 0..2 but there are 2"):
        FeatureSet(**_single(), class_names=["a", "b"])
    with pytest.raises(TypeError, match="list of strings"):
        FeatureSet(**_single(), class_names=[1, 2, 3])
    with pytest.raises(TypeError, match="metadata must be a dict"):
        FeatureSet(**_single(), metadata="{}")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        FeatureSet.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable .npz"):
        FeatureSet.load(tmp_path / "junk.npz")
    np.save(tmp_path / "one.npy", np.ones(3))
    os.replace(tmp_path / "one.npy", tmp_path / "one.npz")
    with pytest.raises(ValueError, match="single array"):
        FeatureSet.load(tmp_path / "one.npz")
    arrays = _single()
    del arrays["test_y"]
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(ValueError, match="missing array.*test_y"):
        FeatureSet.load(tmp_path / "partial.npz")
    np.savez(tmp_path / "list.npz", **_single(), metadata=json.dumps([1]))
    with pytest.raises(ValueError, match="JSON object"):
        FeatureSet.load(tmp_path / "list.npz")
    with pytest.raises(ValueError, match=r"must end in \.npz"):
        FeatureSet(**_single()).save(tmp_path / "f.npy")


def test_pickled_objects_are_refused(tmp_path):
    arrays = _single()
    arrays["train_x"] = np.array([object()] * 3, dtype=object)
    np.savez(tmp_path / "evil.npz", **arrays)
    with pytest.raises(ValueError, match="plain numeric"):
        FeatureSet.load(tmp_path / "evil.npz")
