"""Float format stress: store every value in a narrow float format (issue 9, part 2).

``FloatCast("float16" | "bfloat16" | "float8_e4m3" | "float8_e5m2")`` casts the features
to the format and back, emulated exactly in numpy (or CuPy) arithmetic, with the
results of ml_dtypes' casts bit for bit:

- rounding to nearest, ties to even, directly from the input's precision (a float64
  value is not rounded to float32 first); subnormals of the format are kept;
- overflow, as the format defines it: float16, bfloat16 and e5m2 round to infinity
  from ``max + ulp / 2`` on (the tie going to the even neighbour beyond ``max``);
  ``float8_e4m3`` is OCP's e4m3fn (ml_dtypes' ``float8_e4m3fn``), which has no
  infinity: values that round beyond 448 become NaN, as ml_dtypes casts them.
  ``saturate=True`` clips to the largest finite value instead (OCP's "satfinite"),
  which keeps every output finite for a downstream classifier.

Codes are the format's bit patterns (``encode``/``decode``); ``pack`` stores them as
the format's bytes, so ``bits_per_vector`` is the format width times ``n_features``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dnnstress._array import array_namespace, is_cupy_array
from dnnstress.stress import _cpu_elementwise
from dnnstress.stress._packing import pack_codes, unpack_codes
from dnnstress.stress.base import Stressor


class FloatFormat(NamedTuple):
    """A binary floating-point format: field widths, bias and what its top exponent means."""

    exponent_bits: int
    mantissa_bits: int
    has_infinity: bool  # IEEE-like; False: e4m3fn, whose only NaN is S.1111.111

    @property
    def width(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def bias(self) -> int:
        return (1 << (self.exponent_bits - 1)) - 1

    @property
    def min_exponent(self) -> int:
        return 1 - self.bias

    @property
    def max_finite(self) -> float:
        top = (1 << self.exponent_bits) - 1
        if self.has_infinity:  # the top exponent is inf and NaN
            return float(np.ldexp(2.0 - 2.0 ** -self.mantissa_bits, top - 1 - self.bias))
        # e4m3fn: the top exponent holds normals, but its all-ones mantissa is NaN.
        return float(np.ldexp(2.0 - 2.0 ** (1 - self.mantissa_bits), top - self.bias))


FORMATS = {
    "float16": FloatFormat(5, 10, True),
    "bfloat16": FloatFormat(8, 7, True),
    "float8_e4m3": FloatFormat(4, 3, False),
    "float8_e5m2": FloatFormat(5, 2, True),
}


class FloatCast(Stressor):
    """Round every value to a narrow float format, then widen it back.

    Parameters
    ----------
    format : {"float16", "bfloat16", "float8_e4m3", "float8_e5m2"}, default "float16"
    saturate : bool, default False
        False: overflow as the format's cast defines it (inf, or NaN for e4m3).  True:
        values beyond the largest finite one become it (with their sign).

    Attributes
    ----------
    format_ : FloatFormat
    dtype_ : dtype
        Training dtype (float32 for float16 input), the default of ``decode``.

    Examples
    --------
    >>> import numpy as np
    >>> c = FloatCast("float8_e4m3").fit(np.zeros((1, 3), np.float32))
    >>> c.transform(np.array([[0.3, 464.0, 500.0]], np.float32)).tolist()
    [[0.3125, 448.0, nan]]
    >>> c.bits_per_vector
    24
    """

    def __init__(self, format="float16", saturate=False):
        self.format = format
        self.saturate = saturate

    def fit(self, X, y=None):
        self._validate_fit_input(X)
        fmt = _check_format(self.format)
        self.format_ = fmt
        self.dtype_ = _output_dtype(X.dtype)
        self.n_features_out_ = X.shape[1]
        self.n_features_in_ = X.shape[1]
        return self

    @property
    def bits_per_vector(self) -> int:
        return self.format_.width * self.n_features_out_

    def transform(self, X):
        """Values rounded to the format, in X's dtype (float32 for float16)."""
        compiled = (isinstance(X, np.ndarray) and not is_cupy_array(X)
                    and X.dtype.itemsize <= 4)
        X = self._validate_transform_input(X, check_finite=not compiled)  # kernel counts
        if compiled:  # float32 (float16 widened exactly): one pass, same bits
            fmt = self.format_
            return _cpu_elementwise.round_float32(
                X.astype(np.float32, copy=False), fmt.mantissa_bits, fmt.min_exponent,
                fmt.max_finite, fmt.has_infinity, bool(self.saturate))
        rounded = round_to_format(self._clipped(X), self.format_)
        return rounded.astype(_output_dtype(X.dtype))

    def encode(self, X):
        """The format's bit patterns: uint16 for 16-bit formats, uint8 for float8."""
        X = self._validate_transform_input(X)
        return encode_bits(round_to_format(self._clipped(X), self.format_), self.format_)

    def decode(self, codes, dtype=None):
        """Values of bit patterns ``codes`` as ``dtype`` (default: the training dtype)."""
        self._check_codes(codes)
        if codes.dtype != _code_dtype(self.format_):
            raise TypeError(f"codes of {self.format} must be "
                            f"{np.dtype(_code_dtype(self.format_)).name}, got {codes.dtype}")
        values = decode_bits(codes, self.format_)
        return values.astype(self.dtype_ if dtype is None else dtype)

    def pack(self, X):
        """The codes' bytes, little-endian: uint8 (n, width * n_features / 8)."""
        return pack_codes(self.encode(X), self.format_.width)

    def unpack(self, packed, dtype=None):
        self._check_fitted()
        codes = unpack_codes(packed, self.format_.width, self.n_features_out_)
        return self.decode(codes, dtype)

    def _clipped(self, X):
        """X in float64 (exact), clipped to the largest finite value when saturating."""
        xp = array_namespace(X)
        X = X.astype(xp.float64)
        if self.saturate:
            limit = self.format_.max_finite
            X = xp.clip(X, -limit, limit)
        return X


