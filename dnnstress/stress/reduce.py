"""DR-1 and DR-2: dimensionality reduction (paper Sec. 2.1, reference README "DR-1 / DR-2").

Both keep ``n_components`` of the ``n_features`` dimensions and can change that count
after fitting (``set_params(n_components=k)``) without refitting, so one fit serves a
whole sweep, and the kept subspaces are nested: the dimensions kept at ``k`` are among
those kept at any ``k' > k``.
"""

from __future__ import annotations

import numpy as np

from dnnstress._array import array_namespace
from dnnstress._array import check_count, count_nonfinite
from dnnstress.stress.base import Stressor, like


class RandomDrop(Stressor):
    """DR-1: keep a random subset of ``n_components`` dimensions.

    The subset is a prefix of one random permutation drawn at ``fit``, so the same
    columns are kept for train and test, and subsets for different ``n_components`` with
    the same seed are nested (the reference README allows either; nested is cheaper and
    makes the curve smoother).

    Parameters
    ----------
    n_components : int
        Dimensions kept, 1 to n_features.
    random_state : int, numpy Generator or None
        Seed of the permutation (``numpy.random.default_rng`` semantics).

    Attributes
    ----------
    permutation_ : ndarray of shape (n_features,)
        The random order in which dimensions are kept.
    """

    def __init__(self, n_components, random_state=None):
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X, y=None):
        self._validate_fit_input(X)
        d = X.shape[1]
        check_count(self.n_components, "n_components", 1, d)
        self.permutation_ = np.random.default_rng(self.random_state).permutation(d)
        self.n_features_in_ = d
        return self

    @property
    def n_features_out_(self) -> int:
        return check_count(self.n_components, "n_components", 1, self.n_features_in_)

    @property
    def indices_(self) -> np.ndarray:
        """Sorted indices of the kept dimensions (sorted keeps memory access in order)."""
        return np.sort(self.permutation_[:self.n_features_out_])

    def transform(self, X):
        X = self._validate_transform_input(X)
        xp = array_namespace(X)
        return xp.take(X, like(self.indices_, X), axis=1)


class PCADrop(Stressor):
    """DR-2: project on the ``n_components`` principal directions of the training set.

    The basis is the eigen-decomposition of the centred training covariance, sorted by
    decreasing variance, each direction's sign fixed so that its largest-magnitude
    entry is positive (the convention of scikit-learn's ``svd_flip``).  Projection is
    ``X @ components_[:k].T`` WITHOUT subtracting the mean and without whitening, as the
    authors did; at ``k = n_features`` the basis is orthonormal, so dot products, norms
    and hence the SVM's score are those of the unstressed features.

    When there are fewer training samples than features, the decomposition runs on the
    ``n x n`` Gram matrix instead of the ``d x d`` covariance, and only the directions of
    non-zero variance exist (at most ``n_samples - 1``).  Only the ``n_components``
    leading directions are computed from it (on 5,011 x 50,176 features, 2,508 of
    them, DR-2's largest count there, cost half the projection of all 5,010).

    The products with the features (covariance or Gram, then the Gram route's
    projection) run in the features' precision, a block at a time, the blocks' sums in
    float64: float32 features take float32 products, twice as fast as float64.  Against
    a float64 fit, the directions then differ by what float32 rounding of the
    covariance can move them: about 1e-7 for the leading, well-separated ones, more for
    directions whose variances nearly tie, which rotate within their cluster while the
    variance kept at every count stays that of the float64 fit to about 1e-7
    (bench/RESULTS.md, 2026-12-02, has the figures at 5,011 x 50,176).

    Parameters
    ----------
    n_components : int or None
        Directions computed and kept; None computes all.  May be lowered after ``fit``
        (``set_params``), which keeps the leading ones of the same fit.

    Attributes
    ----------
    components_ : array of shape (n_components, n_features), float64
        Orthonormal principal directions, rows by decreasing variance.
    explained_variance_ : array of shape (n_components,)
    mean_ : array of shape (n_features,)
        Training mean (used to find the directions, not subtracted when projecting).
    """

    def __init__(self, n_components=None):
        self.n_components = n_components

    def fit(self, X, y=None):
        self._validate_fit_input(X)
        xp = array_namespace(X)
        n, d = X.shape
        if n < 2:
            raise ValueError("PCADrop needs at least 2 training samples")
        with np.errstate(over="ignore", invalid="ignore"):  # checked by _centred_products
            mean = xp.mean(X, axis=0, dtype=xp.float64)
        work = _product_dtype(X)
        # eigh sorts ascending: flipped to decreasing variance.
        if d <= n:
            variances, vectors = xp.linalg.eigh(_centred_products(X, mean, work, rows=True))
            variances = xp.flip(variances)
            k = _check_n_components(self.n_components, d, d)
            components = xp.ascontiguousarray(xp.flip(vectors.T, axis=0)[:k])
        else:
            variances, vectors = xp.linalg.eigh(_centred_products(X, mean, work, rows=False))
            keep = variances > variances[-1] * n * np.finfo(np.float64).eps
            variances = xp.flip(variances[keep])
            k = _check_n_components(self.n_components, variances.shape[0], d)
            leading = xp.flip(vectors[:, keep], axis=1)[:, :k]
            components = _gram_components(X, mean, work, leading, variances[:k])
        _fix_signs(components)
        self.mean_ = mean
        self.explained_variance_ = xp.clip(variances[:k], 0, None) / (n - 1)
        self.components_ = components
        self.n_features_in_ = d
        return self

    @property
    def n_features_out_(self) -> int:
        return _check_n_components(self.n_components, self.components_.shape[0],
                                   self.n_features_in_)

    def transform(self, X):
        X = self._validate_transform_input(X)
        k = self.n_features_out_
        basis = like(self.components_[:k], X).astype(X.dtype)
        return X @ basis.T


