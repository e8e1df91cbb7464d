"""Where data sets are looked for, and the error that says where they were not found.

Search order for a data set called NAME, unless a root is given explicitly:

1. ``$DNNSTRESS_DATA/NAME`` (a directory of data sets the user keeps);
2. the dnnstress cache, ``$DNNSTRESS_CACHE/datasets/NAME`` or, without that variable,
   ``platformdirs.user_cache_dir("dnnstress")/datasets/NAME`` (where ``dnnstress data
   fetch`` writes; the model cache follows the same ``DNNSTRESS_CACHE`` convention);
3. places specific to a data set (``/usr/share/datasets/fashion-mnist`` from Debian).

An explicit root is the only place looked at: silently falling back to another copy
would hide a typo in ``--root``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from dnnstress.datasets.base import DatasetNotFoundError


def cache_root() -> Path:
    """The dnnstress cache directory (``$DNNSTRESS_CACHE`` or the user cache dir)."""
    explicit = os.environ.get("DNNSTRESS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs  # only needed when no cache is named

    return Path(platformdirs.user_cache_dir("dnnstress"))


def default_dataset_dir(name: str) -> Path:
    """Where ``dnnstress data fetch NAME`` puts a data set by default."""
    return cache_root() / "datasets" / name


def candidate_dirs(name: str, root=None, extra: Iterable = ()) -> list[Path]:
    """The directories searched for data set ``name``, in order (see module docstring)."""
    if root is not None:
        return [Path(root).expanduser()]
    candidates = []
    data = os.environ.get("DNNSTRESS_DATA")
    if data:
        candidates.append(Path(data).expanduser() / name)
    candidates.append(default_dataset_dir(name))
    candidates.extend(Path(p) for p in extra)
    return candidates


def find_root(name: str, candidates: list[Path], resolve: Callable[[Path], Path | None],
              expected: str, how_to_get: str) -> Path:
    """The first resolved candidate directory, or a :class:`DatasetNotFoundError`.

    Parameters
    ----------
    name : str
        Data set name, for the message.
    candidates : list of Path
        Directories to try, in order.
    resolve : callable
        Maps a candidate to the directory that holds the data set's layout (it may be
        the candidate itself or a known sub-directory), or None.
    expected : str
        The files the layout needs, for the message ("ImageSets/Main and JPEGImages").
    how_to_get : str
        Exact instructions to obtain the data set.
    """
    for candidate in candidates:
        found = resolve(candidate)
        if found is not None:
            return found
    lines = [f"data set {name!r} not found. Looked for {expected} in:"]
    for candidate in candidates:
        state = "exists but has no such layout" if candidate.is_dir() else "does not exist"
        lines.append(f"  {candidate}  ({state})")
    lines.append(f"To get it: {how_to_get}")
    lines.append(f"If it is elsewhere, pass --root DIR (root= in Python), or put it at "
                 f"$DNNSTRESS_DATA/{name} or {default_dataset_dir(name)}.")
    raise DatasetNotFoundError("\n".join(lines), searched=candidates)
