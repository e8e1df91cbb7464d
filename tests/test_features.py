"""FeatureSet: the .npz round trip and every validation error."""

import io
import json
import os
import zipfile

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


class _OpensAFile:
    """Unpickling this would create ``marker``: proof that the loader never unpickles."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _npy_bytes(header, data=b""):
    """An .npy member from a raw header dictionary, so its shape can lie."""
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    return stream.getvalue() + data


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return path


def _bytes(tmp_path, data):
    (tmp_path / "f.npz").write_bytes(data)
    return tmp_path / "f.npz"


def _saved(tmp_path, **arrays):
    np.savez(tmp_path / "f.npz", **arrays)
    return tmp_path / "f.npz"


def _flip_a_data_byte(tmp_path):
    path = FeatureSet(**_single(n_train=200, d=50)).save(tmp_path / "f.npz")
    data = bytearray(path.read_bytes())
    data[len(data) // 4] ^= 0x10  # inside train_x's values: only the CRC can tell
    path.write_bytes(bytes(data))
    return path


def _truncated(tmp_path):
    path = FeatureSet(**_single()).save(tmp_path / "f.npz")
    path.write_bytes(path.read_bytes()[:-40])
    return path


def _header_declaring_36_tib(tmp_path):
    """train_x's header says 2^40 x 9 float32 (36 TiB); the member holds 64 bytes."""
    members = {}
    for name, array in _single().items():
        stream = io.BytesIO()
        np.save(stream, array)
        members[name] = stream.getvalue()
    members["train_x"] = _npy_bytes(
        {"descr": "<f4", "fortran_order": False, "shape": (1 << 40, 9)}, b"\0" * 64)
    return _zip(tmp_path / "f.npz", members)


HOSTILE = {
    "empty file": (lambda t: _bytes(t, b""), "not a readable .npz"),
    "not a zip": (lambda t: _bytes(t, b"PK junk"), "not a readable .npz"),
    "bit flip": (_flip_a_data_byte, "not a readable .npz.*CRC"),
    "truncated": (_truncated, "not a readable .npz"),
    "folder": (lambda t: (t / "f.npz").mkdir() or t / "f.npz", "is a folder"),
    "36 TiB header": (_header_declaring_36_tib, r"declares shape \(1099511627776, 9\)"),
    "bad header": (lambda t: _zip(t / "f.npz", {n: b"\x93NUMPY\x01\x00zz" for n in
                                                 ("train_x", "train_y", "test_x", "test_y")}),
                   "train_x is not a valid .npy"),
    "missing key": (lambda t: _saved(t, **{k: v for k, v in _single().items()
                                           if k != "test_y"}), "missing array.*test_y"),
    "widths differ": (lambda t: _saved(t, **_with(test_x=np.zeros((4, 2), np.float32))),
                      "3 features but test_x has 2"),
    "lengths differ": (lambda t: _saved(t, **_with(train_y=np.zeros(5, int))),
                       "train_y has 5 rows but the features have 6"),
    "nan": (lambda t: _saved(t, **_with(test_x=np.full((4, 3), np.nan, np.float32))),
            "test_x contains 12 NaN"),
    "inf": (lambda t: _saved(t, **_with(train_x=np.full((6, 3), -np.inf, np.float32))),
            "train_x contains 18 NaN or infinite"),
    "integer features": (lambda t: _saved(t, **_with(test_x=np.zeros((4, 3), np.int32))),
                         "floating point"),
    "metadata not JSON": (lambda t: _saved(t, **_single(), metadata="{oops"),
                          "Expecting property name"),
    "metadata a number": (lambda t: _saved(t, **_single(), metadata=np.float64(1)),
                          "metadata must be a JSON string"),
    "class names numbers": (lambda t: _saved(t, **_single(), class_names=np.arange(3)),
                            "class_names must be a 1-D array of strings"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_bad_features_files_get_one_line_errors_naming_the_file(tmp_path, case):
    make, message = HOSTILE[case]
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message) as caught:
        FeatureSet.load(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    arrays = _single()
    arrays["train_x"] = np.array([_OpensAFile(marker)] * 3, dtype=object)
    np.savez(tmp_path / "evil.npz", **arrays)
    with pytest.raises(ValueError, match="train_x holds Python objects.*pickle"):
        FeatureSet.load(tmp_path / "evil.npz")
    assert not marker.exists()


def test_compressed_and_fortran_ordered_files_load(tmp_path):
    arrays = _single(n_train=300, d=40)
    arrays["train_x"] = np.asfortranarray(arrays["train_x"])
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    loaded = FeatureSet.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(loaded.train_x, arrays["train_x"])
    np.testing.assert_array_equal(loaded.test_y, arrays["test_y"])


def test_test_classes_the_training_split_never_shows_are_refused(tmp_path):
    x = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"test_y has classes the training split never "
                                         r"shows \(\[5, 6\]\)"):
        FeatureSet(x, np.array([0, 1, 0, 1]), x, np.array([0, 5, 6, 1]))
