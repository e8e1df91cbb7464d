"""Q-1 / Q-2 against a naive transcription of the paper's formula, and their properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dnnstress._array import to_numpy
from dnnstress.stress import UniformQuantizer
from dnnstress.stress import _cpu_kernels, _uniform


def naive_quantize(train, test, h, per_dimension):
    """Paper Sec. 2.2 verbatim: dictionary {min + st/2 + st*i}, argmin |x - y|.

    Returns the chosen centres and, for every value, the set of centres at the minimal
    distance up to rounding (exact ties can go either way in floating point).
    """
    train, test = train.astype(np.float64), test.astype(np.float64)
    if per_dimension:
        low, high = train.min(axis=0), train.max(axis=0)
    else:
        low = np.full(train.shape[1], train.min())
        high = np.full(train.shape[1], train.max())
    step = (high - low) / h
    centres = low[:, None] + step[:, None] / 2 + step[:, None] * np.arange(h)  # (d, h)
    distance = np.abs(test[:, :, None] - centres[None])                       # (n, d, h)
    chosen = np.take_along_axis(centres[None], distance.argmin(axis=2)[..., None], 2)[..., 0]
    slack = 1e-9 * (np.abs(test) + (high - low) + 1)[..., None]
    near_best = distance <= distance.min(axis=2, keepdims=True) + slack
    return chosen, centres, near_best


def assert_matches_naive(train, test, h, per_dimension):
    q = UniformQuantizer(h, per_dimension=per_dimension).fit(train)
    ours = q.transform(test).astype(np.float64)
    _, centres, near_best = naive_quantize(train, test, h, per_dimension)
    # Our value must be (within rounding) one of the nearest centres.  lo + (k + 0.5) * st
    # in the input's precision carries an absolute error of a few ulps of the training
    # range's magnitude, not of the centre's: a centre near 0 in a range [-8752, 8734]
    # is only known to about 1e-3 in float32.
    eps = np.finfo(test.dtype).eps
    tolerance = 16 * eps * (np.abs(train.astype(np.float64)).max() + np.abs(centres).max() + 1)
    hit = np.abs(ours[..., None] - centres[None]) <= tolerance
    assert (hit & near_best).any(axis=2).all()


finite = dict(allow_nan=False, allow_infinity=False)


@st.composite
def train_test(draw, dtype=np.float64):
    d = draw(st.integers(1, 5))
    n = draw(st.integers(1, 12))
    scale = draw(st.sampled_from([1e-3, 1.0, 37.5, 1e4]))
    offset = draw(st.sampled_from([0.0, -2.0, 1e3]))
    elements = st.floats(-1, 1, **finite)
    train = draw(hnp.arrays(np.float64, (n, d), elements=elements)) * scale + offset
    constant_column = draw(st.integers(-1, d - 1))
    if constant_column >= 0:
        train[:, constant_column] = train[0, constant_column]
    # Test values reach past the training range on both sides.
    test = draw(hnp.arrays(np.float64, (draw(st.integers(1, 12)), d),
                           elements=st.floats(-1.5, 1.5, **finite))) * scale + offset
    return train.astype(dtype), test.astype(dtype)


levels = st.one_of(st.integers(1, 40), st.sampled_from([255, 256, 257, 1000, 65536]))


@settings(max_examples=150, deadline=None)
@given(data=train_test(), h=levels, per_dimension=st.booleans())
def test_matches_naive_formula(data, h, per_dimension):
    train, test = data
    assert_matches_naive(train, test, h, per_dimension)


@settings(max_examples=60, deadline=None)
@given(data=train_test(np.float32), h=st.integers(1, 40), per_dimension=st.booleans())
def test_matches_naive_formula_float32(data, h, per_dimension):
    train, test = data
    assert_matches_naive(train, test, h, per_dimension)


@settings(max_examples=100, deadline=None)
@given(data=train_test(), h=levels, per_dimension=st.booleans())
def test_at_most_h_values(data, h, per_dimension):
    train, test = data
    out = UniformQuantizer(h, per_dimension=per_dimension).fit(train).transform(
        np.vstack([train, test]))
    if per_dimension:
        assert all(len(np.unique(column)) <= h for column in out.T)
    else:
        assert len(np.unique(out)) <= h


@settings(max_examples=100, deadline=None)
@given(data=train_test(), h=levels, per_dimension=st.booleans())
def test_idempotent_and_encode_decode(data, h, per_dimension):
    train, test = data
    q = UniformQuantizer(h, per_dimension=per_dimension).fit(train)
    once = q.transform(test)
    np.testing.assert_array_equal(q.transform(once), once)
    np.testing.assert_array_equal(q.decode(q.encode(test), dtype=test.dtype), once)


@settings(max_examples=100, deadline=None)
@given(data=train_test(), h=st.integers(1, 40), per_dimension=st.booleans())
def test_error_bound_shrinks_with_h_and_order_is_kept(data, h, per_dimension):
    train, _ = data
    q = UniformQuantizer(h, per_dimension=per_dimension).fit(train)
    # Inside the training range the error is at most half a bin, (max - min) / 2h.
    error = np.abs(q.transform(train) - train)
    assert (error <= q.step_ / 2 * (1 + 1e-9) + 1e-12 * np.abs(train)).all()
    # Quantization is monotone: it never swaps the order of two values.
    column = np.sort(train[:, 0])
    reconstructed = q.transform(np.repeat(column[:, None], train.shape[1], axis=1))[:, 0]
    assert (np.diff(reconstructed) >= 0).all()


def test_hand_computed_case():
    train = np.array([[0.0, 5.0], [4.0, 5.0]])
    q2 = UniformQuantizer(4, per_dimension=True).fit(train)
    # Dimension 0: step 1, centres 0.5 1.5 2.5 3.5; dimension 1 is constant.
    test = np.array([[-3.0, 7.0], [1.0, 0.0], [1.2, 5.0], [9.0, 5.0]])
    np.testing.assert_array_equal(
        q2.transform(test), [[0.5, 5.0], [0.5, 5.0], [1.5, 5.0], [3.5, 5.0]])
    np.testing.assert_array_equal(q2.encode(test), [[0, 0], [0, 0], [1, 0], [3, 0]])
    # Q-1 uses the global range [0, 5]: step 1.25, centres 0.625 ... 4.375.
    q1 = UniformQuantizer(4).fit(train)
    np.testing.assert_allclose(q1.transform(test[:2]), [[0.625, 4.375], [0.625, 0.625]])
    # h = 1 maps everything to the midpoint and costs no bits.
    q = UniformQuantizer(1, per_dimension=True).fit(train)
    np.testing.assert_array_equal(q.transform(test)[:, 0], 2.0)
    assert q.bits_per_vector == 0


def test_codes_dtype_and_bits():
    X = np.random.default_rng(0).random((50, 3))
    assert UniformQuantizer(256).fit(X).encode(X).dtype == np.uint8
    assert UniformQuantizer(257).fit(X).encode(X).dtype == np.uint16
    assert UniformQuantizer(27, per_dimension=True).fit(X).bits_per_vector == 15


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("h", [1, 2, 3, 27, 256, 65536])
def test_fast_cpu_kernel_equals_twin(dtype, h):
    rng = np.random.default_rng(h)
    X = (rng.standard_normal((300, 37)) * 3).astype(dtype)
    X[:, 5] = 1.0  # a constant dimension
    q = UniformQuantizer(h, per_dimension=True).fit(X[:200])
    lo, step = q.data_min_, q.step_
    np.testing.assert_array_equal(_cpu_kernels.reconstruct(X, lo, step, h),
                                  _uniform.reconstruct(X, lo, step, h))
    np.testing.assert_array_equal(_cpu_kernels.encode(X, lo, step, h),
                                  _uniform.encode(X, lo, _uniform.safe_step(step), h))


def test_same_result_on_every_backend(xp):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((64, 33)).astype(np.float32)
    expected = UniformQuantizer(5, per_dimension=True).fit(X).transform(X)
    device_x = xp.asarray(X)
    q = UniformQuantizer(5, per_dimension=True).fit(device_x)
    out = q.transform(device_x)
    assert type(out) is type(device_x)
    np.testing.assert_array_equal(to_numpy(out), expected)
    codes = q.encode(device_x)
    np.testing.assert_array_equal(to_numpy(q.decode(codes)), expected)


@pytest.mark.parametrize("bits", range(0, 17))
def test_fast_cpu_packing_equals_twin(bits):
    from dnnstress.stress import _packing

    rng = np.random.default_rng(bits)
    for n, d in ((5, 1), (7, 13), (3, 64), (2, 1001)):
        codes = rng.integers(0, 1 << bits, (n, d)).astype(np.uint16 if bits > 8 else np.uint8)
        packed = _cpu_kernels.pack(codes, bits)
        np.testing.assert_array_equal(packed, _packing.pack_codes(codes, bits))
        np.testing.assert_array_equal(_cpu_kernels.unpack(packed, bits, d), codes)


def test_transform_and_encode_write_into_out(xp):
    X = xp.asarray(np.random.default_rng(3).standard_normal((40, 9)).astype(np.float32))
    q = UniformQuantizer(6, per_dimension=True).fit(X)
    out = xp.empty_like(X)
    assert q.transform(X, out=out) is out
    np.testing.assert_array_equal(to_numpy(out), to_numpy(q.transform(X)))
    codes = xp.empty(X.shape, dtype=np.uint8)
    assert q.encode(X, out=codes) is codes
    np.testing.assert_array_equal(to_numpy(codes), to_numpy(q.encode(X)))
    for dtype in (np.float32, np.float64, np.float16):  # float16: the formula's path
        centres = xp.empty(X.shape, dtype=dtype)
        assert q.decode(codes, dtype, out=centres) is centres
        np.testing.assert_array_equal(to_numpy(centres), to_numpy(q.decode(codes, dtype)))
        centres = xp.empty(X.shape, dtype=dtype)
        assert q.unpack(q.pack(X), dtype=dtype, out=centres) is centres
        np.testing.assert_array_equal(to_numpy(centres), to_numpy(q.decode(codes, dtype)))


@pytest.mark.parametrize("levels", [6, 256, 1000])  # packed in 3 bits, 8 and 16
def test_decode_and_unpack_name_a_bad_out(levels):
    X = np.random.default_rng(3).standard_normal((40, 9)).astype(np.float32)
    q = UniformQuantizer(levels).fit(X)
    codes, packed = q.encode(X), q.pack(X)
    with pytest.raises(ValueError, match="shape"):
        q.decode(codes, out=np.empty((40, 8), np.float32))
    with pytest.raises(ValueError, match="dtype"):  # float16: the formula's path
        q.decode(codes, np.float16, out=np.empty((40, 9), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        q.unpack(packed, dtype=np.float64, out=np.empty((40, 9), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        q.unpack(packed, out=np.empty((9, 40), np.float32).T)


@pytest.mark.parametrize("bad_out, error, message", [
    (np.empty((40, 8), np.float32), ValueError, "shape"),
    (np.empty((40, 9), np.float64), ValueError, "dtype"),
    (np.empty((9, 40), np.float32).T, ValueError, "C-contiguous"),
    ([[0.0] * 9] * 40, TypeError, "numpy array"),
])
def test_bad_out_is_named(bad_out, error, message):
    X = np.random.default_rng(3).standard_normal((40, 9)).astype(np.float32)
    q = UniformQuantizer(6).fit(X)
    with pytest.raises(error, match=message):
        q.transform(X, out=bad_out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", ["transform", "encode", "pack"])
def test_every_entry_point_refuses_non_finite_values(bad, method, dtype, xp):
    X = np.random.default_rng(4).standard_normal((30, 7)).astype(dtype)
    q = UniformQuantizer(5, per_dimension=True).fit(xp.asarray(X))
    X[17, 3] = bad
    X[2, 6] = bad
    with pytest.raises(ValueError, match="contains 2 NaN or infinite"):
        getattr(q, method)(xp.asarray(X))


def test_out_must_not_overlap_the_input_nor_be_read_only():
    X = np.random.default_rng(3).standard_normal((40, 9)).astype(np.float32)
    q = UniformQuantizer(6).fit(X)
    with pytest.raises(ValueError, match="share memory"):
        q.transform(X, out=X)
    buffer = np.zeros((41, 9), np.float32)
    with pytest.raises(ValueError, match="share memory"):
        q.transform(buffer[:-1], out=buffer[1:])
    frozen = np.empty_like(X)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        q.transform(X, out=frozen)


@pytest.mark.gpu
def test_out_on_the_wrong_backend_is_named(cupy):
    X = cupy.asarray(np.random.default_rng(3).standard_normal((40, 9)).astype(np.float32))
    q = UniformQuantizer(6).fit(X)
    with pytest.raises(TypeError, match="cupy array"):
        q.transform(X, out=np.empty((40, 9), np.float32))


# --- ranges at the limits of the input's type (issue 13, item 6) ----------------------

F32_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize("per_dimension", [False, True])
@pytest.mark.parametrize("dtype, high", [(np.float32, F32_MAX), (np.float64, 1.7e308)])
def test_a_range_wider_than_the_dtype_is_refused_with_the_reason(dtype, high, per_dimension):
    X = np.array([[-high, 0.0], [high, 1.0]], dtype=dtype)
    q = UniformQuantizer(4, per_dimension=per_dimension)
    with pytest.raises(ValueError, match=f"dimension 0.*wider than {np.dtype(dtype).name}"):
        q.fit(X)
    assert not hasattr(q, "step_")


@pytest.mark.parametrize("h", [1, 2, 27, 65536])
def test_ranges_near_the_float32_limit_stay_finite_and_exact(h):
    """Range 3.4e38 (max - min just representable) and test values whose distance to
    the minimum overflows: codes clamp, centres stay finite, numpy twin = CPU kernel,
    and every value is the nearest centre of the float64 formula."""
    half = np.float32(F32_MAX / 2)
    train = np.array([[-half, -F32_MAX], [half, 0.0]], dtype=np.float32)
    test = np.array([[-half, -F32_MAX], [half, 0.0], [F32_MAX, F32_MAX],
                     [-F32_MAX, -F32_MAX], [0.0, -1e38]], dtype=np.float32)
    q = UniformQuantizer(h, per_dimension=True).fit(train)
    out = q.transform(test)
    assert np.isfinite(out).all()
    lo, step = q.data_min_, q.step_
    np.testing.assert_array_equal(out, _uniform.reconstruct(test, lo, step, h))
    codes = q.encode(test)
    np.testing.assert_array_equal(codes[2], [h - 1, h - 1])  # beyond the top: last centre
    np.testing.assert_array_equal(codes[3], [0, 0])
    centres = lo + (codes + 0.5) * step  # in float64: float32 rounds each term by 2**-24
    np.testing.assert_allclose(out, centres, rtol=0, atol=1e-6 * F32_MAX)


def test_subnormal_ranges():
    """A range of a few subnormals: a step that rounds to 0 in float32 makes a constant
    dimension (every value to the minimum), a subnormal step is kept: no inf, no NaN."""
    tiny = float(np.finfo(np.float32).smallest_subnormal)  # 2**-149
    train = np.array([[0.0, 0.0], [4 * tiny, 1e-40]], dtype=np.float32)
    q = UniformQuantizer(27, per_dimension=True).fit(train)  # steps 0.15 tiny and 3.7e-42
    test = np.array([[0.0, 0.0], [4 * tiny, 1e-40], [2 * tiny, 5e-41], [1.0, -1.0]],
                    dtype=np.float32)
    out = q.transform(test)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, 0], 0.0)  # step rounded to 0: the minimum
    assert (q.encode(test)[:, 0] == 0).all()
    step = np.float32(q.step_[1])
    with np.errstate(over="ignore"):  # -1 / 3.7e-42 overflows to -inf: the first code
        code = np.clip(np.ceil(test[:, 1] / step) - 1, 0, 26)
    expected = step * (code + np.float32(0.5))
    np.testing.assert_array_equal(out[:, 1], expected.astype(np.float32))
    assert 0 < abs(out[2, 1]) < np.finfo(np.float32).tiny  # subnormal centre, not flushed


def test_a_float64_range_applied_to_float32_must_fit_float32():
    q = UniformQuantizer(4).fit(np.array([[-1e300], [1e300]]))
    with pytest.raises(ValueError, match="wider than float32"):
        q.transform(np.zeros((2, 1), np.float32))


# --- parameters and inputs that are not what they seem (issue 13, items 8 and 9) -------

@pytest.mark.parametrize("flag", [True, False, np.True_])
def test_a_bool_is_not_a_number_of_levels(flag):
    with pytest.raises(TypeError, match="n_levels must be an integer"):
        UniformQuantizer(flag).fit(np.zeros((3, 2)))


def test_unpack_refuses_bytes_and_an_unfitted_quantizer():
    from sklearn.exceptions import NotFittedError

    X = np.random.default_rng(0).standard_normal((4, 3))
    with pytest.raises(NotFittedError):
        UniformQuantizer(4).unpack(np.zeros((4, 1), np.uint8))
    q = UniformQuantizer(4).fit(X)
    packed = q.pack(X)
    for n_rows in (None, 4):
        with pytest.raises(TypeError, match="got bytes"):
            q.unpack(packed.tobytes(), n_rows=n_rows)


def test_long_double_input_is_refused_clearly():
    X = np.zeros((3, 2), dtype=np.longdouble)
    if X.dtype.itemsize <= 8:
        pytest.skip("long double is float64 on this platform")
    with pytest.raises(TypeError, match="float128.*astype"):
        UniformQuantizer(4).fit(X)
    q = UniformQuantizer(4).fit(X.astype(np.float64))
    with pytest.raises(TypeError, match="float128"):
        q.transform(X)


@pytest.mark.parametrize("per_dimension", [False, True])
def test_float16_features_are_quantized_in_float32(per_dimension):
    X = np.random.default_rng(7).standard_normal((40, 6)).astype(np.float16)
    q = UniformQuantizer(9, per_dimension=per_dimension).fit(X)
    reference = UniformQuantizer(9, per_dimension=per_dimension).fit(X.astype(np.float32))
    out = q.transform(X)
    assert out.dtype == np.float32 and q.dtype_ == np.float32
    np.testing.assert_array_equal(out, reference.transform(X.astype(np.float32)))
    np.testing.assert_array_equal(q.encode(X), reference.encode(X.astype(np.float32)))
    np.testing.assert_array_equal(q.unpack(q.pack(X)), out)


def test_a_constant_dimension_far_from_a_test_value_is_not_nan():
    # x - lo overflows to -inf, divided by the constant dimension's infinite step: NaN,
    # which the clamp must send to code 0 on every path.
    q = UniformQuantizer(4).fit(np.full((2, 1), 3e38, np.float32))
    out = q.transform(np.array([[-3e38], [0.0]], np.float32))
    np.testing.assert_array_equal(out, np.float32([[3e38], [3e38]]))


# --- calibrated ranges: quantile and mean -+ k std (issue 9, section 2) ----------------

def naive_range(train, per_dimension, range_, arg):
    """The calibrated range transcribed with numpy's percentile, mean, std and clip."""
    train = train.astype(np.float64)
    axis = 0 if per_dimension else None
    low, high = train.min(axis=axis), train.max(axis=axis)
    if range_ == "quantile":
        below, above = np.percentile(train, [100 * arg, 100 * (1 - arg)], axis=axis)
    elif range_ == "std":
        mean, std = train.mean(axis=axis), train.std(axis=axis)
        below, above = mean - arg * std, mean + arg * std
    else:
        below, above = low, high
    low, high = np.clip(below, low, high), np.clip(above, low, high)
    d = train.shape[1]
    return np.broadcast_to(low, d), np.broadcast_to(high, d)


