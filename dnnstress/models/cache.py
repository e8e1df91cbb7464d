"""A small on-disk cache for built network files, checked by sha256 on every load.

Networks are built (not downloaded) the first time they are needed and kept in
``platformdirs.user_cache_dir("dnnstress")``, or wherever ``DNNSTRESS_CACHE`` or the
caller's ``cache_dir`` points.  A build writes to a temporary file in the cache directory
and moves it into place with :func:`os.replace`, so a crash or a concurrent reader never
sees half a file.  Next to each file, ``NAME.sha256`` records its digest; a file whose
digest no longer matches (truncated, edited, disk error) or has no record is rebuilt,
and standard error says so.

Builds hold an exclusive lock on the cache directory (``flock``, released by the kernel
when the process dies), so two processes never build the same file at once, and a
temporary file found while holding it was left by a build that was killed: it is
removed before the next build.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import sys
from collections.abc import Callable

from dnnstress._files import write_atomically

__all__ = ["CACHE_ENV_VAR", "cached_file", "get_cache_dir", "sha256_file"]

CACHE_ENV_VAR = "DNNSTRESS_CACHE"


def get_cache_dir(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The cache directory: ``cache_dir`` if given, else ``$DNNSTRESS_CACHE``, else the
    user cache directory of the platform (e.g. ``~/.cache/dnnstress``).  Not created here.
    """
    if cache_dir is not None:
        return pathlib.Path(cache_dir)
    if os.environ.get(CACHE_ENV_VAR):
        return pathlib.Path(os.environ[CACHE_ENV_VAR])
    import platformdirs

    return pathlib.Path(platformdirs.user_cache_dir("dnnstress"))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_intact(path: pathlib.Path, record: pathlib.Path) -> bool:
    try:
        expected = record.read_text().split()[0]
    except (OSError, IndexError):
        return False
    return path.is_file() and sha256_file(path) == expected


def cached_file(name: str, build: Callable[[pathlib.Path], object],
                cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Path of the cached file ``name``, built with ``build(path)`` when missing or corrupt.

    Parameters
    ----------
    name : str
        File name inside the cache directory.  Put a version in it: a changed build
        recipe must not reuse files built by the old one.
    build : callable
        ``build(path)`` writes the file at ``path`` (a temporary name in the cache
        directory); it must not return before the file is complete.
    cache_dir : str or path-like, optional
        See :func:`get_cache_dir`.

    Returns
    -------
    pathlib.Path
        The verified file.
    """
    if not name or pathlib.Path(name).name != name:
        raise ValueError(f"cache entry name must be a plain file name, got {name!r}")
    directory = get_cache_dir(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path, record = directory / name, directory / f"{name}.sha256"
    if _is_intact(path, record):
        return path
    with _locked(directory):
        if _is_intact(path, record):  # built by another process while we waited
            return path
        if path.exists():
            problem = ("does not match its recorded sha256 (truncated or changed)"
                       if record.exists() else "has no sha256 record (its build was cut)")
            print(f"dnnstress: the cached {path} {problem}; rebuilding it", file=sys.stderr)
        _remove_temporaries(directory, name)
        write_atomically(path, build)
        digest = sha256_file(path)
        write_atomically(record, lambda tmp: tmp.write_text(f"{digest}  {name}\n"))
    return path


@contextlib.contextmanager
def _locked(directory: pathlib.Path):
    """Hold an exclusive ``flock`` on ``directory`` (where the platform has one)."""
    try:
        import fcntl
    except ImportError:  # Windows: builds are not serialised, files stay atomic
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _remove_temporaries(directory: pathlib.Path, name: str) -> None:
    """Delete what killed builds of ``name`` left (the temporaries of ``write_atomically``
    for the file and its record); only called with the directory locked."""
    for entry in directory.iterdir():
        if entry.name.startswith(f".{name}.") and entry.name.endswith(".tmp"):
            entry.unlink(missing_ok=True)