def round_to_format(X, fmt: FloatFormat):
    """float64 ``X`` rounded to nearest-even in ``fmt``; overflow to inf or NaN.

    Every step is exact in float64: scaling by powers of two, and ``rint`` of a value
    with at most ``mantissa_bits + 1`` integer bits.
    """
    xp = array_namespace(X)
    magnitude = xp.abs(X)
    _, exponent = xp.frexp(magnitude)
    # The unit in the last place: that of the value's binade, or of the subnormals.
    quantum = xp.maximum(exponent - 1, fmt.min_exponent) - fmt.mantissa_bits
    rounded = xp.ldexp(xp.rint(xp.ldexp(magnitude, -quantum)), quantum)
    overflow = xp.inf if fmt.has_infinity else xp.nan
    rounded = xp.where(rounded > fmt.max_finite, overflow, rounded)
    return xp.copysign(rounded, X)


def encode_bits(rounded, fmt: FloatFormat):
    """Bit patterns of float64 values already representable in ``fmt`` (or inf/NaN)."""
    xp = array_namespace(rounded)
    magnitude = xp.abs(rounded)
    finite = xp.isfinite(magnitude)
    safe = xp.where(finite, magnitude, 0.0)
    _, exponent = xp.frexp(safe)
    normal = safe >= 2.0 ** fmt.min_exponent
    biased = xp.where(normal, exponent - 1 + fmt.bias, 0)
    scale = xp.where(normal, fmt.mantissa_bits - (exponent - 1),
                     fmt.mantissa_bits - fmt.min_exponent)
    mantissa = xp.ldexp(safe, scale) - xp.where(normal, 2.0 ** fmt.mantissa_bits, 0.0)
    bits = (biased.astype(xp.int64) << fmt.mantissa_bits) | mantissa.astype(xp.int64)
    # Rounding overflows to inf where the format has one, to NaN (S.1111.111) in e4m3fn.
    top = (1 << fmt.exponent_bits) - 1
    special = top << fmt.mantissa_bits if fmt.has_infinity else (1 << (fmt.width - 1)) - 1
    bits = xp.where(finite, bits, special)
    bits |= xp.signbit(rounded).astype(xp.int64) << (fmt.width - 1)
    return bits.astype(_code_dtype(fmt))


def decode_bits(codes, fmt: FloatFormat):
    """float64 values of ``fmt`` bit patterns (every pattern, NaN and inf included)."""
    xp = array_namespace(codes)
    codes = codes.astype(xp.int64)
    biased = (codes >> fmt.mantissa_bits) & ((1 << fmt.exponent_bits) - 1)
    mantissa = codes & ((1 << fmt.mantissa_bits) - 1)
    normal = biased > 0
    significand = (mantissa + xp.where(normal, 1 << fmt.mantissa_bits, 0)).astype(xp.float64)
    exponent = xp.maximum(biased, 1) - fmt.bias - fmt.mantissa_bits
    values = xp.ldexp(significand, exponent.astype(xp.int32))
    top = (1 << fmt.exponent_bits) - 1
    if fmt.has_infinity:
        values = xp.where(biased == top, xp.where(mantissa == 0, xp.inf, xp.nan), values)
    else:
        values = xp.where((biased == top) & (mantissa == (1 << fmt.mantissa_bits) - 1),
                          xp.nan, values)
    negative = (codes >> (fmt.width - 1)) & 1
    return xp.where(negative == 1, -values, values)


def _check_format(name) -> FloatFormat:
    if name not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, "
                         f"got {name!r}")
    return FORMATS[name]


def _code_dtype(fmt: FloatFormat):
    return np.uint8 if fmt.width == 8 else np.uint16


def _output_dtype(dtype):
    return np.dtype(np.float32) if np.dtype(dtype).itemsize < 4 else np.dtype(dtype)
