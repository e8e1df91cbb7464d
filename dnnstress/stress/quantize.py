"""Q-1 and Q-2: uniform scalar quantization (paper Sec. 2.2).

``UniformQuantizer(h)`` is Q-1 (one range for all values), ``UniformQuantizer(h,
per_dimension=True)`` is Q-2 (a range per dimension).  Both learn the range on the
training set, split it into ``h`` equal bins and replace every value by the nearest bin
centre; test values outside the range clamp to the first or last centre.  The range is
the training min and max (``range="minmax"``, the paper) or a calibrated one that clips
outliers (``"quantile"``, ``"std"``; see :mod:`dnnstress.stress._ranges`).

The compressed form is real: ``encode`` gives the integer codes and ``pack`` a dense
bit stream of ``ceil(log2 h)`` bits per value, each row padded to whole bytes, so
``pack(X).nbytes == n_rows * ceil(bits_per_vector / 8)``.
"""

from __future__ import annotations

import numpy as np

from dnnstress._array import array_namespace, check_count, is_cupy_array
from dnnstress.stress import _ranges, _uniform
from dnnstress.stress.accounting import bits_for_levels
from dnnstress.stress.base import Stressor, like


def _kernels_for(X):
    """The fused kernels of ``X``'s backend: numba on the CPU, CUDA on the GPU."""
    if not (isinstance(X, np.ndarray) or is_cupy_array(X)):
        raise TypeError(f"expected a numpy or CuPy array, got {type(X).__name__}")
    if is_cupy_array(X):
        from dnnstress import _cuda
        return _cuda
    from dnnstress.stress import _cpu_kernels
    return _cpu_kernels


