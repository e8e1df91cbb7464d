"""Labelled image data sets, read from their standard on-disk layouts.

``open_dataset(name, root=None)`` returns ``{"train": Split, "test": Split}``; a
:class:`Split` has ``labels``, ``class_names`` and ``load_image(i)`` (a PIL image, RGB or
grayscale, decoded on demand).  Known names: "fashion-mnist" (the embedded default, fetchable with
``dnnstress data fetch fashion-mnist``), "voc2007", "mit67", "food101" (ETHZ or UPMC
layout) and "folder" (``ROOT/train/<class>/*``, ``ROOT/test/<class>/*``).

Examples
--------
>>> from dnnstress.datasets import open_dataset, stratified_subset
>>> train = open_dataset("fashion-mnist")["train"]               # doctest: +SKIP
>>> small = train.subset(stratified_subset(train.labels, 1000))  # doctest: +SKIP
>>> small.load_image(0).size                                    # doctest: +SKIP
(28, 28)
"""

from dnnstress.datasets.base import (
    ArraySplit,
    CorruptImageError,
    DatasetNotFoundError,
    ImageFileSplit,
    Split,
    load_rgb,
)
from dnnstress.datasets.fetch import FetchError, fetch_fashion_mnist
from dnnstress.datasets.locations import cache_root, default_dataset_dir
from dnnstress.datasets.registry import (
    DatasetInfo,
    available_datasets,
    dataset_info,
    open_dataset,
)
from dnnstress.datasets.sampling import stratified_subset

__all__ = [
    "ArraySplit",
    "CorruptImageError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "FetchError",
    "ImageFileSplit",
    "Split",
    "available_datasets",
    "cache_root",
    "dataset_info",
    "default_dataset_dir",
    "fetch_fashion_mnist",
    "load_rgb",
    "open_dataset",
    "stratified_subset",
]
