"""Food-101: photographs of 101 dishes, scored by accuracy.  Two versions exist.

- ETHZ Food-101 (Bossard et al. 2014): ``meta/train.txt`` and ``meta/test.txt`` list
  ``class/id`` for ``images/class/id.jpg`` (75,750 / 25,250), ``meta/classes.txt`` the
  class order.
- UPMC Food-101 (Wang et al. 2015), the one the paper used: web images in
  ``images/train/<class>/*`` and ``images/test/<class>/*`` (about 90k images; the
  reference notes put its test split at about 30k, not ETHZ's 25,250).

The layout is detected from the files; ``Split.layout`` says which ("ethz" or "upmc").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnnstress.datasets.base import ImageFileSplit
from dnnstress.datasets.image_folder import read_class_folders
from dnnstress.datasets.locations import candidate_dirs, find_root

NAME = "food101"
ETHZ_PAGE = "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/"
UPMC_PAGE = "http://visiir.lip6.fr/"
EXPECTED = "meta/train.txt + images/ (ETHZ) or images/train + images/test (UPMC)"
HOW_TO_GET = (f"for UPMC Food-101 (the paper's) request UPMC_Food101.tar.gz at {UPMC_PAGE}; "
              f"for ETHZ Food-101 download food-101.tar.gz from {ETHZ_PAGE}. Extract the "
              f"archive into DIR (either layout is recognised).")


def locate(root=None) -> Path:
    """The Food-101 directory of either layout; DatasetNotFoundError if none."""
    return find_root(NAME, candidate_dirs(NAME, root),
                     lambda candidate: _resolve(candidate)[0], EXPECTED, HOW_TO_GET)


def detect_layout(directory) -> str | None:
    """"ethz", "upmc" or None for a directory that holds neither layout."""
    directory = Path(directory)
    if (directory / "meta" / "train.txt").is_file() and (directory / "images").is_dir():
        return "ethz"
    if (directory / "images" / "train").is_dir() and (directory / "images" / "test").is_dir():
        return "upmc"
    return None


def open_food101(root=None) -> dict[str, ImageFileSplit]:
    """Read Food-101 (ETHZ or UPMC layout, auto-detected) into ``{"train", "test"}`` splits.

    Parameters
    ----------
    root : path-like, optional
        The data set directory, or the directory the archive was extracted into
        (``food-101/`` or ``UPMC_Food101/`` below it is found).
    """
    directory, layout = _resolve(locate(root))
    if layout == "ethz":
        return _read_ethz(directory)
    images = directory / "images"
    return read_class_folders({"train": images / "train", "test": images / "test"},
                              dataset=NAME, root=directory, layout="upmc")


def _resolve(candidate: Path) -> tuple[Path | None, str | None]:
    for directory in (candidate, candidate / "food-101", candidate / "UPMC_Food101"):
        layout = detect_layout(directory)
        if layout is not None:
            return directory, layout
    return None, None


def _read_ethz(directory: Path) -> dict[str, ImageFileSplit]:
    meta = directory / "meta"
    entries = {split: _read_lines(meta / f"{split}.txt") for split in ("train", "test")}
    classes_file = meta / "classes.txt"
    if classes_file.is_file():
        class_names = _read_lines(classes_file)
    else:
        class_names = sorted({e.split("/", 1)[0] for lines in entries.values() for e in lines})
    index = {name: k for k, name in enumerate(class_names)}
    splits = {}
    for split, lines in entries.items():
        labels = []
        for entry in lines:
            name = entry.split("/", 1)[0]
            if name not in index:
                raise ValueError(f"{meta / f'{split}.txt'}: class {name!r} of {entry!r} "
                                 f"is not in {classes_file}")
            labels.append(index[name])
        paths = [directory / "images" / f"{entry}.jpg" for entry in lines]
        splits[split] = ImageFileSplit(split, paths, np.asarray(labels, dtype=np.int64),
                                       class_names, dataset=NAME, root=directory, layout="ethz")
    return splits


def _read_lines(path: Path) -> list[str]:
    with open(path) as handle:
        lines = [line.strip() for line in handle if line.strip()]
    if not lines:
        raise ValueError(f"{path}: is empty")
    return lines
