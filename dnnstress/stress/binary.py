"""Binary (sign) quantization: one bit per dimension (issue 9, part 2).

Each value becomes 1 if it lies above its dimension's threshold, 0 otherwise; the
threshold is 0, or the training mean or median of the dimension.  The reconstruction
maps each side to the training mean of that side (per dimension): for ReLU features
and a zero threshold, 0 stays 0 and a positive value becomes the mean positive
activation.  A plain +-1 would weigh every dimension alike after L2 normalisation,
whatever its scale; the side means keep the scale of each dimension and make the
reconstruction the least-squares one for the training set given the codes.
"""

from __future__ import annotations

import numpy as np

from dnnstress._array import array_namespace, is_cupy_array
from dnnstress.stress import _cpu_elementwise
from dnnstress.stress._packing import pack_codes, unpack_codes
from dnnstress.stress.base import Stressor, like

_THRESHOLDS = ("zero", "mean", "median")


class BinaryQuantizer(Stressor):
    """One bit per value: above the dimension's threshold or not.

    Parameters
    ----------
    threshold : {"zero", "mean", "median"}, default "zero"
        Per-dimension threshold fitted on the training set.

    Attributes
    ----------
    threshold_ : array of shape (n_features,), float64
        A value is coded 1 when it is strictly greater than this.
    low_, high_ : arrays of shape (n_features,), float64
        Reconstruction of codes 0 and 1: the training mean of the values at or below the
        threshold, and of those above it.  A side no training value falls on takes the
        other side's level (the dimension carried no information on the training set).

    Notes
    -----
    ``low_ <= threshold_ < high_`` wherever both sides were seen, so quantizing the
    reconstruction gives it back (idempotence).  ``bits_per_vector`` is ``n_features``;
    the two levels per dimension are side information, not counted, as the paper does
    for Q-2's ranges.  float16 input gives float32.

    Examples
    --------
    >>> import numpy as np
    >>> q = BinaryQuantizer().fit(np.array([[0.0, -1.0], [2.0, 1.0], [4.0, 3.0]]))
    >>> q.transform(np.array([[0.5, -5.0]])).tolist(), q.bits_per_vector
    ([[3.0, -1.0]], 2)
    """

    def __init__(self, threshold="zero"):
        self.threshold = threshold

    def fit(self, X, y=None):
        self._validate_fit_input(X)
        if self.threshold not in _THRESHOLDS:
            raise ValueError(f"threshold must be one of {', '.join(map(repr, _THRESHOLDS))}, "
                             f"got {self.threshold!r}")
        xp = array_namespace(X)
        X64 = X.astype(xp.float64)
        if self.threshold == "zero":
            threshold = xp.zeros(X.shape[1])
        elif self.threshold == "mean":
            threshold = xp.mean(X64, axis=0)
        else:
            threshold = xp.median(X64, axis=0)
        above = X64 > threshold
        low, high = _side_mean(X64, ~above), _side_mean(X64, above)
        self.low_ = xp.where(xp.isnan(low), high, low)
        self.high_ = xp.where(xp.isnan(high), low, high)
        self.threshold_ = threshold
        self.dtype_ = np.dtype(np.float32) if X.dtype.itemsize < 4 else X.dtype
        self.n_features_out_ = X.shape[1]
        self.n_features_in_ = X.shape[1]
        return self

    @property
    def bits_per_vector(self) -> int:
        return self.n_features_out_

    def transform(self, X):
        """The reconstruction: each value replaced by its side's level."""
        X = self._validate_transform_input(X, check_finite=not _compiled(X))
        dtype = self._output_dtype(X)
        if _compiled(X):  # one pass, the NaN/inf count included
            return _cpu_elementwise.binary(X, like(self.threshold_, X), like(self.low_, X),
                                           like(self.high_, X), dtype)
        low, high = like(self.low_, X).astype(dtype), like(self.high_, X).astype(dtype)
        return array_namespace(X).where(X > like(self.threshold_, X), high, low)

    def encode(self, X):
        """Codes, uint8 0 or 1, shape (n, n_features)."""
        X = self._validate_transform_input(X, check_finite=not _compiled(X))
        if _compiled(X):
            d = self.n_features_out_
            return _cpu_elementwise.binary(X, like(self.threshold_, X), np.zeros(d), np.ones(d),
                                           np.uint8)
        return (X > like(self.threshold_, X)).astype(array_namespace(X).uint8)

    def decode(self, codes, dtype=None):
        """Levels of 0/1 ``codes`` as ``dtype`` (default: the training dtype)."""
        self._check_codes(codes, 2)
        xp = array_namespace(codes)
        dtype = self.dtype_ if dtype is None else dtype
        low, high = like(self.low_, codes).astype(dtype), like(self.high_, codes).astype(dtype)
        return xp.where(codes.astype(bool), high, low)

    def pack(self, X):
        """Codes as a bit stream, uint8 (n, ceil(n_features / 8)): bit j of a row is
        bit j % 8 of byte j // 8 (``dnnstress.stress._packing``'s layout)."""
        return pack_codes(self.encode(X), 1)

    def unpack(self, packed, dtype=None):
        """Reconstruction from ``pack``'s bytes."""
        self._check_fitted()
        return self.decode(unpack_codes(packed, 1, self.n_features_out_), dtype)

    def _output_dtype(self, X):
        return np.dtype(np.float32) if X.dtype.itemsize < 4 else X.dtype


def _compiled(X) -> bool:
    """Whether ``X`` runs the compiled CPU kernel (numpy; equal to the formula bit for bit)."""
    return isinstance(X, np.ndarray) and not is_cupy_array(X)


def _side_mean(X, mask):
    """Per-column mean of the values of ``X`` where ``mask``; NaN for an empty side."""
    xp = array_namespace(X)
    counts = xp.sum(mask, axis=0)
    sums = xp.sum(xp.where(mask, X, 0.0), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
    # Rounding cannot push a side's mean outside that side's own range.
    lowest = xp.min(xp.where(mask, X, xp.inf), axis=0)
    highest = xp.max(xp.where(mask, X, -xp.inf), axis=0)
    return xp.where(counts > 0, xp.clip(mean, lowest, highest), xp.nan)
