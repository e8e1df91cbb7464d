"""What every data set returns: labelled splits that load one image at a time.

A :class:`Split` holds labels and class names in memory and decodes an image only when
asked, so opening Food-101 (100k files) costs a directory listing, not a decode.  Two
kinds exist: :class:`ImageFileSplit` (one file per image: VOC, MIT-67, Food-101, folders)
and :class:`ArraySplit` (images already in a uint8 array: Fashion-MNIST).
"""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# File name endings read as images by the folder layouts (compared in lower case).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not where it was looked for.

    The message lists every place searched and says exactly how to get the data
    (a ``dnnstress data fetch`` command or a download page, and ``--root``).

    Attributes
    ----------
    searched : list of pathlib.Path
        The directories looked at, in order.
    """

    def __init__(self, message: str, searched=()):
        super().__init__(message)
        self.searched = [Path(p) for p in searched]

    def __str__(self) -> str:  # OSError would otherwise print "[Errno None] ..." for 2 args
        return self.args[0]


class CorruptImageError(ValueError):
    """An image file that cannot be decoded; ``path`` names it.

    Extraction may skip such files and count them; the error type is what it catches.
    """

    def __init__(self, path, reason: object = None):
        self.path = Path(path)
        self.reason = reason
        message = f"corrupt or unreadable image: {self.path}"
        if reason is not None:
            message += f" ({reason})"
        super().__init__(message)


def load_rgb(path) -> Image.Image:
    """Decode the image file ``path`` as an RGB PIL image.

    Transparent pixels are composited onto white: cut-out photographs (PNG stamps) would
    otherwise turn into objects on black, which no ImageNet network has seen.  EXIF
    orientation is ignored, like the MATLAB ``imread`` of the authors' pipeline.

    Raises
    ------
    FileNotFoundError
        The file does not exist (a data set that lists a missing file).
    CorruptImageError
        The file exists but PIL cannot decode it (unknown format, truncated data).
    """
    try:
        with Image.open(path) as image:
            return _to_rgb(image)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as error:
        raise CorruptImageError(path, error) from error


def _to_rgb(image: Image.Image) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def check_indices(indices, n: int) -> np.ndarray:
    """``indices`` as a 1-D int64 array of positions in ``range(n)``; ValueError otherwise."""
    array = np.asarray(indices)
    if array.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"indices must be integers, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= n:
        raise ValueError(f"indices must lie in [0, {n}); got values from "
                         f"{array.min()} to {array.max()}")
    return array.astype(np.int64, copy=False)


class Split(abc.ABC):
    """One split ("train" or "test") of a labelled image data set.

    Attributes
    ----------
    name : str
        "train" or "test".
    labels : numpy.ndarray
        1-D int64 class indices (single-label data), or 2-D int8 ``(n, L)`` with
        1 (present), -1 (absent) and 0 (ignored: VOC "difficult").
    class_names : list of str
        Name of each class index / label column.
    dataset : str
        Registry name of the data set ("fashion-mnist", "voc2007", ...).
    root : pathlib.Path
        The directory the split was read from.
    layout : str
        The on-disk layout that was recognised ("idx", "vocdevkit", "mit67",
        "ethz", "upmc", "folder").
    """

    def __init__(self, name: str, labels: np.ndarray, class_names, *,
                 dataset: str, root, layout: str):
        self.name = name
        self.labels = labels
        self.class_names = list(class_names)
        self.dataset = dataset
        self.root = Path(root)
        self.layout = layout

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of images."""

    @abc.abstractmethod
    def load_image(self, i: int) -> Image.Image:
        """Image ``i`` as a PIL image, RGB (or "L" for grayscale data held in memory,
        which preprocessing resizes as one channel); :class:`CorruptImageError` if
        undecodable."""

    @abc.abstractmethod
    def describe(self, i: int) -> str:
        """Where image ``i`` comes from (a path, or "fashion-mnist train #i"), for messages."""

    @abc.abstractmethod
    def _take(self, indices: np.ndarray) -> Split:
        """A split of the same kind holding items ``indices`` (validated), in that order."""

    def subset(self, indices) -> Split:
        """The split restricted to ``indices``, in the order given.

        ``describe`` of the result still names the original item, so error messages
        from a subset point at the right file.
        """
        return self._take(check_indices(indices, len(self)))

    def _kind(self) -> str:
        shape = "x".join(str(s) for s in self.labels.shape)
        return f"{self.dataset} {self.name}: {len(self)} images, labels {shape}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._kind()}, root {self.root}>"


class ImageFileSplit(Split):
    """A split whose images are files on disk, one per item."""

    def __init__(self, name: str, paths, labels: np.ndarray, class_names, *,
                 dataset: str, root, layout: str):
        super().__init__(name, labels, class_names, dataset=dataset, root=root, layout=layout)
        self.paths = np.asarray([str(p) for p in paths], dtype=object)
        if len(self.paths) != len(labels):
            raise ValueError(f"{dataset} {name}: {len(self.paths)} images but "
                             f"{len(labels)} labels")

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, i: int) -> Image.Image:
        return load_rgb(self.paths[i])

    def describe(self, i: int) -> str:
        return self.paths[i]

    def _take(self, indices: np.ndarray) -> ImageFileSplit:
        return ImageFileSplit(self.name, self.paths[indices], self.labels[indices],
                              self.class_names, dataset=self.dataset, root=self.root,
                              layout=self.layout)


class ArraySplit(Split):
    """A split whose images are held in memory as a uint8 array ``(n, height, width)``."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray, class_names, *,
                 dataset: str, root, layout: str, origin: np.ndarray | None = None):
        super().__init__(name, labels, class_names, dataset=dataset, root=root, layout=layout)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"{dataset} {name}: images must be uint8 (n, height, width), "
                             f"got {images.dtype} {images.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{dataset} {name}: {len(images)} images but {len(labels)} labels")
        self.images = images
        # Position of each item in the full split, so that describe() survives subset().
        self.origin = np.arange(len(images)) if origin is None else origin

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i], mode="L")

    def describe(self, i: int) -> str:
        return f"{self.dataset} {self.name} #{self.origin[i]}"

    def _take(self, indices: np.ndarray) -> ArraySplit:
        return ArraySplit(self.name, self.images[indices], self.labels[indices],
                          self.class_names, dataset=self.dataset, root=self.root,
                          layout=self.layout, origin=self.origin[indices])
