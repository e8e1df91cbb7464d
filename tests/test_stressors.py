"""The contract every stressor keeps (scikit-learn's check_estimator idea, our rules):
parameters stored unchanged, fit returns self, arrays keep their backend, bad input gets
an error that names the problem."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from dnnstress._array import to_numpy
from dnnstress.stress import (Identity, MantissaErasure, PCADrop, RandomDrop, UniformQuantizer,
                              make_fc)

STRESSORS = {
    "identity": lambda: Identity(),
    "dr1": lambda: RandomDrop(3, random_state=0),
    "dr2": lambda: PCADrop(3),
    "q1": lambda: UniformQuantizer(5),
    "q2": lambda: UniformQuantizer(5, per_dimension=True),
    "qb": lambda: MantissaErasure(40),
    "fc": lambda: make_fc(3, 5),
}
# Storage of one stressed 6-d vector: float32 for the unquantized outputs, ceil(log2 5) = 3
# bits per quantized value; Q-B erasing 40 bits of the float64 copy keeps the sign, the
# 8 exponent bits and 52 - 40 = 12 of the 23 mantissa bits of the float32 value.
BITS = {"identity": 6 * 32, "dr1": 3 * 32, "dr2": 3 * 32, "q1": 6 * 3, "q2": 6 * 3,
        "qb": 6 * 21, "fc": 3 * 3}


@pytest.fixture
def features():
    return np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)


@pytest.mark.parametrize("name", STRESSORS)
def test_estimator_contract(name, features):
    stressor = STRESSORS[name]()
    unfitted = repr(stressor)
    assert stressor.fit(features) is stressor
    assert repr(clone(stressor)) == repr(stressor) == unfitted  # fit leaves parameters alone
    out = stressor.transform(features[:7])
    assert out.shape == (7, stressor.n_features_out_)
    np.testing.assert_array_equal(stressor.fit_transform(features)[:7], out)
    assert stressor.bits_per_vector == BITS[name]


@pytest.mark.parametrize("name", STRESSORS)
def test_numpy_in_numpy_out(name, features):
    out = STRESSORS[name]().fit(features).transform(features)
    assert type(out) is np.ndarray and out.shape[0] == features.shape[0]


@pytest.mark.gpu
@pytest.mark.parametrize("name", STRESSORS)
def test_cupy_in_cupy_out_and_same_result(name, features, cupy):
    device_x = cupy.asarray(features)
    out = STRESSORS[name]().fit(device_x).transform(device_x)
    assert isinstance(out, cupy.ndarray)
    expected = STRESSORS[name]().fit(features).transform(features)
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, bad_params, good_params", [
    ("dr1", {"n_components": 0}, {"n_components": 2}),
    ("dr2", {"n_components": 9}, {"n_components": 2}),
    ("q1", {"n_levels": 0}, {"n_levels": 2}),
    ("qb", {"n_bits": 99}, {"n_bits": 2}),
])
def test_failed_fit_leaves_the_stressor_unfitted(name, bad_params, good_params, features):
    stressor = STRESSORS[name]().set_params(**bad_params)
    with pytest.raises(ValueError):
        stressor.fit(features)
    stressor.set_params(**good_params)
    with pytest.raises(ValueError, match="not fitted"):
        stressor.transform(features)


def test_quantizer_keeps_the_levels_it_was_fitted_with(features):
    q = UniformQuantizer(2).fit(features)
    before = q.transform(features)
    q.set_params(n_levels=0)  # takes effect at the next fit only
    np.testing.assert_array_equal(q.transform(features), before)
    assert q.bits_per_vector == 6


def test_plain_sklearn_pipeline_composes(features):
    pipeline = make_pipeline(PCADrop(4), UniformQuantizer(3, per_dimension=True))
    np.testing.assert_array_equal(pipeline.fit(features).transform(features),
                                  make_fc(4, 3).fit(features).transform(features))


def test_fc_fits_q2_on_the_projected_training_set(features):
    fc = make_fc(4, 3).fit(features)
    projected = PCADrop(4).fit(features).transform(features)
    q2 = fc.named_steps["q2"]
    np.testing.assert_allclose(q2.data_min_, projected.min(axis=0), rtol=1e-6)
    assert fc.bits_per_vector == 4 * 2


def _with(value):
    X = np.random.default_rng(1).standard_normal((4, 6))
    X[2, 3] = value
    return X


BAD_INPUTS = [
    (_with(np.nan), ValueError, "NaN or infinite"),
    (_with(-np.inf), ValueError, "NaN or infinite"),
    (np.zeros((0, 6)), ValueError, "empty"),
    (np.zeros(6), ValueError, "2-D"),
    (np.ones((3, 6), dtype=np.int64), TypeError, "floating point"),
    ([[1.0] * 6], TypeError, "numpy or CuPy array"),
]


@pytest.mark.parametrize("name", STRESSORS)
@pytest.mark.parametrize("bad, error, message", BAD_INPUTS)
def test_bad_input_is_named(name, bad, error, message, features):
    with pytest.raises(error, match=message):
        STRESSORS[name]().fit(bad)
    fitted = STRESSORS[name]().fit(features)
    with pytest.raises(error, match=message):
        fitted.transform(bad)


@pytest.mark.parametrize("name", STRESSORS)
def test_transform_before_fit_and_width_mismatch(name, features):
    with pytest.raises(ValueError, match="not fitted"):
        STRESSORS[name]().transform(features)
    fitted = STRESSORS[name]().fit(features)
    with pytest.raises(ValueError, match="fitted on 6"):
        fitted.transform(features[:, :5])


@pytest.mark.parametrize("stressor, message", [
    (UniformQuantizer(0), "n_levels"), (UniformQuantizer(65537), "n_levels"),
    (UniformQuantizer(2.5), "n_levels"), (RandomDrop(0), "n_components"),
    (RandomDrop(7), "n_components"), (PCADrop(0), "n_components"),
    (PCADrop(7), "n_components"), (MantissaErasure(65), "n_bits"),
    (MantissaErasure(33, dtype="float32"), "n_bits"), (MantissaErasure(3, dtype="int8"), "dtype"),
])
def test_bad_parameters_are_named(stressor, message, features):
    with pytest.raises((ValueError, TypeError), match=message):
        stressor.fit(features)


def test_mantissa_erasure_zeroes_low_bits():
    X = np.array([[1.0 + 2.0**-52, -3.75, 1e-300]])
    np.testing.assert_array_equal(MantissaErasure(0).fit(X).transform(X), X)
    # Erasing one bit drops the last mantissa bit: 1 + 2^-52 -> 1.
    assert MantissaErasure(1).fit(X).transform(X)[0, 0] == 1.0
    # 52 bits leave sign and exponent: powers of two, rounded towards zero.
    np.testing.assert_array_equal(MantissaErasure(52).fit(X).transform(X)[0, :2], [1.0, -2.0])
    # All 64 bits: zeros. 63 keeps only the sign bit: -0.0 for negatives.
    assert not MantissaErasure(64).fit(X).transform(X).any()
    assert np.signbit(MantissaErasure(63).fit(X).transform(X)[0, 1])
    out32 = MantissaErasure(20, dtype="float32").fit(X).transform(X)
    assert out32.dtype == np.float32
    bits = out32.view(np.uint32)
    assert not (bits & np.uint32(2**20 - 1)).any()


def test_mantissa_erasure_never_creates_nan(features):
    for n_bits in range(0, 65, 3):
        assert np.isfinite(MantissaErasure(n_bits).fit(features).transform(features)).all()


def test_non_finite_values_are_counted_on_every_backend(xp):
    from dnnstress._array import count_nonfinite

    X = np.random.default_rng(2).standard_normal((50, 13)).astype(np.float32)
    X[1, 2], X[7, 0], X[49, 12] = np.nan, np.inf, -np.inf
    assert count_nonfinite(xp.asarray(X)) == 3
    assert count_nonfinite(xp.asarray(X[10:40])) == 0


@pytest.mark.parametrize("stressor", [UniformQuantizer(True), RandomDrop(True),
                                      PCADrop(np.True_), MantissaErasure(False)])
def test_a_bool_is_not_a_count(stressor, features):
    with pytest.raises(TypeError, match="must be an integer"):
        stressor.fit(features)


def test_mantissa_erasure_is_accounted_against_float32():
    """Compression is never negative: erasing k <= 29 bits of the float64 copy of a
    float32 gives the float32 back (32 bits still needed); past that, sign, 8 exponent
    and 23 mantissa bits of the float32 are counted as they go.  float32's exponent is
    the low 8 bits of float64's (e64 = e32 + 896: the top 3 bits follow from the low 8),
    so every erased exponent bit loses one of them until only the top bits are left,
    which still say whether |x| >= 2."""
    X = np.random.default_rng(3).standard_normal((20, 5)).astype(np.float32)
    X[0, :3] = [1e-40, -np.finfo(np.float32).smallest_subnormal, np.finfo(np.float32).max]
    widths = []
    for k in range(65):
        q = MantissaErasure(k).fit(X)
        widths.append(q.bits_per_vector // 5)
        if k <= 29:
            np.testing.assert_array_equal(q.transform(X).astype(np.float32), X)
    assert widths[:30] == [32] * 30
    assert widths[30:53] == list(range(31, 8, -1))  # one mantissa bit per erased bit
    assert widths[53:] == [8, 7, 6, 5, 4, 3, 2, 2, 2, 2, 1, 0]  # exponent, then sign
    # At 60 erased bits the sign and whether |x| >= 2 survive: 4 distinct values.
    x = np.array([[0.5, 3, -0.5, -3, 1e-30, 1e30]], np.float32)
    assert len(np.unique(MantissaErasure(60).fit(x).transform(x))) == 2 ** widths[60]
    assert [MantissaErasure(k, dtype="float32").fit(X).bits_per_vector // 5
            for k in range(33)] == list(range(32, -1, -1))


@pytest.mark.parametrize("n_bits", [0, 1, 13, 23, 31, 32])
def test_mantissa_erasure_on_float32_masks_the_features_own_bits(n_bits, features):
    out = MantissaErasure(n_bits, dtype="float32").fit(features).transform(features)
    assert out.dtype == np.float32
    mask = np.uint32((0xFFFFFFFF << n_bits) & 0xFFFFFFFF)
    np.testing.assert_array_equal(out.view(np.uint32), features.view(np.uint32) & mask)
