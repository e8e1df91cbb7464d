"""Entropy accounting of codes: hand-computed cases and a naive per-column transcription."""

import math
from collections import Counter

import numpy as np
import pytest

from dnnstress._array import to_numpy
from dnnstress.stress import UniformQuantizer
from dnnstress.stress.entropy import CodeStorage, code_entropy, code_storage


def naive_entropy(column):
    counts = Counter(column.tolist())
    n = len(column)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def test_hand_computed_cases():
    codes = np.array([[0, 5, 1], [1, 5, 1], [2, 5, 1], [3, 5, 0]], dtype=np.uint8)
    # uniform over 4 values: 2 bits; constant: 0; 3:1 split: 2 - 3/4 log2 3.
    np.testing.assert_allclose(code_entropy(codes), [2.0, 0.0, 2 - 0.75 * math.log2(3)])
    assert code_storage(codes, 3) == CodeStorage(
        entropy_bits=pytest.approx(4 - 0.75 * math.log2(3)), fixed_bits=9, packed_bytes=2)


@pytest.mark.parametrize("dtype, high", [(np.uint8, 3), (np.uint16, 65535), (np.int64, 1000)])
def test_matches_naive_entropy(dtype, high):
    rng = np.random.default_rng(0)
    codes = (rng.integers(0, high + 1, (57, 9)) * rng.random((57, 9)) ** 3).astype(dtype)
    expected = [naive_entropy(codes[:, j]) for j in range(9)]
    np.testing.assert_allclose(code_entropy(codes), expected, rtol=1e-12, atol=1e-12)


def test_entropy_of_quantized_relu_features_is_below_the_fixed_width():
    rng = np.random.default_rng(1)
    X = np.maximum(rng.standard_normal((500, 16)), 0).astype(np.float32)
    q = UniformQuantizer(16, per_dimension=True).fit(X)
    storage = code_storage(q.encode(X), q.bits_per_value_)
    assert storage.fixed_bits == q.bits_per_vector == 64
    assert storage.packed_bytes == q.pack(X).shape[1] == 8
    # Half the values are 0 (code 0): under 1 + 0.5 * 4 = 3 bits a value.
    assert 16 * 2 < storage.entropy_bits < 16 * 3


def test_single_row_and_errors():
    np.testing.assert_array_equal(code_entropy(np.array([[7, 1]])), [0.0, 0.0])
    with pytest.raises(TypeError, match="integers"):
        code_entropy(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no rows"):
        code_entropy(np.zeros((0, 2), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        code_entropy(np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="fit in 2 bits"):
        code_storage(np.array([[4]]), 2)


def test_same_results_on_the_array_backend(xp):
    codes = np.random.default_rng(3).integers(0, 5, (40, 6)).astype(np.uint8)
    got = code_entropy(xp.asarray(codes))
    np.testing.assert_allclose(to_numpy(got), code_entropy(codes), rtol=1e-12)
