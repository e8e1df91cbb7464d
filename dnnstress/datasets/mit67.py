"""MIT-67 indoor scenes (Quattoni and Torralba 2009): 67 scene classes, scored by accuracy.

Standard split: ``TrainImages.txt`` (5,360 images, 80 per class) and ``TestImages.txt``
(1,340, 20 per class), each line ``class/file.jpg`` relative to ``Images/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnnstress.datasets.base import ImageFileSplit
from dnnstress.datasets.locations import candidate_dirs, find_root

NAME = "mit67"
SPLIT_FILES = {"train": "TrainImages.txt", "test": "TestImages.txt"}
DOWNLOAD_PAGE = "http://web.mit.edu/torralba/www/indoor.html"
EXPECTED = "Images/<class>/, TrainImages.txt and TestImages.txt"
HOW_TO_GET = (f"download indoorCVPR_09.tar, TrainImages.txt and TestImages.txt from "
              f"{DOWNLOAD_PAGE}; extract the tar into DIR (it makes DIR/Images) and put "
              f"the two .txt files in DIR.")


def locate(root=None) -> Path:
    """The directory holding Images/ and the split lists; DatasetNotFoundError if none."""
    return find_root(NAME, candidate_dirs(NAME, root), _resolve, EXPECTED, HOW_TO_GET)


def open_mit67(root=None) -> dict[str, ImageFileSplit]:
    """Read the MIT-67 split lists into ``{"train": ..., "test": ...}``.

    Class indices follow the sorted class names, shared by both splits.
    """
    directory = locate(root)
    entries = {split: _read_list(directory / filename) for split, filename in SPLIT_FILES.items()}
    class_names = sorted({entry.split("/", 1)[0] for lines in entries.values() for entry in lines})
    index = {name: k for k, name in enumerate(class_names)}
    splits = {}
    for split, lines in entries.items():
        labels = np.asarray([index[entry.split("/", 1)[0]] for entry in lines], dtype=np.int64)
        paths = [directory / "Images" / entry for entry in lines]
        splits[split] = ImageFileSplit(split, paths, labels, class_names, dataset=NAME,
                                       root=directory, layout="mit67")
    return splits


def _resolve(candidate: Path) -> Path | None:
    for directory in (candidate, candidate / "indoorCVPR_09"):
        if (directory / "Images").is_dir() and all(
                (directory / filename).is_file() for filename in SPLIT_FILES.values()):
            return directory
    return None


def _read_list(path: Path) -> list[str]:
    """Non-empty ``class/file`` lines of a split list (Windows line ends tolerated)."""
    entries = []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            entry = line.strip()
            if not entry:
                continue
            if "/" not in entry:
                raise ValueError(f"{path}, line {number}: expected 'class/file.jpg', "
                                 f"got {entry!r}")
            entries.append(entry)
    if not entries:
        raise ValueError(f"{path}: lists no images")
    return entries
