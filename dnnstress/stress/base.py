"""The stressor contract shared by every estimator in :mod:`dnnstress.stress`.

A stressor is a scikit-learn transformer: ``__init__`` stores its parameters unchanged,
``fit(X_train)`` learns from the TRAINING features only (reference README, "Fitting")
and returns ``self``, ``transform`` applies the frozen stress to any split.  Arrays keep
their backend: numpy in, numpy out; CuPy in, CuPy out.  Every fitted stressor reports the
storage its output needs, ``bits_per_vector``, for the compression accounting.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from dnnstress._array import array_namespace, check_features, is_cupy_array
from dnnstress.stress.accounting import FLOAT32_BITS


class Stressor(TransformerMixin, BaseEstimator):
    """Base class: input validation and the fitted-state checks.

    ``n_features_in_`` marks a fitted stressor, so every ``fit`` validates all its input
    and parameters first and sets it last: a ``fit`` that raised leaves the stressor as
    it was before (unfitted, or with its previous fit), never half-fitted.

    Anything that needs the fit, asked of an unfitted stressor, raises scikit-learn's
    :class:`~sklearn.exceptions.NotFittedError` (a ValueError and an AttributeError, so
    ``hasattr`` still answers False).
    """

    def _validate_fit_input(self, X):
        return check_features(X)

    def _validate_transform_input(self, X, check_finite=True):
        self._check_fitted()
        return check_features(X, n_features=self.n_features_in_, check_finite=check_finite)

    def _check_codes(self, codes, n_levels=None) -> None:
        """Refuse ``codes`` that are not this fitted stressor's: a 2-D integer array with
        one column per output feature and, given ``n_levels``, values in [0, n_levels)."""
        self._check_fitted()
        xp = array_namespace(codes)
        if codes.ndim != 2 or codes.shape[1] != self.n_features_out_:
            raise ValueError(f"codes must have shape (n, {self.n_features_out_}), "
                             f"got {codes.shape}")
        if not xp.issubdtype(codes.dtype, xp.integer):
            raise TypeError(f"codes must be integers, got {codes.dtype}")
        if n_levels is not None and codes.size and (int(codes.min()) < 0
                                                    or int(codes.max()) >= n_levels):
            raise ValueError(f"codes must lie in [0, {n_levels - 1}]")

    def _check_fitted(self) -> None:
        if "n_features_in_" not in vars(self):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit first")

    def __getattr__(self, name):
        # Python calls this only when normal lookup failed, including when a property
        # (bits_per_vector, n_features_out_) failed for want of a fitted attribute: on an
        # unfitted stressor, fitted attributes (trailing "_", sklearn's convention) and
        # the class's own properties are "not fitted", not "no such attribute".
        fitted_only = name.endswith("_") or hasattr(type(self), name)
        if fitted_only and not name.startswith("__"):
            self._check_fitted()
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def bits_per_vector(self) -> int:
        """Bits needed to store one stressed vector (float32 values unless quantized)."""
        return FLOAT32_BITS * self.n_features_out_


class Identity(Stressor):
    """The unstressed baseline, ``T(x) = x``."""

    def fit(self, X, y=None):
        self._validate_fit_input(X)
        self.n_features_out_ = X.shape[1]
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        return self._validate_transform_input(X)


def like(param, X):
    """A small fitted parameter array on the same backend as ``X``.

    Stressors fitted on one backend may transform arrays of the other; only the
    parameter (d values) moves, never the data.
    """
    xp = array_namespace(X)
    if is_cupy_array(param) == is_cupy_array(X):
        return param
    return xp.asarray(param.get() if is_cupy_array(param) else param)
