"""Smaller, class-balanced versions of a split, for quick runs on big data sets."""

from __future__ import annotations

import numbers

import numpy as np


def stratified_subset(labels, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` items that keep the class proportions of ``labels``.

    For 1-D labels (single-label data) each class ``k`` with ``c_k`` of the ``N`` items
    gets ``floor(n * c_k / N)`` items, and the ``n - sum`` items left over go to the
    classes with the largest fractional remainders (ties: lower class first), so that the
    total is exactly ``n`` and every class count is within one of its exact share.  The
    items of a class are drawn at random with ``seed``.  For 2-D labels (multi-label,
    where classes overlap) a seeded uniform random subset is returned.

    Parameters
    ----------
    labels : array-like, shape (N,) or (N, L)
        Class indices, or a label matrix.
    n : int
        Number of items wanted, >= 1.  ``n >= N`` returns every index.
    seed : int, default 0
        Seed of the random draw; the same (labels, n, seed) always gives the same indices.

    Returns
    -------
    numpy.ndarray of int64, shape (min(n, N),)
        Increasing, distinct indices into ``labels``.

    Examples
    --------
    >>> stratified_subset([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], 5).size
    5
    >>> np.bincount(np.asarray([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])[stratified_subset(
    ...     [0, 0, 0, 0, 1, 1, 1, 1, 1, 1], 5)]).tolist()
    [2, 3]
    """
    labels = np.asarray(labels)
    if labels.ndim not in (1, 2):
        raise ValueError(f"labels must be 1-D (classes) or 2-D (label matrix), "
                         f"got shape {labels.shape}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an integer, got {n!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    total = len(labels)
    if n >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if labels.ndim == 2:
        return np.sort(rng.choice(total, size=n, replace=False)).astype(np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"1-D labels must be integer class indices, got dtype {labels.dtype}")
    classes, codes = np.unique(labels, return_inverse=True)
    counts = np.bincount(codes, minlength=len(classes))
    takes = _largest_remainder(counts, n)
    chosen = [rng.choice(np.flatnonzero(codes == k), size=take, replace=False)
              for k, take in enumerate(takes) if take]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _largest_remainder(counts: np.ndarray, n: int) -> np.ndarray:
    """Integer shares of ``n`` proportional to ``counts`` (Hamilton's apportionment)."""
    # Integer arithmetic: n * c_k / N in floating point can floor to one less.
    scaled = counts.astype(np.int64) * n
    takes, remainders = np.divmod(scaled, counts.sum())
    short = n - int(takes.sum())
    # A stable sort on the negated remainder gives ties to the lower class index.
    order = np.argsort(-remainders, kind="stable")
    takes[order[:short]] += 1
    return takes
