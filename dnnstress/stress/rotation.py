"""Random orthogonal rotation before quantization (issue 9, part 2; RaBitQ, TurboQuant).

A uniform quantizer wastes levels on dimensions of small variance and clips the large
ones; a random rotation mixes all dimensions so that each carries about the same
variance, and then one range (Q-1) or per-dimension ranges (Q-2) fit all of them.  The
rotation is exactly orthogonal, so norms and inner products, and hence a linear SVM on
L2-normalised features, are unchanged by the rotation itself: only the quantization
after it stresses the features.

- ``method="hadamard"``: the randomized Hadamard transform ``H D x / sqrt(d)`` (random
  signs ``D``, then a fast Walsh-Hadamard transform, ``O(d log d)`` a vector).  ``d``
  not a power of two is padded with zeros to the next one: the output, and therefore
  what a quantizer after it stores, has that many coordinates (``n_features_out_``);
  the storage accounting counts them all.
- ``method="qr"``: a Haar-random orthogonal matrix (QR of a Gaussian matrix, signs
  fixed by ``R``'s diagonal), ``O(d^2)`` a vector, no padding.
- ``method="auto"``: Hadamard when ``d`` is a power of two, QR otherwise.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from dnnstress._array import array_namespace, check_features
from dnnstress.stress.base import Stressor, like
from dnnstress.stress.pipeline import StressPipeline

_METHODS = ("auto", "hadamard", "qr")


class RandomRotation(Stressor):
    """A seeded random orthogonal rotation of the feature space.

    Parameters
    ----------
    random_state : int, RandomState instance or None, default None
        Seed of the signs (Hadamard) or of the Gaussian matrix (QR).
    method : {"auto", "hadamard", "qr"}, default "auto"

    Attributes
    ----------
    method_ : {"hadamard", "qr"}
    signs_ : array of shape (n_features_out_,), float64
        The random signs ``D`` (Hadamard only).
    rotation_ : array of shape (n_features, n_features), float64
        The orthogonal matrix (QR only); ``transform`` is ``X @ rotation_.T``.

    Notes
    -----
    Computed in the input's dtype (float32 for float16): orthogonal to that precision.
    ``bits_per_vector`` is that of float32 storage of ``n_features_out_`` values; after
    a quantizer (:func:`make_rotated`) the quantizer's accounting applies.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[3.0, 4.0, 0.0, 0.0]])
    >>> r = RandomRotation(random_state=0).fit(X)
    >>> r.method_, float(np.linalg.norm(r.transform(X)))
    ('hadamard', 5.0)
    """

    def __init__(self, random_state=None, method="auto"):
        self.random_state = random_state
        self.method = method

    def fit(self, X, y=None):
        self._validate_fit_input(X)
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {', '.join(map(repr, _METHODS))}, "
                             f"got {self.method!r}")
        rng = check_random_state(self.random_state)
        d = X.shape[1]
        method = self.method
        if method == "auto":
            method = "hadamard" if d & (d - 1) == 0 else "qr"
        if method == "hadamard":
            padded = 1 << (d - 1).bit_length()
            self.signs_ = rng.choice([-1.0, 1.0], padded)
            self.n_features_out_ = padded
        else:
            q, r = np.linalg.qr(rng.standard_normal((d, d)))
            self.rotation_ = q * np.where(np.diag(r) < 0, -1.0, 1.0)
            self.n_features_out_ = d
        self.method_ = method
        self.n_features_in_ = d
        return self

    def transform(self, X):
        X = _at_least_float32(self._validate_transform_input(X))
        if self.method_ == "qr":
            return X @ like(self.rotation_, X).astype(X.dtype).T
        xp = array_namespace(X)
        padded = xp.zeros((X.shape[0], self.n_features_out_), dtype=X.dtype)
        padded[:, :X.shape[1]] = X * like(self.signs_, X).astype(X.dtype)[:X.shape[1]]
        return walsh_hadamard(padded) / X.dtype.type(np.sqrt(self.n_features_out_))

    def inverse_transform(self, Y):
        """The features a rotated ``Y`` (n, n_features_out_) came from."""
        self._check_fitted()
        Y = _at_least_float32(check_features(Y, name="Y", n_features=self.n_features_out_))
        if self.method_ == "qr":
            return Y @ like(self.rotation_, Y).astype(Y.dtype)
        X = walsh_hadamard(Y) / Y.dtype.type(np.sqrt(self.n_features_out_))
        X *= like(self.signs_, Y).astype(Y.dtype)
        return X[:, :self.n_features_in_]


def walsh_hadamard(X):
    """``X @ H`` for the Sylvester Hadamard matrix ``H`` of order ``d = X.shape[1]``
    (a power of two), unnormalised, in ``log2 d`` butterfly passes."""
    xp = array_namespace(X)
    n, d = X.shape
    half = 1
    while half < d:
        pairs = X.reshape(n, d // (2 * half), 2, half)
        first, second = pairs[:, :, 0, :], pairs[:, :, 1, :]
        X = xp.stack([first + second, first - second], axis=2).reshape(n, d)
        half *= 2
    return X


def make_rotated(quantizer, random_state=None, method="auto") -> StressPipeline:
    """A random rotation, then ``quantizer`` (Q-1/Q-2 or binary): its ``bits_per_vector``
    is the quantizer's.

    >>> from dnnstress.stress import UniformQuantizer
    >>> make_rotated(UniformQuantizer(16, per_dimension=True), random_state=0)
    StressPipeline(steps=[('rotation', RandomRotation(random_state=0)),
                          ('quantizer', UniformQuantizer(n_levels=16, per_dimension=True))])
    """
    return StressPipeline([("rotation", RandomRotation(random_state, method)),
                           ("quantizer", quantizer)])


def _at_least_float32(X):
    return X.astype(np.float32) if X.dtype.itemsize < 4 else X
