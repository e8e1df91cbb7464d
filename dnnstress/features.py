"""Feature files: the hand-off between the network and the stress experiments.

A :class:`FeatureSet` holds the train and test features of one data set together with
their labels.  It is stored as an ``.npz`` file (the README's "features file"):

``train_x``, ``test_x``
    (n, d) floating-point feature matrices, the same width d.
``train_y``, ``test_y``
    Either 1-D integer class indices (single-label data; scored by accuracy) or a 2-D
    (n, L) ``int8`` matrix of 1 / -1 / 0 (multi-label data such as PASCAL VOC 2007,
    where 0 marks a "difficult" object that is ignored; scored by mean average precision).
``class_names`` (optional)
    One string per class (per column for multi-label data).
``metadata`` (optional)
    A JSON object: network, layer, data set, extraction settings.

The file is read without pickle, so loading a features file never executes code.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from dnnstress._files import write_atomically

_ARRAYS = ("train_x", "train_y", "test_x", "test_y")


@dataclasses.dataclass
class FeatureSet:
    """Train and test features of one data set, validated on construction.

    Parameters
    ----------
    train_x, test_x : ndarray of shape (n_train, d) and (n_test, d)
        Floating-point features, finite, the same width.
    train_y, test_y : ndarray
        1-D integer classes, or 2-D ``int8`` matrices of 1 / -1 / 0 with one column per
        class (multi-label).  Both splits use the same kind.
    class_names : list of str, optional
        Names of the classes; for multi-label data one per column.
    metadata : dict, optional
        JSON-serialisable description of how the features were made.

    Examples
    --------
    >>> import numpy as np
    >>> fs = FeatureSet(np.ones((4, 3), np.float32), np.array([0, 1, 0, 1]),
    ...                 np.ones((2, 3), np.float32), np.array([1, 0]))
    >>> fs.n_features, fs.is_multilabel
    (3, False)
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list[str] | None = None
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        _validate(self)

    @property
    def is_multilabel(self) -> bool:
        """True when the labels are a 2-D 1 / -1 / 0 matrix (scored by mAP)."""
        return self.train_y.ndim == 2

    @property
    def n_features(self) -> int:
        """Width d of the feature vectors."""
        return int(self.train_x.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes (columns for multi-label data, distinct labels otherwise)."""
        if self.is_multilabel:
            return int(self.train_y.shape[1])
        return int(np.unique(np.concatenate([self.train_y, self.test_y])).size)

    def save(self, path) -> Path:
        """Write the set to ``path`` (.npz) atomically and return the path.

        The file is written under a temporary name in the same folder and renamed over
        ``path``, so a crash never leaves a half-written features file behind.
        """
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"features file must end in .npz, got {path.name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        if self.class_names is not None:
            arrays["class_names"] = np.asarray(self.class_names, dtype=str)
        arrays["metadata"] = np.asarray(json.dumps(self.metadata, sort_keys=True))
        def write(temporary):
            with open(temporary, "wb") as stream:  # a stream: savez would add ".npz"
                np.savez(stream, **arrays)

        write_atomically(path, write)
        return path

    @classmethod
    def load(cls, path) -> FeatureSet:
        """Read and validate a features file written by :meth:`save` (or by hand).

        Every member is checked before it is read: object arrays (which would need
        pickle) are refused, and a header must declare no more data than the member
        holds in the zip directory, so a crafted few-byte file cannot make us allocate
        terabytes.  Any defect (not a zip, a CRC error, a missing array, mismatched
        shapes, NaN) is a ``ValueError`` that names the file and the problem.

        Raises
        ------
        FileNotFoundError
            Nothing at ``path``.
        ValueError
            ``path`` is a folder or not a valid features file.
        """
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"{path} is a folder, not an .npz features file")
        if not path.is_file():
            raise FileNotFoundError(f"features file not found: {path}")
        try:
            arrays, names, metadata = _read_npz(path)
            return cls(**arrays, class_names=names, metadata=metadata)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None


# The largest ratio of uncompressed to compressed size that deflate can reach (1032:1,
# from its 258-byte maximum match per 2-bit code), with a margin for headers.
_MAX_DEFLATE_RATIO = 1100


def _read_npz(path: Path):
    """The four arrays, the class names and the metadata of the .npz file ``path``."""
    with open(path, "rb") as stream:
        if stream.read(6) == b"\x93NUMPY":
            raise ValueError("holds a single array (.npy), not an .npz features file")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            missing = [name for name in _ARRAYS if name not in members]
            if missing:
                raise ValueError(f"missing array(s) {', '.join(missing)}; a features file "
                                 f"holds {', '.join(_ARRAYS)}")
            disk_size = path.stat().st_size
            read = {name: _read_member(archive, members[name], disk_size)
                    for name in (*_ARRAYS, "class_names", "metadata") if name in members}
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as error:
        raise ValueError(f"not a readable .npz features file ({error})") from None
    names = read.pop("class_names", None)
    if names is not None:
        if names.dtype.kind != "U" or names.ndim != 1:
            raise ValueError(f"class_names must be a 1-D array of strings, got "
                             f"{names.dtype} {names.shape}")
        names = names.tolist()
    metadata = read.pop("metadata", None)
    if metadata is None:
        metadata = {}
    else:
        if metadata.dtype.kind != "U" or metadata.ndim != 0:
            raise ValueError("metadata must be a JSON string (a 0-d string array)")
        metadata = json.loads(str(metadata))
        if not isinstance(metadata, dict):
            raise ValueError("metadata must be a JSON object")
    return read, names, metadata


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, disk_size: int) -> np.ndarray:
    """One .npy member, after checking that its header fits the member's real size."""
    name = info.filename.removesuffix(".npy")
    limit = disk_size if info.compress_type == zipfile.ZIP_STORED else (
        disk_size * _MAX_DEFLATE_RATIO)
    if info.file_size > limit:
        raise ValueError(f"member {name} claims {info.file_size} bytes, more than a "
                         f"{disk_size}-byte file can hold")
    with archive.open(info) as stream:
        try:
            version = np.lib.format.read_magic(stream)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = read_header(stream)
        except ValueError as error:
            raise ValueError(f"member {name} is not a valid .npy array ({error})") from None
        if dtype.hasobject:
            raise ValueError(f"member {name} holds Python objects (dtype {dtype}), which "
                             f"would need pickle; a features file holds plain arrays")
        declared = math.prod(shape) * dtype.itemsize
        held = info.file_size - stream.tell()
        if declared != held:
            raise ValueError(f"member {name} declares shape {shape} of {dtype} "
                             f"({declared} bytes) but holds {held} bytes")
    with archive.open(info) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def _validate(fs: FeatureSet) -> None:
    for name in _ARRAYS:
        if not isinstance(getattr(fs, name), np.ndarray):
            raise TypeError(f"{name} must be a numpy array, got {type(getattr(fs, name)).__name__}")
    for split in ("train", "test"):
        _check_x(getattr(fs, f"{split}_x"), f"{split}_x")
    if fs.train_x.shape[1] != fs.test_x.shape[1]:
        raise ValueError(f"train_x has {fs.train_x.shape[1]} features but test_x has "
                         f"{fs.test_x.shape[1]}")
    for split in ("train", "test"):
        _check_y(getattr(fs, f"{split}_y"), f"{split}_y", getattr(fs, f"{split}_x").shape[0])
    if fs.train_y.ndim != fs.test_y.ndim:
        raise ValueError("train_y and test_y must both be 1-D classes or both 2-D "
                         "multi-label matrices")
    if fs.is_multilabel and fs.train_y.shape[1] != fs.test_y.shape[1]:
        raise ValueError(f"train_y has {fs.train_y.shape[1]} label columns but test_y has "
                         f"{fs.test_y.shape[1]}")
    if not fs.is_multilabel:
        unseen = np.setdiff1d(fs.test_y, fs.train_y)
        if unseen.size:
            raise ValueError(f"test_y has classes the training split never shows "
                             f"({unseen[:10].tolist()}{' ...' if unseen.size > 10 else ''}): "
                             f"no classifier can predict them, and every score would be "
                             f"capped without saying so")
    if fs.class_names is not None:
        _check_class_names(fs)
    if not isinstance(fs.metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(fs.metadata).__name__}")


def _check_x(x: np.ndarray, name: str) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x features), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} has dtype {x.dtype}; features must be floating point")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(x)).sum())} NaN or "
                         f"infinite value(s)")