class UniformQuantizer(Stressor):
    """Replace every value by the nearest of ``n_levels`` evenly spaced bin centres.

    Parameters
    ----------
    n_levels : int
        Number of values ``h`` each dimension may take, 1 to 65536 (not a bool).
    per_dimension : bool, default False
        False is the paper's Q-1 (one range for all values); True is Q-2 (each
        dimension's own range).
    range : {"minmax", "quantile", "std"}, default "minmax"
        "minmax" is the paper's training min and max.  "quantile" clips at the
        ``quantile`` and ``1 - quantile`` training quantiles, "std" at the mean -+
        ``n_std`` standard deviations; both stay inside the training min and max.
    quantile : float in [0, 0.5), default None (0.001 with range="quantile")
        Fraction of the training values clipped at each end; only with "quantile".
    n_std : float > 0, default None (3.0 with range="std")
        Half-width of the range in standard deviations; only with "std".

    Attributes
    ----------
    data_min_, data_max_ : array of shape (n_features,), float64
        Ends of the range every dimension is quantized over (Q-1 repeats one range):
        the training min and max for "minmax", the calibrated ends otherwise.
    step_ : array of shape (n_features,), float64
        Bin width ``(data_max_ - data_min_) / h``; 0 for a range of width 0, whose
        dimension then maps every value to that one value.
    n_levels_ : int
        The ``h`` the ranges were split into (``set_params`` after ``fit`` changes
        nothing until the next ``fit``).
    bits_per_value_ : int
        ``ceil(log2 h)``.
    dtype_ : dtype
        Floating type of the training features (float32 for float16 ones), the default
        of ``decode``/``unpack``.

    Notes
    -----
    A range of width 0 (a dimension constant on the training set, every dimension of a
    single training row under Q-2, or a quantile range inside a run of equal values)
    reproduces its value exactly, for every range: all ``h`` levels are that value, its
    code is 0, and test values decode to it, never to 0 or NaN.  (sentence-transformers'
    int8, calibrated on one embedding, divides by the zero step and returns zeros.)
    Values outside the range, below or above, take the first or last level.

    The range is fitted in float64 (exactly: min and max need no rounding) and the
    arithmetic runs in the input's type.  ``fit`` refuses a training range wider than
    that type can hold (``max - min`` above about 3.4e38 for float32, or infinite):
    steps and centres would overflow to inf or NaN.  A step too small for the type
    (below half its smallest subnormal, a range under about ``h * 1.4e-45`` in float32)
    rounds to 0 there, and the dimension is quantized as a constant one (every value
    to the training minimum) instead of dividing by zero.  float16 features are
    quantized in float32 and give float32 (float16 would round the centres to 11 bits
    and no kernel computes in it).  ``transform`` and ``encode`` count NaN and infinite
    values inside their kernels (one pass over X) and raise a ValueError for them.

    Examples
    --------
    >>> import numpy as np
    >>> q = UniformQuantizer(2).fit(np.array([[0.0], [1.0]]))
    >>> q.transform(np.array([[0.1], [0.9], [5.0]])).ravel().tolist()
    [0.25, 0.75, 0.75]
    """

    def __init__(self, n_levels, per_dimension=False, range="minmax", quantile=None,
                 n_std=None):
        self.n_levels = n_levels
        self.per_dimension = per_dimension
        self.range = range
        self.quantile = quantile
        self.n_std = n_std

    def fit(self, X, y=None):
        self._validate_fit_input(X)
        h = check_count(self.n_levels, "n_levels", 1, _uniform.MAX_LEVELS)
        arg = _ranges.calibration(self.range, self.quantile, self.n_std)
        low, high = _ranges.fitted_range(X, self.per_dimension, self.range, arg)
        _check_range_fits(low, high, _computed_in(X.dtype))
        self.n_levels_ = h
        self.data_min_, self.data_max_ = low, high
        self.step_ = (high - low) / h
        self.bits_per_value_ = bits_for_levels(h)
        self.dtype_ = _computed_in(X.dtype)
        self.n_features_out_ = X.shape[1]
        self.n_features_in_ = X.shape[1]
        return self

    @property
    def bits_per_vector(self) -> int:
        return self.bits_per_value_ * self.n_features_out_

    def transform(self, X, out=None):
        """The reconstruction: every value replaced by its bin centre (X's dtype, float32
        for float16).

        ``out``, a C-contiguous array shaped and typed like ``X`` on the same backend and
        not overlapping it, receives the result instead of a new array (streaming callers
        reuse one buffer); if ``X`` holds NaN or inf, the ValueError leaves ``out`` with
        garbage.
        """
        X = _in_computed_dtype(self._validate_transform_input(X, check_finite=False))
        lo, step = self._params_like(X)
        return _kernels_for(X).reconstruct(_contiguous(X), lo, step, self.n_levels_, out=out)

    def encode(self, X, out=None):
        """Integer bin indices, uint8 for h <= 256, uint16 above (into ``out`` if given)."""
        X = _in_computed_dtype(self._validate_transform_input(X, check_finite=False))
        lo, step = self._params_like(X)
        return _kernels_for(X).encode(_contiguous(X), lo, step, self.n_levels_, out=out)

    def decode(self, codes, dtype=None, out=None):
        """Bin centres for integer ``codes``, as ``dtype`` (default: the training dtype).

        ``out``, a C-contiguous array of the codes' shape and of ``dtype`` on their
        backend, receives the centres instead of a new array, as for ``transform``.
        Large outputs are written past the caches (x86 CPUs): into an array in memory, a
        16384 x 4096 float32 decode takes a third of the time it does into a new one,
        whose pages the system must first map and zero.  A new output of 160 MiB or more
        starts on a huge-page boundary, as a view of a slightly longer buffer.
        """
        dtype = np.dtype(self.dtype_ if dtype is None else dtype)
        compiled = _decodes_compiled(codes, dtype)
        # The compiled pass checks the range itself.
        self._check_codes(codes, None if compiled else self.n_levels_)
        lo, step = self._params_like(codes)
        if compiled:
            from dnnstress.stress import _cpu_kernels
            return _cpu_kernels.decode(codes, lo, step, self.n_levels_, dtype, out=out)
        return _uniform.decode(codes, lo, step, dtype, out=out)

    def pack(self, X):
        """Codes of ``X`` as a dense bit stream: uint8 array (n_rows, ceil(bits_per_vector/8))."""
        if is_cupy_array(X) or not isinstance(X, np.ndarray):
            codes = self.encode(X)  # in range by construction: no need to check them again
            return _kernels_for(codes).pack(codes, self.bits_per_value_, check_range=False)
        X = _in_computed_dtype(self._validate_transform_input(X, check_finite=False))
        lo, step = self._params_like(X)
        from dnnstress.stress import _cpu_kernels  # one pass: no matrix of codes in between
        return _cpu_kernels.encode_pack(_contiguous(X), lo, step, self.n_levels_,
                                        self.bits_per_value_)

    def unpack(self, packed, n_rows=None, dtype=None, out=None):
        """Reconstruction from ``pack``'s bytes (2-D, or flat with ``n_rows`` given),
        into ``out`` if given (as for ``decode``)."""
        self._check_packed_input(packed)
        if n_rows is not None:
            packed = packed.reshape(n_rows, -1)
        dtype = np.dtype(self.dtype_ if dtype is None else dtype)
        if _decodes_compiled(packed, dtype):  # one pass, no matrix of codes in between
            from dnnstress.stress import _cpu_kernels
            lo, step = self._params_like(packed)
            return _cpu_kernels.unpack_decode(packed, self.bits_per_value_,
                                              self.n_features_out_, lo, step,
                                              self.n_levels_, dtype, out=out)
        codes = _kernels_for(packed).unpack(packed, self.bits_per_value_, self.n_features_out_)
        return self.decode(codes, dtype, out=out)

    def _params_like(self, X):
        """``data_min_`` and ``step_`` on X's backend, fit for arithmetic in X's dtype.

        A step that rounds to 0 in that dtype becomes 0 (a constant dimension), decided
        in float64 so that no device cast can flush it; a fitted range X's dtype cannot
        hold (fitted on float64, applied to float32) is refused.
        """
        lo, step = like(self.data_min_, X), like(self.step_, X)
        # Codes (decode) are decoded in the training dtype unless told otherwise.
        dtype = np.dtype(X.dtype if np.issubdtype(X.dtype, np.floating) else self.dtype_)
        if dtype.itemsize < np.dtype(self.dtype_).itemsize:
            _check_range_fits(lo, like(self.data_max_, X), dtype)
        if dtype != np.float64:
            xp = array_namespace(step)
            smallest = float(np.finfo(dtype).smallest_subnormal)
            step = xp.where(step > smallest / 2, step, 0.0)
        return lo, step

    def _check_packed_input(self, packed):
        """Unfitted: NotFittedError; not an array (``bytes``, a list): a TypeError."""
        self._check_fitted()
        _kernels_for(packed)


