"""Storage accounting and the paper's sweep schedules (reference README, "Storage cost"
and "DR-1 / DR-2").

The baseline of every compression rate is the unstressed vector stored as 32-bit floats.
The side information of a quantizer (its per-dimension minimum and step) is not counted,
as in the paper.
"""

from __future__ import annotations

import math
import operator

import numpy as np

FLOAT32_BITS = 32


def bits_for_levels(n_levels: int) -> int:
    """ceil(log2 h), the bits one value quantized to ``h`` levels needs (h = 1 needs 0)."""
    n_levels = operator.index(n_levels)
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    return (n_levels - 1).bit_length()


def compression_rate(n_input_dims: int, bits_per_vector: int) -> float:
    """``1 - bits_per_vector / (32 * n_input_dims)``.

    Examples
    --------
    The paper's headline, FC with 409 of 4096 dimensions at h = 27 (5 bits each):

    >>> round(compression_rate(4096, 409 * bits_for_levels(27)), 4)
    0.9844
    """
    if n_input_dims < 1:
        raise ValueError(f"n_input_dims must be >= 1, got {n_input_dims}")
    if bits_per_vector < 0:
        raise ValueError(f"bits_per_vector must be >= 0, got {bits_per_vector}")
    return 1.0 - bits_per_vector / (FLOAT32_BITS * n_input_dims)


def bits_per_vector(kept_dims: int, n_levels: int | None = None,
                    erased_bits: int | None = None) -> int:
    """Storage of one stressed vector of ``kept_dims`` values, from a results row's
    parameters: float32 values (DR, baseline), ``ceil(log2 h)`` bits per value (Q-1,
    Q-2, FC), or the float32 bits that survive erasing ``erased_bits`` of a float64
    copy (Q-B, :func:`bits_kept`).  A fitted stressor's own ``bits_per_vector`` gives the
    same numbers.

    >>> bits_per_vector(409, n_levels=27), bits_per_vector(4096, erased_bits=50)
    (2045, 45056)
    """
    if erased_bits is not None:
        return kept_dims * bits_kept(erased_bits, np.float64)
    if n_levels is not None:
        return kept_dims * bits_for_levels(n_levels)
    return kept_dims * FLOAT32_BITS


# (exponent bits, mantissa bits) of the IEEE formats; float32 is the accounting's unit.
_FIELDS = {np.dtype(np.float64): (11, 52), np.dtype(np.float32): (8, 23)}


def bits_kept(n_bits: int, dtype) -> int:
    """Bits of a float32 value that survive erasing the low ``n_bits`` of its ``dtype`` copy.

    Sign, exponent and mantissa are erased from the bottom up in ``dtype``'s layout.
    float32's 23 mantissa bits are the top ones of a wider mantissa, so erasing starts
    costing them only past the extra low bits.  A float32's exponent e32 becomes
    e64 = e32 + 896 in float64: its low 8 bits are a bijection of e32, and the top 3
    bits (011 or 100) only repeat whether e32 >= 128.  So each of the first 7 erased
    exponent bits costs one bit, and once the low 8 are gone the top ones still say
    whether |x| >= 2 (one bit) until the last of them is erased.  The count runs from
    32 (nothing lost) down to 0.

    Examples
    --------
    >>> [bits_kept(k, np.float64) for k in (0, 29, 30, 52, 53, 60, 62, 63, 64)]
    [32, 32, 31, 9, 8, 2, 2, 1, 0]
    >>> bits_kept(10, np.float32)
    22
    """
    exponent, mantissa = _FIELDS[np.dtype(dtype)]
    exponent32, mantissa32 = _FIELDS[np.dtype(np.float32)]
    mantissa_left = min(mantissa32, max(0, mantissa - n_bits))
    exponent_erased = min(exponent, max(0, n_bits - mantissa))
    if exponent == exponent32 or exponent_erased < exponent32:
        exponent_left = exponent32 - exponent_erased
    else:  # only the wider exponent's top bits are left: |x| >= 2 or not, until erased
        exponent_left = int(exponent_erased < exponent)
    sign_left = int(n_bits < 1 + exponent + mantissa)
    return sign_left + exponent_left + mantissa_left


def dr_schedule(n_features: int, n_steps: int = 20) -> list[int]:
    """Kept-dimension counts of the DR experiments, as the authors' tables have them.

    Step i keeps ``floor(n * s_i)`` where ``s_i`` is 1/n_steps added i times in float64:
    the authors' loop accumulated the fraction, which makes 4096 -> 2047 at i = 10 (not
    2048).  Counts below 1 are raised to 1 so that every step keeps something.

    >>> dr_schedule(4096)[:3], dr_schedule(4096)[9], dr_schedule(4096)[-1]
    ([204, 409, 614], 2047, 4096)
    """
    _check_positive(n_features)
    counts, fraction = [], 0.0
    for _ in range(n_steps):
        fraction += 1.0 / n_steps
        counts.append(max(1, min(n_features, math.floor(n_features * fraction))))
    return counts


def fc_schedule(n_features: int) -> list[int]:
    """Kept-dimension counts of the FC grid: ``floor(n * j / 10)`` for j = 1..9.

    >>> fc_schedule(4096)[:3]
    [409, 819, 1228]
    """
    _check_positive(n_features)
    return [max(1, n_features * j // 10) for j in range(1, 10)]


def _check_positive(n_features):
    if operator.index(n_features) < 1:
        raise ValueError(f"n_features must be >= 1, got {n_features}")