def _check_y(y: np.ndarray, name: str, n_rows: int) -> None:
    if y.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D classes or a 2-D (n, L) label matrix, "
                         f"got shape {y.shape}")
    if y.shape[0] != n_rows:
        raise ValueError(f"{name} has {y.shape[0]} rows but the features have {n_rows}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} has dtype {y.dtype}; labels must be integers")
    if y.ndim == 2:
        if y.dtype != np.int8:
            raise TypeError(f"{name} is a multi-label matrix of dtype {y.dtype}; "
                            f"use int8 with values 1 / -1 / 0")
        if y.shape[1] == 0:
            raise ValueError(f"{name} has no label columns")
        bad = ~np.isin(y, (-1, 0, 1))
        if bad.any():
            raise ValueError(f"{name} holds values other than 1 / -1 / 0 "
                             f"(e.g. {int(y[bad][0])})")


def _check_class_names(fs: FeatureSet) -> None:
    names = fs.class_names
    if isinstance(names, (str, bytes)) or not all(isinstance(n, str) for n in names):
        raise TypeError("class_names must be a list of strings")
    expected = fs.n_classes if fs.is_multilabel else None
    if expected is None:
        # Single-label: every class index must have a name.
        labels = np.concatenate([fs.train_y, fs.test_y])
        if labels.min() < 0 or labels.max() >= len(names):
            raise ValueError(f"labels range over {labels.min()}..{labels.max()} but "
                             f"there are {len(names)} class names")
    elif len(names) != expected:
        raise ValueError(f"{len(names)} class names for {expected} label columns")