def _check_n_components(n_components, available: int, n_features: int) -> int:
    """``n_components`` (None: all) as a count of the ``available`` directions."""
    if n_components is None:
        return available
    if isinstance(n_components, int) and n_components > available:
        raise ValueError(
            f"n_components={n_components} but only {available} principal directions are "
            f"available ({n_features} features; a fit computes n_components of them, None "
            f"for all, and with fewer training samples than features at most n_samples - 1 "
            f"directions have any variance)")
    return check_count(n_components, "n_components", 1, available)


# Values per block of the blockwise products: the centred copy of X is made one block
# of rows (covariance route) or columns (Gram route) at a time, so a fit holds X, its
# result and about 32 MB more, never several float64 copies of X (a 1 GB GoogLeNet
# layer peaked at 9.2 GB that way).  A block of the covariance or Gram may grow to the
# size of that product itself, which the fit holds anyway: narrower blocks would each
# add a whole product to the sum (60 blocks of 837 columns cost 25 % more than 10).
_BLOCK_VALUES = 2**22


_FLOAT32_SAFE = 2.0**64  # weights and their products stay far inside float32's range


def _block(length: int, other: int, at_least: int = 0) -> int:
    """Entries of a dimension of ``length`` per block, the other dimension being ``other``,
    a block holding ``_BLOCK_VALUES`` values or ``at_least``, whichever is more."""
    return max(1, min(length, max(_BLOCK_VALUES, at_least) // max(other, 1)))


def _product_dtype(X):
    """float32 for float32 features whose magnitudes keep the float32 products' squared
    sums far from overflow and underflow (below 2**32 and above 2**-32), else float64."""
    xp = array_namespace(X)
    if X.dtype != xp.float32:
        return xp.float64
    with np.errstate(invalid="ignore"):
        largest = max(abs(float(xp.max(X))), abs(float(xp.min(X))))
    return xp.float32 if _FLOAT32_RANGE[0] < largest < _FLOAT32_RANGE[1] else xp.float64


_FLOAT32_RANGE = (2.0**-32, 2.0**32)


def _centred_products(X, mean, work, *, rows: bool):
    """``Xc.T @ Xc`` (d x d, ``rows``) or ``Xc @ Xc.T`` (n x n) of the centred training
    set ``Xc = X - mean``, each block's product in ``work`` precision (``_product_dtype``),
    summed in float64."""
    xp = array_namespace(X)
    n, d = X.shape
    size = d if rows else n
    total = xp.zeros((size, size), dtype=xp.float64)
    step = _block(n, d, at_least=size * size) if rows else _block(d, n, at_least=size * size)
    mean = mean.astype(work)
    with np.errstate(over="ignore", invalid="ignore"):  # checked once, below
        for start in range(0, n if rows else d, step):
            if rows:
                block = X[start:start + step].astype(work) - mean
                total += block.T @ block
            else:
                block = X[:, start:start + step].astype(work) - mean[start:start + step]
                total += block @ block.T  # numpy hands A @ A.T to BLAS syrk: half the work
    if count_nonfinite(total):
        raise ValueError("the training features are too large for PCA: their squared sums "
                         "overflow float64 (values near 1e154 or beyond); scale them first")
    return total


def _gram_components(X, mean, work, vectors, variances):
    """Principal directions ``Xc.T @ u / sqrt(lambda)`` from the Gram eigenpairs, as a
    (k, d) float64 array filled one column block at a time.

    The products run in ``work`` precision, as the Gram's did.
    """
    xp = array_namespace(X)
    weights = (vectors / xp.sqrt(variances)).T
    # float64 where the weights of the weakest directions (1 / sqrt(variance)) leave
    # float32's range, as on features of subnormal magnitude.
    if float(xp.max(xp.abs(weights))) >= _FLOAT32_SAFE:
        work = xp.float64
    weights = weights.astype(work)
    n, d = X.shape
    components = xp.empty((weights.shape[0], d), dtype=xp.float64)
    step = _block(d, n)
    for start in range(0, d, step):
        block = X[:, start:start + step].astype(work) - mean[start:start + step].astype(work)
        components[:, start:start + step] = weights @ block
    return components


def _fix_signs(components) -> None:
    """Make each direction's largest-magnitude entry positive, in place, a block of rows
    at a time (a whole ``abs(components)`` would be one more copy of the result)."""
    step = _block(*components.shape)
    for start in range(0, components.shape[0], step):
        rows = components[start:start + step]
        rows *= _largest_entry_signs(rows)[:, None]


def _largest_entry_signs(rows):
    xp = array_namespace(rows)
    largest = xp.argmax(xp.abs(rows), axis=1)
    signs = xp.sign(xp.take_along_axis(rows, largest[:, None], axis=1)[:, 0])
    return xp.where(signs == 0, 1.0, signs)
