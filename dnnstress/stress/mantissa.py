"""Q-B: bit erasure, the authors' supplementary experiment (reference README, Q-B).

Features are converted to float64 (or float32) and the lowest ``n_bits`` of their IEEE
754 representation are set to zero: first the mantissa, then (past 52 bits for float64)
the exponent and finally the sign.  Clearing bits never produces an infinity or a NaN,
so every output is finite; erasing all bits gives zeros.

Storage is accounted against the float32 features the baseline stores (32 bits a
value), not against the float64 container: a float32 widened to float64 has 29 zero
mantissa bits at the bottom, so erasing up to 29 of them loses nothing and the vector
still needs its 32 bits; compression is never negative.
"""

from __future__ import annotations

import numpy as np

from dnnstress._array import astype_exact, check_count
from dnnstress.stress.accounting import bits_kept
from dnnstress.stress.base import Stressor

_UINT_OF = {np.dtype(np.float64): np.uint64, np.dtype(np.float32): np.uint32}


class MantissaErasure(Stressor):
    """Zero the ``n_bits`` least significant bits of every value.

    Parameters
    ----------
    n_bits : int
        Bits erased, 0 to the width of ``dtype`` (64 or 32).
    dtype : {"float64", "float32"}, default "float64"
        Representation whose bits are erased; the authors used float64, float32 erases
        the features' own bits.  The output has this dtype.

    Notes
    -----
    ``bits_per_vector`` counts the bits of information kept (:func:`bits_kept`), at
    most the 32 of a float32 value: with float64, erasing up to 29 bits costs nothing.
    """

    def __init__(self, n_bits, dtype="float64"):
        self.n_bits = n_bits
        self.dtype = dtype

    def fit(self, X, y=None):
        self._validate_fit_input(X)
        self._check_params()
        self.n_features_out_ = X.shape[1]
        self.n_features_in_ = X.shape[1]
        return self

    @property
    def bits_per_vector(self) -> int:
        """Bits that still carry information, :func:`bits_kept` per value."""
        self._check_fitted()
        dtype, n_bits = self._check_params()
        return bits_kept(n_bits, dtype) * self.n_features_out_

    def transform(self, X):
        X = self._validate_transform_input(X)
        dtype, n_bits = self._check_params()
        uint = _UINT_OF[dtype]
        width = 8 * dtype.itemsize
        keep_mask = uint(((1 << width) - 1) ^ ((1 << n_bits) - 1))
        bits = astype_exact(X, dtype).view(uint)  # a copy, so the view is ours to modify
        bits &= keep_mask
        return bits.view(dtype)

    def _check_params(self):
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in _UINT_OF:
            raise ValueError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")
        return dtype, check_count(self.n_bits, "n_bits", 0, 8 * dtype.itemsize)