def paper_quantizer(test, low, high, h):
    """Paper Sec. 2.2 on the range [low, high]: centres low + st/2 + st*i, nearest one;
    returns the centres and, per value, those at the minimal distance up to rounding."""
    test = test.astype(np.float64)
    step = (high - low) / h
    centres = low[:, None] + step[:, None] / 2 + step[:, None] * np.arange(h)  # (d, h)
    distance = np.abs(test[:, :, None] - centres[None])
    slack = 1e-9 * (np.abs(test) + (high - low) + 1)[..., None]
    return centres, distance <= distance.min(axis=2, keepdims=True) + slack


calibrations = st.one_of(
    st.just(("minmax", {})),
    st.sampled_from([0.0, 0.001, 0.05, 0.25, 0.49]).map(lambda q: ("quantile", {"quantile": q})),
    st.sampled_from([0.1, 1.0, 2.5, 100.0]).map(lambda k: ("std", {"n_std": k})))


@settings(max_examples=120, deadline=None)
@given(data=train_test(), h=levels, per_dimension=st.booleans(), calibration=calibrations)
def test_calibrated_ranges_match_a_naive_transcription(data, h, per_dimension, calibration):
    train, test = data
    range_, kwargs = calibration
    q = UniformQuantizer(h, per_dimension, range=range_, **kwargs).fit(train)
    low, high = naive_range(train, per_dimension, range_, next(iter(kwargs.values()), None))
    scale = np.abs(train).max() + 1
    np.testing.assert_allclose(q.data_min_, low, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(q.data_max_, high, rtol=0, atol=1e-12 * scale)
    ours = q.transform(test)
    centres, near_best = paper_quantizer(test, q.data_min_, q.data_max_, h)
    hit = np.abs(ours[..., None] - centres[None]) <= 16 * np.finfo(float).eps * scale
    assert (hit & near_best).any(axis=2).all()  # the nearest centre; outside: an end one
    codes = q.encode(test)
    assert codes.min() >= 0 and codes.max() < h
    np.testing.assert_array_equal(q.transform(ours), ours)  # idempotent on its output
    np.testing.assert_array_equal(q.decode(codes, dtype=test.dtype), ours)
    np.testing.assert_array_equal(q.unpack(q.pack(test), dtype=test.dtype), ours)


@settings(max_examples=60, deadline=None)
@given(data=train_test(np.float32), h=levels, per_dimension=st.booleans())
def test_minmax_is_the_default_and_quantile_zero_is_minmax(data, h, per_dimension):
    train, test = data
    default = UniformQuantizer(h, per_dimension).fit(train)
    for same in (UniformQuantizer(h, per_dimension, range="minmax"),
                 UniformQuantizer(h, per_dimension, range="quantile", quantile=0)):
        same.fit(train)
        np.testing.assert_array_equal(same.data_min_, default.data_min_)
        np.testing.assert_array_equal(same.step_, default.step_)
        np.testing.assert_array_equal(same.transform(test), default.transform(test))
    # The range is still the exact training min and max: minmax results are the paper's.
    np.testing.assert_array_equal(default.data_max_, np.broadcast_to(
        train.max(axis=0) if per_dimension else train.max(), train.shape[1]))


def test_calibrated_ranges_hand_computed():
    train = np.arange(101.0)[:, None]  # 0 .. 100
    # Quantiles 0.01 and 0.99 of 0 .. 100 are 1 and 99: step 24.5, centres 13.25 ...
    q = UniformQuantizer(4, True, range="quantile", quantile=0.01).fit(train)
    test = np.array([[0.0], [14.0], [51.0], [99.0], [1e6]])
    np.testing.assert_array_equal(q.transform(test).ravel(), [13.25, 13.25, 62.25, 86.75, 86.75])
    np.testing.assert_array_equal(q.encode(test).ravel(), [0, 0, 2, 3, 3])
    # -2 .. 2: mean 0, std sqrt(2); one std: centres -+ sqrt(2) / 2, 10 std: clipped to -+2.
    train = np.array([[-2.0], [-1.0], [0.0], [1.0], [2.0]])
    one = UniformQuantizer(2, range="std", n_std=1).fit(train)
    np.testing.assert_allclose(one.transform(np.array([[-5.0], [0.5]])).ravel(),
                               [-np.sqrt(0.5), np.sqrt(0.5)], rtol=1e-15)
    ten = UniformQuantizer(2, range="std", n_std=10).fit(train)
    np.testing.assert_array_equal(ten.transform(np.array([[-5.0], [0.5]])).ravel(), [-1, 1])
    assert UniformQuantizer(4, range="quantile").fit(train).quantile is None  # unchanged
    np.testing.assert_allclose(UniformQuantizer(4, range="quantile").fit(train).data_min_,
                               np.quantile(train, 0.001))  # the default quantile


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("calibration", [{"range": "minmax"}, {"range": "quantile"},
                                         {"range": "quantile", "quantile": 0.3},
                                         {"range": "std"}, {"range": "std", "n_std": 0.5}])
def test_a_constant_or_single_row_training_set_is_reproduced_not_zeroed(calibration, dtype):
    row = np.array([[0.7, -3.0, 1e-3, 0.0, 0.1]], dtype=dtype)
    test = np.random.default_rng(5).standard_normal((6, 5)).astype(dtype)
    for train in (row, np.repeat(row, 7, axis=0)):
        q2 = UniformQuantizer(27, per_dimension=True, **calibration).fit(train)
        np.testing.assert_array_equal(q2.step_, 0.0)
        np.testing.assert_array_equal(q2.transform(train), train)  # exactly, never 0
        np.testing.assert_array_equal(q2.transform(test), np.repeat(row, 6, axis=0))
        np.testing.assert_array_equal(q2.unpack(q2.pack(test)), np.repeat(row, 6, axis=0))
        # Q-1 over one row spans its values: distinct codes, values within half a bin.
        q1 = UniformQuantizer(27, **calibration).fit(train)
        assert len(np.unique(q1.encode(train))) > 1
        bound = q1.step_ / 2 + 1e-6 * np.abs(train)
        assert (np.abs(q1.transform(train) - train) <= bound).all() or \
            calibration["range"] != "minmax"
    # A training set whose every value is the same: Q-1 reproduces that value too.
    same = np.full((3, 5), -2.5, dtype=dtype)
    q1 = UniformQuantizer(4, **calibration).fit(same)
    np.testing.assert_array_equal(q1.transform(test), np.full_like(test, -2.5))


@pytest.mark.parametrize("params, error, message", [
    ({"range": "max"}, ValueError, "range must be one of 'minmax', 'quantile', 'std'"),
    ({"range": None}, ValueError, "range must be one of"),
    ({"quantile": 0.01}, ValueError, "quantile=0.01 is used only with range='quantile'"),
    ({"range": "std", "quantile": 0.01}, ValueError, "used only with range='quantile'"),
    ({"range": "quantile", "n_std": 2}, ValueError, "n_std=2 is used only with range='std'"),
    ({"range": "quantile", "quantile": 0.5}, ValueError, r"quantile must be in \[0, 0.5\)"),
    ({"range": "quantile", "quantile": -0.1}, ValueError, r"quantile must be in \[0, 0.5\)"),
    ({"range": "quantile", "quantile": np.nan}, ValueError, "quantile must be in"),
    ({"range": "quantile", "quantile": "1%"}, TypeError, "quantile must be a real number"),
    ({"range": "quantile", "quantile": True}, TypeError, "quantile must be a real number"),
    ({"range": "std", "n_std": 0}, ValueError, "n_std must be a positive finite"),
    ({"range": "std", "n_std": np.inf}, ValueError, "n_std must be a positive finite"),
    ({"range": "std", "n_std": [3]}, TypeError, "n_std must be a real number"),
])
def test_bad_range_parameters_are_named_in_fit(params, error, message):
    q = UniformQuantizer(4, per_dimension=True, **params)  # __init__ only stores them
    with pytest.raises(error, match=message):
        q.fit(np.random.default_rng(0).standard_normal((10, 3)))
    assert not hasattr(q, "step_")


@pytest.fixture
def faiss():
    return pytest.importorskip("faiss", reason="faiss-cpu not installed (pip install faiss-cpu)")


def test_quantile_range_and_codes_equal_faiss_scalar_quantizer(faiss):
    """faiss's QT_8bit with RS_quantiles takes sorted[int(q n)] and sorted[n - 1 - int(q n)]
    per dimension; where q (n - 1) is an integer that is numpy's linear quantile too.  Its
    8-bit codec, floor(255 (x - lo) / (hi - lo)), is our h = 255 up to bin boundaries
    (ours send an exact tie down) and its extra code 255 for x >= hi (ours: 254)."""
    rng = np.random.default_rng(11)
    train = (rng.standard_normal((101, 8)) * rng.uniform(0.1, 10, 8)).astype(np.float32)
    test = (rng.standard_normal((500, 8)) * 1.5 * rng.uniform(0.1, 10, 8)).astype(np.float32)
    sq = faiss.ScalarQuantizer(8, faiss.ScalarQuantizer.QT_8bit)
    sq.rangestat, sq.rangestat_arg = faiss.ScalarQuantizer.RS_quantiles, 0.01
    sq.train(train)
    trained = faiss.vector_to_array(sq.trained)
    ours = UniformQuantizer(255, per_dimension=True, range="quantile", quantile=0.01).fit(train)
    np.testing.assert_array_equal(ours.data_min_, trained[:8])
    np.testing.assert_allclose(ours.data_max_ - ours.data_min_, trained[8:], rtol=1e-6)
    theirs = sq.compute_codes(test).astype(int)
    t = (test - ours.data_min_) / ours.step_
    away = np.abs(t - np.round(t)) > 1e-3  # not within rounding of a bin boundary
    mine = ours.encode(test).astype(int)
    np.testing.assert_array_equal(mine[away], np.minimum(theirs, 254)[away])
    assert away.mean() > 0.99 and (theirs == 0).any() and (theirs == 255).any()


@pytest.mark.parametrize("calibration", [{"range": "quantile", "quantile": 0.05},
                                         {"range": "std", "n_std": 1.5}])
@pytest.mark.parametrize("per_dimension", [False, True])
def test_calibrated_ranges_on_every_backend(xp, calibration, per_dimension):
    X = np.random.default_rng(13).standard_normal((64, 33)).astype(np.float32)
    host = UniformQuantizer(9, per_dimension, **calibration).fit(X)
    device = UniformQuantizer(9, per_dimension, **calibration).fit(xp.asarray(X))
    # Quantile interpolation and reductions may round differently on the GPU.
    np.testing.assert_allclose(to_numpy(device.data_min_), host.data_min_, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(device.data_max_), host.data_max_, rtol=1e-12)
    out = to_numpy(device.transform(xp.asarray(X)))
    assert (np.abs(out - host.transform(X)) <= 1e-5).mean() > 0.99
    np.testing.assert_array_equal(to_numpy(device.decode(device.encode(xp.asarray(X)))), out)
