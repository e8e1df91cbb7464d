"""PASCAL VOC 2007 classification: 9,963 photographs, 20 overlapping object classes.

The paper's main data set (scored by mean average precision).  Read from the official
VOCdevkit layout: ``ImageSets/Main/<class>_<split>.txt`` lists every image of the split
with 1 (present), -1 (absent) or 0 ("difficult", ignored by the metric), and
``JPEGImages/<id>.jpg`` holds the pictures.  train = trainval (5,011), test = test (4,952).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnnstress.datasets.base import ImageFileSplit
from dnnstress.datasets.locations import candidate_dirs, find_root

NAME = "voc2007"
# The devkit's class order; the label matrix columns follow it.
CLASS_NAMES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
SPLIT_FILES = {"train": "trainval", "test": "test"}
DOWNLOAD_PAGE = "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/"
EXPECTED = "VOC2007/ImageSets/Main and VOC2007/JPEGImages"
HOW_TO_GET = (f"download VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar from "
              f"{DOWNLOAD_PAGE} and extract both into one directory DIR (they fill "
              f"DIR/VOCdevkit/VOC2007).")


def locate(root=None) -> Path:
    """The VOC2007 directory (holding ImageSets and JPEGImages); DatasetNotFoundError if none."""
    return find_root(NAME, candidate_dirs(NAME, root), _resolve, EXPECTED, HOW_TO_GET)


def open_voc2007(root=None) -> dict[str, ImageFileSplit]:
    """Read the VOC 2007 label files into ``{"train": trainval, "test": test}``.

    Parameters
    ----------
    root : path-like, optional
        The VOC2007 directory, the VOCdevkit directory above it, or the directory the
        tar files were extracted into.

    Returns
    -------
    dict of str to ImageFileSplit
        Labels are int8 ``(n, 20)`` in {1, -1, 0}, columns in :data:`CLASS_NAMES` order.
    """
    directory = locate(root)
    return {split: _read_split(directory, split, stem) for split, stem in SPLIT_FILES.items()}


def _resolve(candidate: Path) -> Path | None:
    for directory in (candidate, candidate / "VOC2007", candidate / "VOCdevkit" / "VOC2007"):
        if (directory / "ImageSets" / "Main").is_dir() and (directory / "JPEGImages").is_dir():
            return directory
    return None


def _read_split(directory: Path, split: str, stem: str) -> ImageFileSplit:
    main = directory / "ImageSets" / "Main"
    ids = None
    columns = []
    for name in CLASS_NAMES:
        path = main / f"{name}_{stem}.txt"
        if not path.is_file():
            hint = " (the test labels come in VOCtest_06-Nov-2007.tar)" if stem == "test" else ""
            raise FileNotFoundError(f"VOC 2007 label file missing: {path}{hint}")
        file_ids, values = _read_label_file(path)
        if ids is None:
            ids = file_ids
        elif file_ids != ids:
            first = main / f"{CLASS_NAMES[0]}_{stem}.txt"
            raise ValueError(f"{path}: lists other images than {first}")
        columns.append(values)
    labels = np.stack(columns, axis=1).astype(np.int8)
    paths = [directory / "JPEGImages" / f"{image_id}.jpg" for image_id in ids]
    return ImageFileSplit(split, paths, labels, CLASS_NAMES, dataset=NAME, root=directory,
                          layout="vocdevkit")


def _read_label_file(path: Path) -> tuple[list[str], np.ndarray]:
    """Image ids and their 1 / -1 / 0 values from one ``<class>_<split>.txt`` file."""
    ids, values = [], []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("1", "-1", "0"):
                raise ValueError(f"{path}, line {number}: expected 'imageid 1|-1|0', "
                                 f"got {line.strip()!r}")
            ids.append(fields[0])
            values.append(int(fields[1]))
    return ids, np.asarray(values, dtype=np.int8)
