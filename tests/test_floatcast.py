"""FloatCast against ml_dtypes' casts, bit for bit, and its properties."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from dnnstress._array import to_numpy
from dnnstress.stress.floatcast import FORMATS, FloatCast, decode_bits

ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes not installed "
                                "(pip install ml_dtypes) : the reference casts")
REFERENCE = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16,
             "float8_e4m3": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2}
FORMAT_NAMES = list(FORMATS)


def reference_cast(X, name):
    """Values and bit patterns of ml_dtypes' cast (overflow warnings are its business)."""
    with np.errstate(over="ignore", invalid="ignore"):
        cast = X.astype(REFERENCE[name])
    return cast.astype(np.float64), cast.view(np.uint8 if cast.itemsize == 1 else np.uint16)


def all_patterns(name):
    width = FORMATS[name].width
    return np.arange(1 << width).astype(np.uint8 if width == 8 else np.uint16)


def dense_float32():
    """Every 7919th float32 bit pattern (800 per binade, subnormals, both signs), finite."""
    values = np.arange(0, 1 << 32, 7919, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return values[np.isfinite(values)]


def ties_of(name):
    """Midpoints between neighbours of the format, and the float32s either side."""
    values = decode_bits(all_patterns(name), FORMATS[name])
    values = np.unique(values[np.isfinite(values)])
    middle = ((values[1:] + values[:-1]) / 2).astype(np.float32)  # exact: 1 bit more
    return np.concatenate([middle, np.nextafter(middle, np.float32(np.inf)),
                           np.nextafter(middle, np.float32(-np.inf))])


def assert_same_values(got, expected):
    np.testing.assert_array_equal(got, expected)  # NaN == NaN here
    np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_float32_casts_equal_ml_dtypes_bit_for_bit(name):
    x = np.concatenate([dense_float32(), ties_of(name)])
    X = x.reshape(-1, 1)
    cast = FloatCast(name).fit(X[:2])
    values, bits = reference_cast(X, name)
    assert_same_values(cast.transform(X).astype(np.float64), values)
    np.testing.assert_array_equal(cast.encode(X), bits)


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_float64_rounds_directly_like_ml_dtypes(name):
    # Just above and below the ties in float64: a detour through float32 would round
    # these to the tie itself, then to even, the wrong way half of the time.
    ties = ties_of(name)[: len(ties_of(name)) // 3].astype(np.float64)
    x = np.concatenate([ties * (1 + 2.0 ** -40), ties * (1 - 2.0 ** -40),
                        np.random.default_rng(0).standard_normal(5000) * 100])
    X = x.reshape(-1, 1)
    got = FloatCast(name).fit(X[:2]).transform(X)
    assert got.dtype == np.float64
    assert_same_values(got, reference_cast(X, name)[0])


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_decode_of_every_pattern_equals_ml_dtypes(name):
    codes = all_patterns(name).reshape(-1, 1)
    cast = FloatCast(name).fit(np.zeros((1, 1), np.float32))
    with np.errstate(invalid="ignore"):  # ml_dtypes warns widening its NaNs
        expected = codes.view(REFERENCE[name]).astype(np.float64)
    assert_same_values(cast.decode(codes, np.float64), expected)


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_round_trip_idempotence_and_packing(name):
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((7, 5)) * 10).astype(np.float32)
    cast = FloatCast(name).fit(X)
    Y = cast.transform(X)
    np.testing.assert_array_equal(cast.transform(Y), Y)
    np.testing.assert_array_equal(cast.decode(cast.encode(X)), Y)
    packed = cast.pack(X)
    assert packed.dtype == np.uint8
    assert packed.shape == (7, cast.bits_per_vector // 8) == (7, 5 * FORMATS[name].width // 8)
    np.testing.assert_array_equal(cast.unpack(packed), Y)


def test_overflow_as_the_format_defines_it_or_saturated():
    X = np.array([[448.0, 464.0, 480.0, -1e6, 6e4, 1e5]], np.float32)
    fn = FloatCast("float8_e4m3").fit(X)
    assert_same_values(fn.transform(X)[0, :4], np.array([448, 448, np.nan, np.copysign(np.nan, -1)]))
    e5 = FloatCast("float8_e5m2").fit(X)
    np.testing.assert_array_equal(e5.transform(X)[0, 4:], [57344, np.inf])
    saturated = FloatCast("float8_e4m3", saturate=True).fit(X).transform(X)
    np.testing.assert_array_equal(saturated, [[448, 448, 448, -448, 448, 448]])
    assert FloatCast("float16", saturate=True).fit(X).transform(X)[0, 5] == 65504


def test_float16_input_gives_float32_and_float16_format_is_then_exact():
    X = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float16)
    cast = FloatCast("float16").fit(X)
    Y = cast.transform(X)
    assert Y.dtype == np.float32
    np.testing.assert_array_equal(Y, X.astype(np.float32))


def test_errors():
    X = np.ones((2, 3), np.float32)
    with pytest.raises(NotFittedError):
        FloatCast().transform(X)
    with pytest.raises(NotFittedError):
        FloatCast().bits_per_vector
    with pytest.raises(ValueError, match="format must be one of 'float16', 'bfloat16'"):
        FloatCast("float8").fit(X)
    cast = FloatCast("float8_e5m2").fit(X)
    with pytest.raises(TypeError, match="must be uint8"):
        cast.decode(np.zeros((1, 3), np.uint16))
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        cast.decode(np.zeros((1, 2), np.uint8))
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        cast.transform(X)


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_same_results_on_the_array_backend(xp, name):
    X = np.concatenate([dense_float32()[::50], ties_of(name)[::7]]).reshape(-1, 1)
    cast = FloatCast(name).fit(X)
    device = xp.asarray(X)
    got = cast.transform(device)
    assert type(got) is type(device)
    assert_same_values(to_numpy(got), cast.transform(X))
    codes = cast.encode(device)
    np.testing.assert_array_equal(to_numpy(codes), cast.encode(X))
    assert_same_values(to_numpy(cast.decode(codes)), cast.decode(cast.encode(X)))


@pytest.mark.parametrize("saturate", [False, True])
@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_compiled_float32_kernel_equals_the_array_api_emulation(name, saturate):
    from dnnstress.stress.floatcast import round_to_format

    X = np.concatenate([[0.0, -0.0, 3.4e38, -3.4e38], dense_float32()[::3], ties_of(name)])
    X = X.astype(np.float32)[: len(X) // 8 * 8].reshape(-1, 8)[:, ::-1]  # not contiguous
    cast = FloatCast(name, saturate=saturate).fit(X[:2])
    limit = FORMATS[name].max_finite
    twin = X.astype(np.float64).clip(-limit, limit) if saturate else X.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = round_to_format(twin, FORMATS[name]).astype(np.float32)
    got = cast.transform(X)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    if saturate:
        assert np.isfinite(got).all()
    X[3, 5] = np.inf
    with pytest.raises(ValueError, match="contains 1 NaN or infinite"):
        cast.transform(X)
