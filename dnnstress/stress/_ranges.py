"""The range Q-1/Q-2 split into levels: the training min and max, or a calibrated one.

``"minmax"`` is the paper's range (Sec. 2.2).  The calibrated ones are what faiss, cuVS,
Qdrant and sentence-transformers offer, so that a few outliers do not stretch the bins
of every other value:

    "quantile", q   the q and 1 - q training quantiles (numpy's default, linear
                    interpolation; q = 0.001 clips at the 0.1 and 99.9 % values)
    "std", k        mean -+ k standard deviations (population, ddof 0)

Both are clipped into the training [min, max], so a calibrated range never reaches past
the data (mean + 3 std can) and a dimension constant on the training set keeps a range
of width exactly 0 whatever the rounding of its mean, std or interpolated quantiles.
Q-1 takes each statistic over all training values, Q-2 per dimension.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from dnnstress._array import array_namespace, astype_exact, is_cupy_array

RANGES = ("minmax", "quantile", "std")
DEFAULT_QUANTILE = 0.001
DEFAULT_N_STD = 3.0


def calibration(range_, quantile, n_std) -> float | None:
    """The argument of ``range_`` (q, k, or None for minmax), checked, defaults filled in.

    A ``quantile`` or ``n_std`` given for a range that does not use it is refused: it
    would be silently ignored, and the caller most likely meant the other range.
    """
    if not isinstance(range_, str) or range_ not in RANGES:
        raise ValueError(f"range must be one of {', '.join(map(repr, RANGES))}, "
                         f"got {range_!r}")
    for name, value, used_by in (("quantile", quantile, "quantile"), ("n_std", n_std, "std")):
        if value is not None and range_ != used_by:
            raise ValueError(f"{name}={value!r} is used only with range={used_by!r}, "
                             f"not with range={range_!r}")
    if range_ == "quantile":
        q = _real(DEFAULT_QUANTILE if quantile is None else quantile, "quantile")
        if not 0 <= q < 0.5:
            raise ValueError(f"quantile must be in [0, 0.5) (the fraction of training "
                             f"values clipped at each end, e.g. 0.001), got {q!r}")
        return q
    if range_ == "std":
        k = _real(DEFAULT_N_STD if n_std is None else n_std, "n_std")
        if not 0 < k < math.inf:
            raise ValueError(f"n_std must be a positive finite number of standard "
                             f"deviations, got {k!r}")
        return k
    return None


def fitted_range(X, per_dimension: bool, range_: str, arg):
    """Low and high end of every dimension's range, float64 (d,) arrays on X's backend.

    The min and max are exact (they pick values; float32 -> float64 is exact, done on
    the GPU by our own kernel since CuPy's reductions and casts flush float32
    subnormals).  The calibrated statistics are computed in float64.
    """
    xp = array_namespace(X)
    if is_cupy_array(X) or range_ != "minmax":
        X = astype_exact(X, np.float64)  # a copy: quantile may reorder it in place
    axis = 0 if per_dimension else None
    low, high = xp.min(X, axis=axis), xp.max(X, axis=axis)
    if range_ == "quantile":
        below, above = xp.quantile(X, (arg, 1.0 - arg), axis=axis, overwrite_input=True)
    elif range_ == "std":
        mean, spread = xp.mean(X, axis=axis), arg * xp.std(X, axis=axis)
        below, above = mean - spread, mean + spread
    if range_ != "minmax":
        low, high = xp.clip(below, low, high), xp.clip(above, low, high)
    if per_dimension:
        return low.astype(np.float64), high.astype(np.float64)
    d = X.shape[1]
    return xp.full(d, float(low)), xp.full(d, float(high))


def _real(value, name: str) -> float:
    """``value`` as a float, refusing bools and non-numbers with a TypeError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)
