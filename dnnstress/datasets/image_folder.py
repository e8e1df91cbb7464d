"""Any labelled image collection laid out as ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*``.

Image files are recognised by their ending (jpg, jpeg, png, bmp, gif, webp, any case);
hidden files and other files are ignored.  Class indices follow the sorted class names
found in either split, so both splits share one index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnnstress.datasets.base import IMAGE_EXTENSIONS, DatasetNotFoundError, ImageFileSplit

NAME = "folder"
SPLITS = ("train", "test")
EXPECTED = "DIR/train/<class>/<image> and DIR/test/<class>/<image>"
HOW_TO_GET = (f"arrange your images as {EXPECTED} (jpg, jpeg, png, bmp, gif or webp) and "
              f"pass --root DIR (root= in Python).")


def locate(root=None) -> Path:
    """``root`` itself if it has train/ and test/ folders; DatasetNotFoundError otherwise."""
    if root is None:
        raise DatasetNotFoundError(f"the {NAME!r} data set has no default location: "
                                   f"{HOW_TO_GET}")
    root = Path(root).expanduser()
    if not all((root / split).is_dir() for split in SPLITS):
        state = "exists but lacks train/ or test/" if root.is_dir() else "does not exist"
        raise DatasetNotFoundError(f"data set {NAME!r} not found: {root} {state}. "
                                   f"Expected {EXPECTED}.", searched=[root])
    return root


def open_image_folder(root=None) -> dict[str, ImageFileSplit]:
    """Read ``root/train/<class>/*`` and ``root/test/<class>/*`` into two splits."""
    directory = locate(root)
    return read_class_folders({split: directory / split for split in SPLITS},
                              dataset=NAME, root=directory, layout="folder")


def read_class_folders(split_dirs: dict[str, Path], *, dataset: str, root: Path,
                       layout: str) -> dict[str, ImageFileSplit]:
    """Splits from ``{split name: directory of class sub-directories}``, one class index."""
    listings = {split: _list_classes(directory) for split, directory in split_dirs.items()}
    class_names = sorted({name for listing in listings.values() for name in listing})
    if not class_names:
        raise ValueError(f"{dataset}: no images found under "
                         f"{', '.join(str(d) for d in split_dirs.values())}")
    index = {name: k for k, name in enumerate(class_names)}
    splits = {}
    for split, listing in listings.items():
        paths = [path for name in sorted(listing) for path in listing[name]]
        labels = np.asarray([index[name] for name in sorted(listing) for _ in listing[name]],
                            dtype=np.int64)
        if not paths:
            raise ValueError(f"{dataset}: the {split} split has no images in {split_dirs[split]}")
        splits[split] = ImageFileSplit(split, paths, labels, class_names, dataset=dataset,
                                       root=root, layout=layout)
    return splits


def _list_classes(directory: Path) -> dict[str, list[Path]]:
    """``{class name: sorted image paths}`` for the non-empty class folders of ``directory``."""
    listing = {}
    for class_dir in sorted(directory.iterdir()):
        if not class_dir.is_dir() or class_dir.name.startswith("."):
            continue
        images = sorted(path for path in class_dir.iterdir()
                        if path.suffix.lower() in IMAGE_EXTENSIONS
                        and not path.name.startswith(".") and path.is_file())
        if images:
            listing[class_dir.name] = images
    return listing
