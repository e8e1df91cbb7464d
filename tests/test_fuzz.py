"""Fuzzing the library's entry points: any input gives a result or a clear error.

Hypothesis draws arbitrary shapes, dtypes and values (NaN, inf, huge, subnormal, empty,
integer, boolean, complex) for the stressors, the SVM solver, the metrics and the
features-file reader.  Every outcome must be either a result that holds no NaN or inf
where the input held none, or a ``ValueError`` / ``TypeError`` whose message is not
empty: never another exception type from deep inside numpy, a NaN score or a hang
(each example has a deadline).
"""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dnnstress.classify import fit_linear_svms, l2_normalize
from dnnstress.features import FeatureSet
from dnnstress.metrics import accuracy, average_precision, mean_average_precision
from dnnstress.stress import (Identity, MantissaErasure, PCADrop, RandomDrop,
                              UniformQuantizer, make_fc)

FUZZ = settings(max_examples=60, deadline=5000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

FLOATS = st.sampled_from([np.float32, np.float64])
OTHER_DTYPES = st.sampled_from([np.float16, np.int32, np.uint8, np.bool_, np.complex64,
                                np.longdouble])
ORDINARY = st.floats(-1e3, 1e3, width=32)
FINITE_EXTREMES = st.sampled_from([0.0, -0.0, 1e-310, 1e-45, 3.0e38, -3.0e38, 1.7e308, 65504.0])
NON_FINITE = st.sampled_from([np.nan, np.inf, -np.inf])


@st.composite
def matrices(draw, max_rows=7, max_cols=6, rows=None):
    """Mostly well-formed float matrices, often with extreme values, sometimes hostile:
    another rank, dtype, emptiness, or NaN and inf (each drawn per array, so that both
    clean and hostile arrays are common)."""
    ndim = draw(st.sampled_from([2] * 6 + [1, 0, 3]))
    shape = tuple(rows if (i == 0 and rows is not None) else
                  draw(st.integers(0 if draw(st.booleans()) else 1,
                                   max_rows if i == 0 else max_cols)) for i in range(ndim))
    kinds = [ORDINARY]
    if draw(st.integers(0, 2)) == 0:
        kinds.append(FINITE_EXTREMES)
    if draw(st.integers(0, 3)) == 0:
        kinds.append(NON_FINITE)
    values = draw(hnp.arrays(np.float64, shape, elements=st.one_of(*kinds)))
    dtype = draw(FLOATS if draw(st.integers(0, 3)) else OTHER_DTYPES)
    with np.errstate(all="ignore"):
        return values.astype(dtype)


@st.composite
def label_sets(draw, n_rows):
    """Targets for ``n_rows`` samples: {1, -1, 0} matrices, class vectors, or anything."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        n_labels = draw(st.integers(1, 3))
        return draw(hnp.arrays(np.int8, (n_rows, n_labels), elements=st.sampled_from([1, -1, 0])))
    if kind == 1:
        return draw(hnp.arrays(np.int64, (n_rows,), elements=st.integers(0, 3)))
    return draw(matrices(max_rows=n_rows + 1, max_cols=3))


def _clean(X):
    return isinstance(X, np.ndarray) and X.dtype.kind == "f" and np.isfinite(X).all()


def outcome(call, *inputs):
    """Run ``call``; a ValueError/TypeError with a message is a fine answer, any other
    exception fails.  Returns the result, or None when refused."""
    try:
        # A silent overflow or invalid operation inside is a defect too (underflow to a
        # subnormal or zero is ordinary IEEE arithmetic).
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            return call()
    except (ValueError, TypeError) as error:
        assert str(error).strip(), f"{type(error).__name__} without a message"
        return None


STRESSORS = [
    lambda: Identity(), lambda: RandomDrop(2, random_state=0), lambda: PCADrop(2),
    lambda: PCADrop(), lambda: UniformQuantizer(1), lambda: UniformQuantizer(3),
    lambda: UniformQuantizer(256, per_dimension=True), lambda: MantissaErasure(10),
    lambda: MantissaErasure(60), lambda: make_fc(2, 4),
]


@FUZZ
@given(index=st.integers(0, len(STRESSORS) - 1), train=matrices(), test=matrices())
def test_stressors_answer_any_input_with_a_result_or_a_clear_error(index, train, test):
    stressor = STRESSORS[index]()
    fitted = outcome(lambda: stressor.fit(train))
    if fitted is None:
        return
    result = outcome(lambda: stressor.transform(test))
    if result is not None and _clean(test) and test.dtype.itemsize >= 4:
        assert np.isfinite(result).all(), "finite input gave NaN/inf output"


@FUZZ
@given(levels=st.one_of(st.integers(-3, 70000), st.booleans(), st.floats(), st.none(),
                        st.text(max_size=3)),
       bits=st.one_of(st.integers(-3, 70), st.booleans(), st.floats(), st.none()))
def test_stressor_parameters_are_validated(levels, bits):
    X = np.linspace(0, 1, 12, dtype=np.float32).reshape(4, 3)
    for stressor in (UniformQuantizer(levels), MantissaErasure(bits)):
        result = outcome(lambda: stressor.fit(X).transform(X))
        if result is not None:
            assert np.isfinite(result).all()


@FUZZ
@given(data=st.data(), stack=st.booleans())
def test_the_svm_solver_gives_finite_models_or_a_clear_error(data, stack):
    X = data.draw(matrices(max_rows=8, max_cols=5))
    labels = data.draw(label_sets(X.shape[0] if X.ndim else 1))
    X = X[None] if stack and X.ndim == 2 else X
    result = outcome(lambda: fit_linear_svms(X, labels, max_iter=50))
    if result is not None:
        W, b, info = result
        assert np.isfinite(np.asarray(W)).all() and np.isfinite(np.asarray(b)).all()
        assert np.isfinite(info["objective"]).all()


@FUZZ
@given(X=matrices())
def test_l2_normalize_gives_unit_or_zero_rows_or_a_clear_error(X):
    result = outcome(lambda: l2_normalize(X))
    if result is not None and _clean(X) and result.size:
        norms = np.linalg.norm(result.astype(np.float64), axis=1)
        assert np.all((np.abs(norms - 1) < 1e-3) | (norms == 0))


@FUZZ
@given(data=st.data(), method=st.sampled_from(["voc07", "area", "bogus"]))
def test_metrics_give_a_score_in_range_or_a_clear_error(data, method):
    scores = data.draw(matrices(max_rows=9, max_cols=3))
    labels = data.draw(label_sets(scores.shape[0] if scores.ndim else 1))
    predictions = data.draw(label_sets(scores.shape[0] if scores.ndim else 1))
    for metric in (lambda: average_precision(scores, labels, method),
                   lambda: mean_average_precision(scores, labels, method),
                   lambda: accuracy(labels, predictions)):
        result = outcome(metric)
        if result is not None:
            assert 0.0 <= float(result) <= 1.0, result


@st.composite
def npz_files(draw):
    """Bytes of an npz (or not) file: real arrays under the expected keys or others."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    buffer = io.BytesIO()
    keys = draw(st.lists(st.sampled_from(["train_x", "train_y", "test_x", "test_y",
                                          "metadata", "class_names", "other"]),
                         unique=True, max_size=7))
    arrays = {key: draw(matrices(max_rows=5, max_cols=4)) for key in keys}
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    if draw(st.booleans()) and data:  # flip a byte somewhere
        position = draw(st.integers(0, len(data) - 1))
        data = data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1:]
    return data


@FUZZ
@given(content=npz_files())
def test_features_files_load_or_are_refused_clearly(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "features.npz"
    path.write_bytes(content)
    features = outcome(lambda: FeatureSet.load(path))
    if features is not None:
        assert features.train_x.shape[1] == features.test_x.shape[1]
        assert np.isfinite(features.train_x).all() and np.isfinite(features.test_x).all()


def test_a_valid_file_passes_the_same_check(tmp_path):
    # The loader must not satisfy the fuzz by refusing everything.
    rng = np.random.default_rng(0)
    path = FeatureSet(rng.random((4, 3)).astype(np.float32), np.arange(4) % 2,
                      rng.random((2, 3)).astype(np.float32), np.arange(2)).save(
                          tmp_path / "ok.npz")
    assert outcome(lambda: FeatureSet.load(path)).train_x.shape == (4, 3)
