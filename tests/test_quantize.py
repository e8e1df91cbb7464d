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
