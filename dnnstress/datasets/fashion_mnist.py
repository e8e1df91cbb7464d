"""Fashion-MNIST (Xiao et al. 2017): 70,000 28x28 grayscale images of 10 clothing classes.

The embedded default data set: small, MIT-licensed, and installable without internet
from Debian's ``dataset-fashion-mnist`` package (``dnnstress data fetch fashion-mnist``).
The four IDX files are read into memory (55 MB of uint8); images are served as RGB
so that an ImageNet network takes them like any photograph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnnstress.datasets.base import ArraySplit
from dnnstress.datasets.idx import read_idx
from dnnstress.datasets.locations import candidate_dirs, find_root

NAME = "fashion-mnist"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# Split name -> (images file, labels file), the names used by every distribution.
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
UPSTREAM_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
EXPECTED = "train-images-idx3-ubyte[.gz] and the 3 other IDX files"
HOW_TO_GET = (f"run `dnnstress data fetch {NAME}` (Debian package {DEBIAN_PACKAGE}, no root "
              f"needed), or `sudo apt-get install {DEBIAN_PACKAGE}` (installs to "
              f"{DEBIAN_DIR}), or on a machine with internet "
              f"`dnnstress data fetch {NAME} --url {UPSTREAM_URL}`.")


def locate(root=None) -> Path:
    """The directory holding the four Fashion-MNIST files; DatasetNotFoundError if none."""
    return find_root(NAME, candidate_dirs(NAME, root, extra=[DEBIAN_DIR]), _resolve,
                     EXPECTED, HOW_TO_GET)


def open_fashion_mnist(root=None) -> dict[str, ArraySplit]:
    """Read Fashion-MNIST into ``{"train": 60,000 images, "test": 10,000 images}``.

    Parameters
    ----------
    root : path-like, optional
        Directory with the four IDX files (gzipped or not).  Default: the search order
        of :mod:`dnnstress.datasets.locations`, then ``/usr/share/datasets/fashion-mnist``.
    """
    directory = locate(root)
    return {split: _read_split(directory, split) for split in FILES}


def _resolve(candidate: Path) -> Path | None:
    names = [name for pair in FILES.values() for name in pair]
    return candidate if all(_file(candidate, name) for name in names) else None


def _file(directory: Path, name: str) -> Path | None:
    """``directory/name.gz`` or ``directory/name``, whichever exists (gzip first)."""
    for path in (directory / f"{name}.gz", directory / name):
        if path.is_file():
            return path
    return None


def _read_split(directory: Path, split: str) -> ArraySplit:
    images_name, labels_name = FILES[split]
    images_path = _file(directory, images_name)
    labels_path = _file(directory, labels_name)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{images_path}: expected uint8 images (n, 28, 28), "
                         f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected 1-D uint8 labels, "
                         f"got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{directory}: {split} has {len(images)} images but "
                         f"{len(labels)} labels")
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"{labels_path}: label {labels.max()} out of range "
                         f"0..{len(CLASS_NAMES) - 1}")
    return ArraySplit(split, images, labels.astype(np.int64), CLASS_NAMES,
                      dataset=NAME, root=directory, layout="idx")