def _computed_in(dtype):
    """The floating type the quantizer computes in for ``dtype`` input: float32 at least."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def _in_computed_dtype(X):
    return X if _computed_in(X.dtype) == X.dtype else X.astype(_computed_in(X.dtype))


def _check_range_fits(low, high, dtype) -> None:
    """Refuse a range whose width (or ends) overflows ``dtype``: steps and centres
    computed in it would be inf or NaN, and the input would be blamed for them."""
    xp = array_namespace(low)
    limit = float(np.finfo(dtype).max)
    with np.errstate(over="ignore"):  # an infinite span is what this check reports
        span = high - low
    fits = (span <= limit) & (xp.abs(low) <= limit) & (xp.abs(high) <= limit)
    if not bool(xp.all(fits)):
        j = int(xp.argmin(fits))
        raise ValueError(
            f"the training range of dimension {j}, [{float(low[j]):.6g}, "
            f"{float(high[j]):.6g}], is wider than {np.dtype(dtype).name} can hold "
            f"(max - min = {float(span[j]):.6g} > {limit:.6g}): its quantization steps "
            f"would overflow; rescale the features")


def _contiguous(X):
    return array_namespace(X).ascontiguousarray(X)


def _decodes_compiled(codes, dtype) -> bool:
    """Whether ``decode``/``unpack`` run the compiled CPU kernels (numpy codes, float32 or
    float64 centres; they equal ``_uniform.decode`` bit for bit) rather than the formula."""
    return not is_cupy_array(codes) and isinstance(codes, np.ndarray) and dtype in (
        np.float32, np.float64)
