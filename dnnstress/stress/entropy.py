"""Entropy accounting of quantization codes (issue 9, part 4).

``ceil(log2 h)`` bits a value is what a fixed-width code costs; the codes of real
features are far from uniform (most ReLU activations fall in the first bin), and an
ideal lossless coder of each dimension would need only its empirical entropy.  Both
numbers, and the bytes :func:`~dnnstress.stress._packing.pack_codes` really writes,
make the storage accounting honest in both directions.

The entropy is first-order and per dimension: each dimension's codes are coded on their
own with the distribution of their values in the set measured.  A coder exploiting
dependencies between dimensions could go lower; the code book (the distribution itself)
is side information, not counted, like a quantizer's ranges.
"""

from __future__ import annotations

from typing import NamedTuple

from dnnstress._array import array_namespace
from dnnstress.stress._packing import check_codes, pack_codes


class CodeStorage(NamedTuple):
    """Three sizes of one vector of codes, in bits (packed: also in bytes)."""

    entropy_bits: float  # the ideal per-dimension lossless coder
    fixed_bits: int  # ``bits`` per value, d values
    packed_bytes: int  # what ``pack_codes`` writes for one row


def code_entropy(codes):
    """Empirical entropy, in bits, of every column of integer ``codes`` (n, d).

    ``H_j = -sum_v p_jv log2 p_jv`` over the values ``v`` column ``j`` takes, ``p_jv``
    their frequencies.  Sorting each column and measuring its runs of equal values
    counts them for any code width, on numpy or CuPy.

    Returns
    -------
    entropy : float64 array of shape (d,)

    Examples
    --------
    >>> import numpy as np
    >>> code_entropy(np.array([[0, 3], [1, 3], [2, 3], [3, 3]])).tolist()
    [2.0, 0.0]
    """
    xp = array_namespace(codes)
    if getattr(codes, "ndim", None) != 2:
        raise ValueError(f"codes must be a 2-D array (rows x values), got "
                         f"{getattr(codes, 'shape', type(codes).__name__)}")
    if not xp.issubdtype(codes.dtype, xp.integer):
        raise TypeError(f"codes must be integers, got dtype {codes.dtype}")
    n, d = codes.shape
    if n == 0:
        raise ValueError("codes has no rows: the entropy of nothing is undefined")
    columns = xp.sort(codes.T, axis=1)  # (d, n): a column's equal values side by side
    starts = xp.ones((d, n), dtype=bool)
    starts[:, 1:] = columns[:, 1:] != columns[:, :-1]
    first = xp.nonzero(starts.reshape(-1))[0]
    run_lengths = xp.diff(xp.concatenate([first, xp.asarray([d * n])]))
    p = run_lengths / n
    return xp.bincount(first // n, weights=-p * xp.log2(p), minlength=d)


def code_storage(codes, bits) -> CodeStorage:
    """Entropy, fixed-width and packed size of one vector of ``codes`` at ``bits`` each.

    Parameters
    ----------
    codes : integer array of shape (n, d), each below ``2**bits``
        A set of encoded vectors (``encode`` of a fitted quantizer).
    bits : int
        The fixed width a value is stored in (``ceil(log2 h)``).

    Examples
    --------
    Three levels (2 bits) on 5 values, the first always 0, the others uniform on 4 rows:

    >>> import numpy as np
    >>> codes = np.array([[0, 0, 1, 2, 2], [0, 1, 1, 2, 2], [0, 2, 0, 1, 2], [0, 0, 0, 1, 2]])
    >>> code_storage(codes, 2)
    CodeStorage(entropy_bits=3.5, fixed_bits=10, packed_bytes=2)
    """
    check_codes(codes, bits)
    packed = pack_codes(codes, bits)
    return CodeStorage(entropy_bits=float(code_entropy(codes).sum()),
                       fixed_bits=bits * codes.shape[1],
                       packed_bytes=packed.shape[1])
