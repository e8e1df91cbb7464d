"""Q-B: bit erasure, the authors' supplementary experiment (reference README, Q-B).

Features are converted to float64 (or float32) and the lowest ``n_bits`` of their IEEE
754 representation are set to zero: first the mantissa, then (past 52 bits for float64)
the exponent and finally the sign.  Clearing bits never produces an infinity or a NaN,
so every output is finite; erasing all bits gives zeros.
"""

from __future__ import annotations

import numpy as np

from dnnstress._array import check_count
from dnnstress.stress.base import Stressor

_UINT_OF = {np.dtype(np.float64): np.uint64, np.dtype(np.float32): np.uint32}


class MantissaErasure(Stressor):
    """Zero the ``n_bits`` least significant bits of every value.

    Parameters
    ----------
    n_bits : int
        Bits erased, 0 to the width of ``dtype`` (64 or 32).
    dtype : {"float64", "float32"}, default "float64"
        Representation whose bits are erased; the authors used float64.  The output
        has this dtype.
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
        """Bits that still carry information: (width - n_bits) per value."""
        dtype, n_bits = self._check_params()
        return (8 * dtype.itemsize - n_bits) * self.n_features_out_

    def transform(self, X):
        X = self._validate_transform_input(X)
        dtype, n_bits = self._check_params()
        uint = _UINT_OF[dtype]
        width = 8 * dtype.itemsize
        keep_mask = uint(((1 << width) - 1) ^ ((1 << n_bits) - 1))
        bits = X.astype(dtype).view(uint)  # astype copies, so the view is ours to modify
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
