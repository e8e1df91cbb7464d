"""The known data sets by name: how to open, locate and obtain each one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dnnstress.datasets import fashion_mnist, food101, image_folder, mit67, voc2007
from dnnstress.datasets.base import Split


@dataclass(frozen=True)
class DatasetInfo:
    """One registry entry.

    Attributes
    ----------
    name : str
        Registry name, as given to :func:`open_dataset` and the CLI.
    description : str
        One line for ``dnnstress data list``.
    open : callable
        ``open(root=None) -> {"train": Split, "test": Split}``.
    locate : callable
        ``locate(root=None) -> Path``, cheap (no decoding); raises DatasetNotFoundError.
    how_to_get : str
        Exact instructions, as in the not-found message.
    fetchable : bool
        Whether ``dnnstress data fetch NAME`` can download it.
    needs_root : bool
        Whether it has no default location (your own folder of images).
    """

    name: str
    description: str
    open: Callable[..., dict[str, Split]]
    locate: Callable[..., Path]
    how_to_get: str
    fetchable: bool = False
    needs_root: bool = False


_REGISTRY = {info.name: info for info in (
    DatasetInfo(fashion_mnist.NAME, "Fashion-MNIST, 10 classes, 60,000 / 10,000 (accuracy)",
                fashion_mnist.open_fashion_mnist, fashion_mnist.locate,
                fashion_mnist.HOW_TO_GET, fetchable=True),
    DatasetInfo(voc2007.NAME, "PASCAL VOC 2007, 20 labels, 5,011 / 4,952 (mAP)",
                voc2007.open_voc2007, voc2007.locate, voc2007.HOW_TO_GET),
    DatasetInfo(mit67.NAME, "MIT-67 indoor scenes, 67 classes, 5,360 / 1,340 (accuracy)",
                mit67.open_mit67, mit67.locate, mit67.HOW_TO_GET),
    DatasetInfo(food101.NAME, "Food-101, 101 classes, ETHZ or UPMC layout (accuracy)",
                food101.open_food101, food101.locate, food101.HOW_TO_GET),
    DatasetInfo(image_folder.NAME, "your images: ROOT/train/<class>/*, ROOT/test/<class>/*",
                image_folder.open_image_folder, image_folder.locate, image_folder.HOW_TO_GET,
                needs_root=True),
)}

# Other spellings people type; they map onto registry names.
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "voc": "voc2007", "voc-2007": "voc2007", "pascal-voc2007": "voc2007",
            "mit-67": "mit67", "food-101": "food101", "upmc-food101": "food101",
            "image-folder": "folder"}


def available_datasets() -> list[str]:
    """Registry names of the data sets :func:`open_dataset` knows."""
    return list(_REGISTRY)


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for ``name`` (case and ``_``/``-`` insensitive, aliases allowed)."""
    if not isinstance(name, str):
        raise TypeError(f"data set name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def open_dataset(name: str, root=None) -> dict[str, Split]:
    """Open data set ``name`` as ``{"train": Split, "test": Split}``.

    Parameters
    ----------
    name : str
        One of :func:`available_datasets` ("fashion-mnist", "voc2007", "mit67",
        "food101", "folder").
    root : path-like, optional
        Where the data set is.  Default: ``$DNNSTRESS_DATA/NAME``, then the dnnstress
        cache (and ``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST).  The
        "folder" data set needs it.

    Raises
    ------
    DatasetNotFoundError
        Nothing usable at the searched places; the message lists them and says how to
        get the data set.
    ValueError
        Unknown name, or files present but malformed (the message names the file).
    """
    return dataset_info(name).open(root)
