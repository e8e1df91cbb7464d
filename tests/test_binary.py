"""BinaryQuantizer against a naive per-value transcription, and its properties."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from dnnstress._array import to_numpy
from dnnstress.stress._packing import pack_codes
from dnnstress.stress.binary import BinaryQuantizer


def naive_binary(X_train, X, threshold):
    """Value by value: threshold per column, then the mean of the training side."""
    out = np.empty_like(X, dtype=np.float64)
    for j in range(X.shape[1]):
        column = list(X_train[:, j].astype(np.float64))
        t = {"zero": 0.0, "mean": np.mean(column), "median": np.median(column)}[threshold]
        below = [v for v in column if v <= t]
        above = [v for v in column if v > t]
        low = np.mean(below) if below else np.mean(above)
        high = np.mean(above) if above else low
        for i in range(X.shape[0]):
            out[i, j] = high if X[i, j] > t else low
    return out


@pytest.fixture
def relu_features():
    rng = np.random.default_rng(0)
    X = np.maximum(rng.standard_normal((40, 13)) * rng.uniform(0.1, 5, 13) - 0.3, 0)
    X[:, 4] = 2.0  # constant, all above zero: no "below" side
    X[:, 5] = 0.0  # all zero: no "above" side
    return X.astype(np.float32)


@pytest.mark.parametrize("threshold", ["zero", "mean", "median"])
def test_matches_naive_transcription(relu_features, threshold):
    X_test = relu_features[::-1] * 1.5 - 0.2
    q = BinaryQuantizer(threshold).fit(relu_features)
    got = q.transform(X_test)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, naive_binary(relu_features, X_test, threshold),
                               rtol=1e-6)


@pytest.mark.parametrize("threshold", ["zero", "mean", "median"])
def test_codes_round_trip_idempotence_and_packing(relu_features, threshold):
    q = BinaryQuantizer(threshold).fit(relu_features)
    X_test = np.random.default_rng(1).standard_normal((9, 13)).astype(np.float32)
    codes = q.encode(X_test)
    assert codes.dtype == np.uint8 and set(np.unique(codes)) <= {0, 1}
    np.testing.assert_array_equal(q.decode(codes), q.transform(X_test))
    np.testing.assert_array_equal(q.transform(q.transform(X_test)), q.transform(X_test))
    packed = q.pack(X_test)
    assert packed.shape == (9, -(-q.bits_per_vector // 8)) == (9, 2)
    np.testing.assert_array_equal(packed, pack_codes(codes, 1))
    # The layout is numpy's little-endian packbits.
    np.testing.assert_array_equal(packed, np.packbits(codes, axis=1, bitorder="little"))
    np.testing.assert_array_equal(q.unpack(packed), q.transform(X_test))
    assert q.bits_per_vector == 13 and q.n_features_out_ == 13


def test_levels_lie_on_their_side(relu_features):
    q = BinaryQuantizer("median").fit(relu_features)
    both = (relu_features > q.threshold_).any(0) & (relu_features <= q.threshold_).any(0)
    assert np.all(q.low_[both] <= q.threshold_[both])
    assert np.all(q.high_[both] > q.threshold_[both])


def test_float64_stays_float64_and_float16_gives_float32(relu_features):
    q = BinaryQuantizer().fit(relu_features.astype(np.float64))
    assert q.transform(relu_features.astype(np.float64)).dtype == np.float64
    q16 = BinaryQuantizer().fit(relu_features.astype(np.float16))
    assert q16.transform(relu_features.astype(np.float16)).dtype == np.float32


def test_errors(relu_features):
    with pytest.raises(NotFittedError):
        BinaryQuantizer().transform(relu_features)
    with pytest.raises(NotFittedError):
        BinaryQuantizer().bits_per_vector
    with pytest.raises(ValueError, match="threshold must be one of 'zero', 'mean'"):
        BinaryQuantizer("sign").fit(relu_features)
    q = BinaryQuantizer().fit(relu_features)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 1\]"):
        q.decode(np.full((1, 13), 2, np.uint8))
    with pytest.raises(ValueError, match="fitted on 13"):
        q.encode(relu_features[:, :3])
    bad = relu_features.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        q.transform(bad)


@pytest.mark.parametrize("threshold", ["zero", "median"])
def test_same_results_on_the_array_backend(xp, relu_features, threshold):
    q = BinaryQuantizer(threshold).fit(relu_features)
    q_device = BinaryQuantizer(threshold).fit(xp.asarray(relu_features))
    X = xp.asarray(relu_features[::-1] - 0.1)
    for name in ("transform", "encode", "pack"):
        got = getattr(q_device, name)(X)
        assert type(got) is type(X)
        np.testing.assert_array_equal(to_numpy(got), getattr(q, name)(to_numpy(X)))
    np.testing.assert_array_equal(to_numpy(q_device.unpack(q_device.pack(X))),
                                  q.transform(to_numpy(X)))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("threshold", ["zero", "mean", "median"])
def test_compiled_kernel_equals_the_array_api_formula(relu_features, threshold, dtype):
    train = relu_features.astype(dtype)
    q = BinaryQuantizer(threshold).fit(train)
    noise = np.random.default_rng(1).standard_normal(train.shape).astype(dtype)
    test = np.asfortranarray(np.concatenate(  # values either side, and on the threshold
        [train + noise, q.threshold_.astype(dtype)[None]]
        + [np.nextafter(q.threshold_.astype(dtype), toward)[None] for toward in (-np.inf, np.inf)]))
    out = np.float32 if dtype == np.float16 else dtype
    above = test > q.threshold_  # numpy compares in float64
    np.testing.assert_array_equal(q.transform(test),
                                  np.where(above, q.high_.astype(out), q.low_.astype(out)))
    np.testing.assert_array_equal(q.encode(test), above.astype(np.uint8))
    bad = test.copy()
    bad[1, 2], bad[4, 0] = np.nan, -np.inf
    for method in (q.transform, q.encode):
        with pytest.raises(ValueError, match="contains 2 NaN or infinite"):
            method(bad)
