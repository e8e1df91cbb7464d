"""LinearSVM and the batched solver against scikit-learn's LinearSVC (LIBLINEAR)."""

import functools

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from dnnstress._array import to_numpy
import dnnstress.classify as classify
from dnnstress.classify import (IgnoredLabelWarning, LinearSVM, fit_linear_svms,
                                 l2_normalize, one_vs_rest_targets)


def objective(w, b, X, y, C=1.0, s=1.0):
    """LIBLINEAR's L2-loss SVC primal, written out; samples with y == 0 are left out."""
    X, y = X[y != 0].astype(np.float64), y[y != 0]
    bias = b / s  # the weight on the constant feature s
    hinge = np.maximum(0.0, 1.0 - y * (X @ w + b))
    return 0.5 * (w @ w + bias * bias) + C * np.sum(hinge**2)


def liblinear(X, y, C=1.0, s=1.0):
    """The reference: one LinearSVC on the samples with a non-zero binary target."""
    keep = y != 0
    svc = LinearSVC(C=C, intercept_scaling=s, tol=1e-5, max_iter=100_000)
    svc.fit(X[keep].astype(np.float64), y[keep])
    return svc.coef_[0], svc.intercept_[0]


def relu_features(rng, n, d, n_labels, signal):
    """Nonnegative, L2-normalised features whose labels a linear model partly predicts."""
    labels = rng.random((n, n_labels)) < 0.3
    latent = labels @ rng.standard_normal((n_labels, 16)) * signal + rng.standard_normal(
        (n, 16))
    X = np.maximum(latent @ rng.standard_normal((16, d)) + rng.standard_normal((n, d)) - 0.5,
                   0)
    return l2_normalize(X), np.where(labels, 1, -1).astype(np.int8)


def data_sets():
    """(name, train X, train Y (n, L) in {1,-1,0}, test X), deliberately varied."""
    rng = np.random.default_rng(0)
    sets = []
    # Separable: two well-apart clouds, few samples (n < d, the dual regime of LIBLINEAR).
    centre = rng.standard_normal(40) * 3
    X = np.vstack([rng.standard_normal((30, 40)) + centre, rng.standard_normal((30, 40))])
    y = np.repeat([1, -1], 30)[:, None].astype(np.int8)
    sets.append(("separable", X, y, rng.standard_normal((200, 40)) + centre / 2))
    # Overlapping binary problem on ReLU-like features, float32.
    X, Y = relu_features(rng, 500, 60, 1, signal=0.5)
    sets.append(("overlapping", X[:300].astype(np.float32), Y[:300], X[300:]))
    # Multi-label with ignored (0) entries, float64.
    X, Y = relu_features(rng, 600, 80, 4, signal=1.0)
    Y[rng.random(Y.shape) < 0.1] = 0
    sets.append(("multilabel", X[:400], Y[:400], X[400:]))
    return sets


@pytest.mark.parametrize("method", classify.METHODS)
@pytest.mark.parametrize("name, X, Y, X_test", data_sets(), ids=lambda v: v if isinstance(
    v, str) else "")
def test_matches_liblinear_objective_and_predictions(name, X, Y, X_test, method):
    W, b, info = fit_linear_svms(X[None], Y, method=method)
    assert info["converged"].all()
    for label in range(Y.shape[1]):
        w_ref, b_ref = liblinear(X, Y[:, label])
        ours = objective(W[0, label].astype(np.float64), float(b[0, label]), X, Y[:, label])
        ref = objective(w_ref, b_ref, X, Y[:, label])
        assert abs(ours - ref) <= 1e-3 * ref, (name, label, ours, ref)
        np.testing.assert_allclose(info["objective"][0, label], ours, rtol=1e-4)
        agree = np.mean(np.sign(X_test @ W[0, label] + b[0, label])
                        == np.sign(X_test @ w_ref + b_ref))
        assert agree >= 0.99, (name, label, agree)


@pytest.mark.parametrize("C, s", [(0.1, 1.0), (10.0, 0.5), (1.0, 3.0)])
def test_c_and_intercept_scaling_follow_liblinear(C, s):
    X, Y = relu_features(np.random.default_rng(1), 300, 30, 1, signal=0.7)
    W, b, _ = fit_linear_svms(X[None], Y, C=C, intercept_scaling=s, tol=1e-6)
    w_ref, b_ref = liblinear(X, Y[:, 0], C=C, s=s)
    ours = objective(W[0, 0], b[0, 0], X, Y[:, 0], C, s)
    ref = objective(w_ref, b_ref, X, Y[:, 0], C, s)
    assert abs(ours - ref) <= 1e-5 * ref
    np.testing.assert_allclose(b[0, 0], b_ref, atol=1e-3 * max(1.0, abs(b_ref)))


def test_multiclass_estimator_matches_sklearn_one_vs_rest():
    rng = np.random.default_rng(2)
    means = rng.standard_normal((4, 20)) * 1.5
    classes = np.array(["cat", "dog", "emu", "yak"])
    index = rng.integers(0, 4, 500)
    X = means[index] + rng.standard_normal((500, 20))
    y = classes[index]
    svm = LinearSVM().fit(X[:350], y[:350])
    ref = LinearSVC(C=1.0, tol=1e-5, max_iter=100_000).fit(X[:350], y[:350])
    np.testing.assert_array_equal(svm.classes_, ref.classes_)
    assert svm.coef_.shape == (4, 20) and svm.intercept_.shape == (4,)
    for k in range(4):
        target = np.where(y[:350] == classes[k], 1, -1)
        ours = objective(svm.coef_[k], svm.intercept_[k], X[:350], target)
        theirs = objective(ref.coef_[k], ref.intercept_[k], X[:350], target)
        assert abs(ours - theirs) <= 1e-3 * theirs
    assert np.mean(svm.predict(X[350:]) == ref.predict(X[350:])) >= 0.99
    assert svm.decision_function(X[350:]).shape == (150, 4)


def test_multilabel_estimator_predicts_signs():
    X, Y = relu_features(np.random.default_rng(3), 200, 30, 3, signal=2.0)
    svm = LinearSVM().fit(X, Y)
    assert svm.multilabel_ and list(svm.classes_) == [0, 1, 2]
    prediction = svm.predict(X)
    np.testing.assert_array_equal(prediction, np.where(svm.decision_function(X) > 0, 1, -1))
    assert np.mean(prediction == Y) > 0.8  # strong signal: mostly right on training data


def test_batch_equals_one_by_one_and_zero_padding_is_inert():
    rng = np.random.default_rng(4)
    X, Y = relu_features(rng, 300, 40, 3, signal=0.8)
    narrow = l2_normalize(X[:, :25])
    padded = np.concatenate([narrow, np.zeros((300, 15))], axis=1)
    quantized = l2_normalize(np.round(X * 4) / 4)
    batch = np.stack([X, padded, quantized])
    W, b, info = fit_linear_svms(batch, Y, tol=1e-8)
    assert info["n_iter"].shape == (3, 3) and info["converged"].all()
    for k, version in enumerate([X, narrow, quantized]):
        W1, b1, _ = fit_linear_svms(version[None], Y, tol=1e-8)
        d = version.shape[1]
        np.testing.assert_allclose(W[k, :, :d], W1[0], atol=1e-6)
        np.testing.assert_allclose(b[k], b1[0], atol=1e-6)
    np.testing.assert_array_equal(W[1, :, 25:], 0.0)


def test_newton_warm_start_reaches_the_same_solution():
    rng = np.random.default_rng(5)
    X, Y = relu_features(rng, 300, 40, 3, signal=0.8)
    neighbour = l2_normalize(np.round(X * 64) / 64)  # a Q-style neighbouring configuration
    fit = functools.partial(fit_linear_svms, method="newton")
    W_cold, b_cold, cold = fit(X[None], Y, tol=1e-8)
    W_near, b_near, _ = fit(neighbour[None], Y, tol=1e-4)
    W_warm, b_warm, warm = fit(X[None], Y, tol=1e-8, warm_start=(W_near[0], b_near[0]))
    np.testing.assert_allclose(W_warm, W_cold, atol=1e-6)
    np.testing.assert_allclose(b_warm, b_cold, atol=1e-6)
    assert 0 < warm["n_iter"].sum() < cold["n_iter"].sum()
    # Started at its own solution, nothing is left to do.
    _, _, again = fit(X[None], Y, tol=1e-4, warm_start=(W_cold[0], b_cold[0]))
    assert again["n_iter"].sum() == again["n_epochs"].sum() == 0
    assert again["n_hessian_products"] == 0


@pytest.mark.parametrize("density", [0.0, 1.0], ids=["dense", "csr"])
def test_the_dual_starts_at_zero_whatever_the_warm_start(monkeypatch, density):
    """The dual starts at 0 from a neighbour's solution, its own and one far worse than
    0: the epochs and weights of the cold start, bit for bit, dense and CSR rows."""
    monkeypatch.setattr(classify, "_SPARSE_DENSITY", density)
    X, Y = relu_features(np.random.default_rng(23), 300, 40, 3, signal=0.8)
    W, b, cold = fit_linear_svms(X[None], Y, method="dual")
    W_near, b_near, _ = fit_linear_svms(l2_normalize(np.round(X * 64) / 64)[None], Y)
    for start in ((W_near[0], b_near[0]), (W[0], b[0]), (-50 * W[0], 50 * b[0])):
        W_warm, b_warm, info = fit_linear_svms(X[None], Y, method="dual", warm_start=start)
        np.testing.assert_array_equal(info["n_epochs"], cold["n_epochs"])
        np.testing.assert_array_equal(W_warm, W)
        np.testing.assert_array_equal(b_warm, b)


def test_narrow_warm_start_is_zero_padded():
    X, Y = relu_features(np.random.default_rng(6), 200, 30, 2, signal=0.8)
    W_narrow, b_narrow, _ = fit_linear_svms(X[None, :, :20], Y)
    W, b, _ = fit_linear_svms(X[None], Y, tol=1e-8, warm_start=(W_narrow[0], b_narrow[0]))
    W_ref, b_ref, _ = fit_linear_svms(X[None], Y, tol=1e-8)
    np.testing.assert_allclose(W, W_ref, atol=1e-6)


@pytest.mark.parametrize("method", ["newton", "dual"])
def test_degenerate_problems_are_solved_not_nan(method):
    n = 50
    Y = np.stack([np.repeat([1, -1], 25), np.zeros(n), -np.ones(n)], axis=1).astype(np.int8)
    X = np.zeros((1, n, 5))  # all-zero features (the paper's h = 1 case): only the bias
    with pytest.warns(IgnoredLabelWarning, match=r"column\(s\) \[1\]"):
        W, b, info = fit_linear_svms(X, Y, tol=1e-10, method=method)
    assert info["converged"].all()
    np.testing.assert_array_equal(W, 0.0)
    # Balanced labels: bias 0; all ignored: nothing to fit; all negative: b minimises
    # 0.5 b^2 + n (1 + b)^2, so b = -2n / (1 + 2n).
    np.testing.assert_allclose(b[0], [0.0, 0.0, -2 * n / (1 + 2 * n)], atol=1e-9)


def test_float32_stays_float32():
    X, Y = relu_features(np.random.default_rng(7), 100, 10, 2, signal=1.0)
    W, b, _ = fit_linear_svms(X[None].astype(np.float32), Y)
    assert W.dtype == np.float32 and b.dtype == np.float32


@pytest.mark.parametrize("X, Y, kwargs, error, match", [
    (np.ones((5, 3)), np.ones((5, 1)), {}, ValueError, "3-D"),
    (np.ones((1, 5, 3)), np.full((5, 1), 2), {}, ValueError, "only 1"),
    (np.ones((1, 5, 3)), np.ones((4, 1)), {}, ValueError, "shape"),
    (np.ones((1, 5, 3), dtype=np.int64), np.ones((5, 1)), {}, TypeError, "dtype"),
    (np.full((1, 5, 3), np.nan), np.ones((5, 1)), {}, ValueError, "NaN"),
    (np.ones((1, 5, 3)), np.ones((5, 1)), {"C": 0.0}, ValueError, "C must be"),
    (np.ones((1, 5, 3)), np.ones((5, 1)), {"max_iter": 0}, ValueError, "max_iter"),
    (np.ones((1, 5, 3)), np.ones((5, 1)), {"warm_start": (np.ones((1, 4)), np.ones(1))},
     ValueError, "warm_start"),
])
def test_bad_input_is_refused_clearly(X, Y, kwargs, error, match):
    with pytest.raises(error, match=match):
        fit_linear_svms(X, Y, **kwargs)


def test_estimator_refuses_single_class_and_unfitted_use():
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearSVM().fit(np.ones((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="not fitted"):
        LinearSVM().predict(np.ones((4, 2)))


def test_estimator_follows_the_sklearn_contract():
    from sklearn.base import clone
    svm = LinearSVM(C=0.5, tol=1e-3)
    assert clone(svm).get_params() == {"C": 0.5, "tol": 1e-3, "max_iter": 1000,
                                       "intercept_scaling": 1.0}
    X, Y = relu_features(np.random.default_rng(8), 50, 5, 1, signal=1.0)
    assert svm.fit(X, Y) is svm and svm.n_features_in_ == 5


def test_l2_normalize():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [1e30, 1e30]], dtype=np.float32)
    out = l2_normalize(X)
    assert out.dtype == np.float32
    expected = np.array([[0.6, 0.8], [0.0, 0.0], [2**-0.5, 2**-0.5]])
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="2-D"):
        l2_normalize(np.ones(3))


@pytest.mark.gpu
def test_cupy_matches_numpy(cupy):
    X, Y = relu_features(np.random.default_rng(9), 300, 40, 3, signal=0.8)
    W, b, _ = fit_linear_svms(X[None], Y, tol=1e-8)
    W_gpu, b_gpu, _ = fit_linear_svms(cupy.asarray(X[None]), cupy.asarray(Y), tol=1e-8)
    assert type(W_gpu).__module__.startswith("cupy")
    np.testing.assert_allclose(to_numpy(W_gpu), W, atol=1e-6)
    np.testing.assert_allclose(to_numpy(b_gpu), b, atol=1e-6)
    svm = LinearSVM().fit(cupy.asarray(X), cupy.asarray(Y))
    assert type(svm.predict(cupy.asarray(X))).__module__.startswith("cupy")


class DeviceArray(np.ndarray):
    """A numpy array posing as a GPU array: every read of a value by the host (``bool``,
    ``float``, ``int``, ``item``), which on CuPy waits for the device, is counted."""

    host_reads = 0

    def _read(self, convert):
        DeviceArray.host_reads += 1
        return convert(self.view(np.ndarray))

    def __bool__(self):
        return self._read(bool)

    def __float__(self):
        return self._read(float)

    def __int__(self):
        return self._read(int)

    def item(self, *args):
        return self._read(lambda a: a.item(*args))


class SpyNamespace:
    """numpy as the solver sees CuPy (``xp is not numpy``): results are DeviceArrays and
    the operands of every ``matmul`` are recorded."""

    def __init__(self):
        self.matmul_operands = []

    def __getattr__(self, name):
        attr = getattr(np, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        def device_result(*args, **kwargs):
            out = attr(*args, **kwargs)
            return out.view(DeviceArray) if isinstance(out, np.ndarray) else out
        return device_result

    def matmul(self, a, b, out=None):
        self.matmul_operands.append((a, b, out))
        return np.matmul(a, b, out=out).view(DeviceArray)


@pytest.fixture
def spy(monkeypatch):
    namespace = SpyNamespace()
    monkeypatch.setattr(classify, "array_namespace", lambda *arrays: namespace)
    DeviceArray.host_reads = 0
    return namespace


def test_products_are_2d_gemms_on_contiguous_operands(spy):
    """CuPy copies a non-contiguous matmul operand (a batched matmul on the transposed
    view X.T did, every product): every operand must be a C- or F-contiguous matrix."""
    X, Y = relu_features(np.random.default_rng(10), 200, 30, 2, signal=0.8)
    batch = np.stack([X, l2_normalize(np.round(X * 4) / 4)])
    W, b, info = fit_linear_svms(batch.view(DeviceArray), Y.view(DeviceArray))
    assert len(spy.matmul_operands) >= 4 * info["n_hessian_products"]
    for a, c, out in spy.matmul_operands:
        for operand in (a, c):
            assert operand.ndim == 2
            assert operand.flags.c_contiguous or operand.flags.f_contiguous
        assert out is not None and out.flags.c_contiguous  # cuBLAS writes it in place
    # The device branch (sparser host checks, extra masked steps) finds the same result.
    W_np, b_np, info_np = fit_linear_svms(batch, Y, method="newton")
    np.testing.assert_array_equal(W, W_np)
    np.testing.assert_array_equal(b, b_np)
    np.testing.assert_array_equal(info["n_iter"], info_np["n_iter"])


def test_host_reads_per_fit_are_few(spy):
    """On a GPU every bool() of a device flag is a sync: one per Newton step, one per
    line search and one per four CG steps, not one per CG and line-search step."""
    X, Y = relu_features(np.random.default_rng(4), 300, 40, 3, signal=0.8)
    _, _, info = fit_linear_svms(X[None].view(DeviceArray), Y.view(DeviceArray), tol=1e-6)
    newton_steps = int(info["n_iter"].max())
    assert info["n_hessian_products"] > 40  # enough CG steps for the count to matter
    bound = info["n_hessian_products"] / 4 + 3 * (newton_steps + 1) + 5
    assert DeviceArray.host_reads <= bound, (DeviceArray.host_reads, bound)


def test_float16_trains_in_float32_and_matches_its_float32_copy():
    X, Y = relu_features(np.random.default_rng(11), 300, 40, 2, signal=0.8)
    X16 = (X * 3000).astype(np.float16)  # large values: squares overflow float16
    W16, b16, info16 = fit_linear_svms(X16[None], Y)
    W32, b32, info32 = fit_linear_svms(X16.astype(np.float32)[None], Y)
    assert W16.dtype == np.float32 and info16["converged"].all()
    np.testing.assert_array_equal(W16, W32)
    np.testing.assert_array_equal(info16["objective"], info32["objective"])
    normalized = l2_normalize(X16)
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(normalized, l2_normalize(X16.astype(np.float32)), rtol=1e-6)


@pytest.mark.parametrize("method, X", [
    ("newton", np.full((1, 4, 2), 3e38, dtype=np.float32)),  # products overflow float32
    # The dual kernel sums float32 in float64 (and solves the case above); float64's
    # own range overflows in the gradient at 0.
    ("dual", np.full((1, 4, 2), 1e308)), ("auto", np.full((1, 4, 2), 1e308))])
def test_an_overflowed_solve_is_refused(method, X):
    with pytest.raises(ValueError, match="overflowed"):
        fit_linear_svms(X, np.array([[1], [1], [1], [-1]]), method=method)


def test_bool_label_matrix_means_present_or_absent():
    X, Y = relu_features(np.random.default_rng(12), 100, 10, 2, signal=1.0)
    present = Y > 0
    W, b, _ = fit_linear_svms(X[None], present)
    W_ref, b_ref, _ = fit_linear_svms(X[None], Y)  # False is -1, not 0 ("ignored")
    np.testing.assert_array_equal(W, W_ref)
    targets, _, multilabel = one_vs_rest_targets(present, 100, np)
    assert multilabel and targets.dtype == np.int8 and set(np.unique(targets)) == {-1, 1}


@pytest.mark.parametrize("y", [np.array([0.0, 1.0, np.nan, 1.0]),
                               np.array([[1.0], [-1.0], [np.nan], [1.0]])])
def test_nan_labels_are_refused(y):
    with pytest.raises(ValueError, match="NaN"):
        LinearSVM().fit(np.eye(4), y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_l2_normalize_matches_the_array_api_twin_and_float64(dtype):
    rng = np.random.default_rng(13)
    scale = 10.0 ** rng.integers(-30, 30, (50, 1)) if dtype == np.float32 else 10.0 ** (
        rng.integers(-300, 300, (50, 1)))  # squares beyond float64 for the latter
    X = (np.maximum(rng.standard_normal((50, 300)), 0) * scale).astype(dtype)
    X[3] = 0
    out = l2_normalize(X)
    assert out.dtype == dtype
    tolerance = dict(rtol=8 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny)
    np.testing.assert_allclose(out, classify._l2_normalize_array_api(X), **tolerance)
    peak = np.abs(X.astype(np.float64)).max(axis=1, keepdims=True)
    reference = X.astype(np.float64) / np.where(peak > 0, peak, 1)
    reference /= np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-300)
    np.testing.assert_allclose(out, reference, **tolerance)
    np.testing.assert_array_equal(out[3], 0.0)
    for bad in (np.inf, -np.inf, np.nan):
        broken = X.copy()
        broken[7, 5] = bad
        broken[3, 0] = bad  # in an otherwise zero row too
        with pytest.raises(ValueError, match=r"NaN or infinite values \(in 2 row"):
            l2_normalize(broken)


def small_feature_set(dtype=np.float32):
    """A 4-class problem of ReLU features (train 160, test 80, 24-d), as a FeatureSet."""
    from dnnstress.features import FeatureSet
    rng = np.random.default_rng(14)
    means = rng.standard_normal((4, 24)) * 1.2
    index = rng.integers(0, 4, 240)
    X = np.maximum(means[index] + rng.standard_normal((240, 24)), 0) * 50
    return FeatureSet(X[:160].astype(dtype), index[:160], X[160:].astype(dtype),
                      index[160:])


def sweep_scores(tmp_path, name, features, **kwargs):
    from dnnstress.sweep import Grid, run_sweep
    from dnnstress.sweep.store import read_results, row_key
    grid = Grid(levels=(2, 3, 5, 9), fc_levels=(2, 4), dr_steps=(4, 10, 20),
                fc_steps=(3, 6), erased_bits=(0, 40), repeats=1)
    run_sweep(features, tmp_path / name, grid=grid, progress=False,
              experiments="dr1,dr2,q1,q2,fc,qb", **kwargs)
    return {row_key(row): float(row["score"]) for row in read_results(tmp_path / name)}


def test_sweep_rows_do_not_depend_on_the_batch(tmp_path):
    features = small_feature_set()
    one = sweep_scores(tmp_path, "b1", features, batch=1)
    eight = sweep_scores(tmp_path, "b8", features, batch=8)
    assert one.keys() == eight.keys() and len(one) > 16
    # Padding and batching change only rounding: at most one of 80 test predictions.
    for key in one:
        assert abs(one[key] - eight[key]) <= 1 / 80 + 1e-12, (key, one[key], eight[key])
    assert sum(one[key] != eight[key] for key in one) <= 2


def test_float16_features_score_as_their_float32_copy(tmp_path):
    features = small_feature_set(np.float16)
    as_float32 = small_feature_set(np.float16)
    as_float32.train_x = as_float32.train_x.astype(np.float32)
    as_float32.test_x = as_float32.test_x.astype(np.float32)
    half = sweep_scores(tmp_path, "f16", features)
    single = sweep_scores(tmp_path, "f32", as_float32)
    assert half == single  # every row, Q-B included: the sweep runs in float32
    baseline = [key for key in half if key[0] == "baseline"][0]
    assert half[baseline] > 0.5  # well above chance (0.25)


def test_cuml_solver_matches_ours():
    pytest.importorskip("cuml", reason="cuML (RAPIDS) is not installed")
    X, Y = relu_features(np.random.default_rng(15), 300, 40, 3, signal=0.8)
    Y[:5, 0] = 0
    _, _, ours = fit_linear_svms(X[None], Y, tol=1e-6)
    W, b, theirs = fit_linear_svms(X[None], Y, tol=1e-6, solver="cuml")
    np.testing.assert_allclose(theirs["objective"], ours["objective"], rtol=1e-3)
    for label in range(3):
        ref = objective(W[0, label], b[0, label], X, Y[:, label])
        np.testing.assert_allclose(theirs["objective"][0, label], ref, rtol=1e-5)


def test_missing_cuml_is_a_clear_error(monkeypatch, tmp_path):
    import sys
    monkeypatch.setitem(sys.modules, "cuml", None)  # import cuml now fails everywhere
    X, Y = relu_features(np.random.default_rng(16), 50, 5, 1, signal=1.0)
    with pytest.raises(RuntimeError, match="pip install cuml-cu12"):
        fit_linear_svms(X[None], Y, solver="cuml")
    from dnnstress.sweep import run_sweep
    with pytest.raises(RuntimeError, match="needs RAPIDS cuML"):
        run_sweep(small_feature_set(), tmp_path / "out", experiments="baseline",
                  solver="cuml", progress=False)
    assert not (tmp_path / "out" / "results.csv").exists()  # refused before writing
    with pytest.raises(ValueError, match="solver must be one of"):
        fit_linear_svms(X[None], Y, solver="liblinear")


def test_sweep_command_takes_batch_and_solver(tmp_path, capsys):
    from dnnstress.cli import main
    from dnnstress.sweep.store import read_results
    path = small_feature_set().save(tmp_path / "features.npz")
    command = ["sweep", str(path), "--experiments", "q2", "--levels", "2,3,4", "--quiet"]
    assert main(command + ["--out", str(tmp_path / "b3"), "--batch", "3"]) == 0
    assert main(command + ["--out", str(tmp_path / "b1"), "--batch", "1",
                           "--solver", "ours"]) == 0
    scores = [{row["n_levels"]: float(row["score"]) for row in read_results(tmp_path / name)
               if row["experiment"] == "q2"} for name in ("b3", "b1")]
    assert scores[0].keys() == {2, 3, 4} and scores[0] == pytest.approx(scores[1], abs=1 / 80)
    with pytest.raises(SystemExit):
        main(command + ["--out", str(tmp_path / "bad"), "--batch", "0"])
    assert "--batch" in capsys.readouterr().err


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 1e-5)])
def test_dual_and_newton_reach_the_same_solution(dtype, tol):
    """Two methods, one objective and one stopping rule: the same weights, batched and
    zero-padded too, and the dual's reported objective is that of its weights."""
    rng = np.random.default_rng(17)
    X, Y = relu_features(rng, 400, 50, 4, signal=0.8)
    Y[rng.random(Y.shape) < 0.05] = 0
    narrow = np.concatenate([l2_normalize(X[:, :30]), np.zeros((400, 20))], axis=1)
    batch = np.stack([X, narrow]).astype(dtype)
    W_dual, b_dual, dual = fit_linear_svms(batch, Y, tol=tol, method="dual")
    W_newton, b_newton, newton = fit_linear_svms(batch, Y, tol=tol, method="newton")
    assert dual["converged"].all() and newton["converged"].all()
    assert dual["n_hessian_products"] == 0 and dual["n_epochs"].min() > 0
    atol = 1e-6 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(W_dual, W_newton, atol=atol)
    np.testing.assert_allclose(b_dual, b_newton, atol=atol)
    np.testing.assert_array_equal(W_dual[1, :, 30:], 0.0)
    np.testing.assert_allclose(dual["objective"], newton["objective"], rtol=10 * tol)
    for k in range(2):
        for label in range(4):
            written_out = objective(W_dual[k, label].astype(np.float64),
                                    float(b_dual[k, label]), batch[k], Y[:, label])
            np.testing.assert_allclose(dual["objective"][k, label], written_out, rtol=1e-10)


def primal_gradient_norm(w, b, X, y, C=1.0, s=1.0):
    """The norm of the gradient of :func:`objective` in (w, b / s), written out."""
    X, y = X[y != 0].astype(np.float64), y[y != 0]
    hinge = np.maximum(0.0, 1.0 - y * (X @ w + b))
    step = -2.0 * C * y * hinge
    return np.hypot(np.linalg.norm(w + X.T @ step), b / s + s * step.sum())


def unnormalised_blobs(rng, n=350):
    """Four Gaussian classes in 20-d, not normalised: objectives of 0.2 - 0.5, where the
    gradient rule's bound tau^2 / 2 is 0.5 - 1.5 % of the objective."""
    means = rng.standard_normal((4, 20)) * 1.5
    index = rng.integers(0, 4, n)
    X = means[index] + rng.standard_normal((n, 20))
    return X, np.where(index[:, None] == np.arange(4), 1, -1).astype(np.int8)


@pytest.mark.parametrize("density", [0.0, 1.0], ids=["dense", "csr"])
@pytest.mark.parametrize("features", ["relu", "blobs"])
def test_the_dual_stops_only_where_its_gap_certifies_the_primal_rule(monkeypatch, density,
                                                                      features):
    """Stopped by the duality gap, the weights are within the primal rule's distance tau
    of the optimum and the objective within min(tau^2 / 2, tol * f) of the optimal one
    (against a fit to tol 1e-11); and some problems do stop by the gap, before their
    gradient is below tau, so the certificate is what is tested."""
    monkeypatch.setattr(classify, "_SPARSE_DENSITY", density)
    rng = np.random.default_rng(23)
    if features == "relu":
        X, Y = relu_features(rng, 500, 40, 4, signal=0.8)
    else:
        X, Y = unnormalised_blobs(rng)
    tol = 1e-4
    W, b, info = fit_linear_svms(X[None], Y, tol=tol, method="dual")
    W_opt, b_opt, _ = fit_linear_svms(X[None], Y, tol=1e-11, method="newton")
    assert info["converged"].all()
    tau = to_numpy(classify._stopping_threshold(classify._Problem(X[None], Y, 1.0, 1.0),
                                                tol)[0])[0, 0]
    stopped_by_gap = 0
    for label in range(Y.shape[1]):
        w, w_opt = W[0, label], W_opt[0, label]
        distance = np.hypot(np.linalg.norm(w - w_opt), b[0, label] - b_opt[0, label])
        assert distance <= tau[label], (label, distance, tau[label])
        found = objective(w, b[0, label], X, Y[:, label])
        optimal = objective(w_opt, b_opt[0, label], X, Y[:, label])
        assert found - optimal <= min(0.5 * tau[label] ** 2, tol * found), (label, found,
                                                                           optimal)
        stopped_by_gap += primal_gradient_norm(w, b[0, label], X, Y[:, label]) > tau[label]
    assert stopped_by_gap > 0


def test_the_dual_objective_bounds_and_the_gap_estimate():
    """synchronize_weights' dual objective of any alpha >= 0 is the formula's, at most
    the primal optimum; and ``C sum PG_i^2`` (the kernel's stopping estimate) bounds the
    duality gap at that alpha from above."""
    from dnnstress import _svm_kernels

    rng = np.random.default_rng(24)
    X, Y = relu_features(rng, 120, 15, 3, signal=0.8)
    C, s = 0.7, 1.3
    alpha = rng.exponential(0.5, (1, 120, 3)) * (rng.random((1, 120, 3)) < 0.6)
    W = np.zeros((1, 3, 16))
    dual = np.empty((1, 3))
    empty = (np.zeros((1, 0), np.int64), np.zeros(0, np.int32), np.zeros(0))  # dense rows
    _svm_kernels.synchronize_weights(X[None], *empty, Y, s, C, alpha, W, np.ones((1, 3), bool),
                                     np.array([0, 3]), dual)
    W_opt, b_opt, _ = fit_linear_svms(X[None], Y, C=C, intercept_scaling=s, tol=1e-11,
                                      method="newton")
    X_bias = np.hstack([X, np.full((120, 1), s)])
    for label in range(3):
        a, y = alpha[0, :, label], Y[:, label]
        w = X_bias.T @ (a * y)
        np.testing.assert_allclose(W[0, label], w, rtol=1e-12)
        written_out = a.sum() - 0.5 * w @ w - a @ a / (4 * C)
        np.testing.assert_allclose(dual[0, label], written_out, rtol=1e-12)
        optimal = objective(W_opt[0, label], b_opt[0, label], X, y, C, s)
        assert dual[0, label] <= optimal
        gradient = y * (X_bias @ w) - 1 + a / (2 * C)
        projected = np.where(a > 0, gradient, np.minimum(gradient, 0))
        gap = objective(w[:-1], s * w[-1], X, y, C, s) - dual[0, label]
        assert 0 < gap <= C * np.sum(projected ** 2)


@pytest.mark.parametrize("density", [0.0, 1.0], ids=["dense", "csr"])
def test_dual_results_do_not_depend_on_the_label_groups(monkeypatch, density):
    """Labels solved together share the sample order, not results: one group, or one
    group per label, gives bit-identical weights (and so does any thread count), read
    as dense rows or as CSR rows."""
    X, Y = relu_features(np.random.default_rng(18), 200, 20, 5, signal=0.8)
    from dnnstress import _svm_kernels
    monkeypatch.setattr(classify, "_SPARSE_DENSITY", density)
    results = []
    for n_groups in (1, 2, 5):
        monkeypatch.setattr(_svm_kernels, "label_groups", lambda B, L, g=n_groups: (
            np.linspace(0, L, g + 1).round().astype(np.int64)))
        results.append(fit_linear_svms(X[None], Y, method="dual"))
    for W, b, info in results[1:]:
        np.testing.assert_array_equal(W, results[0][0])
        np.testing.assert_array_equal(b, results[0][1])
        np.testing.assert_array_equal(info["n_epochs"], results[0][2]["n_epochs"])


def test_auto_hands_unsolved_problems_to_newton(monkeypatch):
    """"auto" gives the dual a budget of epochs (here 2); Newton finishes from there,
    to the same solution as Newton alone, in fewer iterations."""
    X, Y = relu_features(np.random.default_rng(19), 300, 30, 3, signal=0.8)
    W_ref, b_ref, ref = fit_linear_svms(X[None], Y, tol=1e-8, method="newton")
    _, _, alone = fit_linear_svms(X[None], Y, tol=1e-8)  # the dual alone solves it
    assert alone["n_iter"].sum() == 0 and alone["converged"].all()
    assert alone["n_epochs"].min() > 2
    monkeypatch.setattr(classify, "_AUTO_DUAL_EPOCHS", 2)
    W, b, info = fit_linear_svms(X[None], Y, tol=1e-8)
    np.testing.assert_array_equal(info["n_epochs"], 2)
    assert info["converged"].all() and ref["converged"].all()
    assert 0 < info["n_hessian_products"] < ref["n_hessian_products"]
    np.testing.assert_allclose(W, W_ref, atol=1e-6)
    np.testing.assert_allclose(b, b_ref, atol=1e-6)


def test_dual_out_of_epochs_reports_not_converged():
    X, Y = relu_features(np.random.default_rng(20), 200, 20, 2, signal=0.8)
    _, _, info = fit_linear_svms(X[None], Y, tol=1e-10, max_iter=1, method="dual")
    assert not info["converged"].any() and (info["n_epochs"] == 1).all()
    with pytest.warns(ConvergenceWarning):
        LinearSVM(tol=1e-10, max_iter=1).fit(X, Y)


def test_bad_method_is_refused():
    X, Y = relu_features(np.random.default_rng(21), 20, 5, 1, signal=1.0)
    with pytest.raises(ValueError, match=r"must be one of \('auto', 'newton', 'dual'\)"):
        fit_linear_svms(X[None], Y, method="primal")


@pytest.mark.gpu
def test_cupy_auto_is_newton_and_dual_is_refused(cupy):
    X, Y = relu_features(np.random.default_rng(22), 100, 10, 2, signal=1.0)
    X_gpu, Y_gpu = cupy.asarray(X[None]), cupy.asarray(Y)
    _, _, info = fit_linear_svms(X_gpu, Y_gpu)
    assert info["n_hessian_products"] > 0 and info["n_epochs"].sum() == 0
    with pytest.raises(ValueError, match="numpy arrays"):
        fit_linear_svms(X_gpu, Y_gpu, method="dual")


def test_zero_columns_are_left_out_and_a_bias_only_problem_goes_to_newton(monkeypatch):
    """Columns zero in every version get weight exactly 0 (and cost nothing); with none
    left, "auto" solves the bias alone by Newton, whose step is exact there."""
    rng = np.random.default_rng(24)
    X, Y = relu_features(rng, 200, 12, 2, signal=0.8)
    X[:, [0, 5]] = 0
    W, b, info = fit_linear_svms(X[None], Y, tol=1e-8)
    assert info["n_epochs"].min() > 0
    np.testing.assert_array_equal(W[0, :, [0, 5]], 0.0)
    kept = np.delete(np.arange(12), [0, 5])
    W_narrow, b_narrow, _ = fit_linear_svms(X[None][:, :, kept], Y, tol=1e-8)
    np.testing.assert_array_equal(W[0][:, kept], W_narrow[0])
    np.testing.assert_array_equal(b, b_narrow)
    # Read as CSR rows, the zero columns stay in (the rows skip them): still exactly 0,
    # and the narrow problem's solution (to rounding: other products' sums).
    monkeypatch.setattr(classify, "_SPARSE_DENSITY", 1.0)
    W_csr, b_csr, _ = fit_linear_svms(X[None], Y, tol=1e-8)
    np.testing.assert_array_equal(W_csr[0, :, [0, 5]], 0.0)
    np.testing.assert_allclose(W_csr[0][:, kept], W_narrow[0], atol=1e-6)
    np.testing.assert_allclose(b_csr, b_narrow, atol=1e-6)
    Y_bias = np.where(np.arange(200) < 50, 1, -1)[:, None].astype(np.int8)
    W, b, info = fit_linear_svms(np.zeros((1, 200, 3)), Y_bias)
    assert info["n_epochs"].sum() == 0 and info["n_hessian_products"] == 1
    # 0.5 b^2 + 50 (1 - b)^2 + 150 (1 + b)^2 is least at b = -200 / 401.
    np.testing.assert_allclose(b[0, 0], -200 / 401, rtol=1e-12)
    np.testing.assert_array_equal(W, 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_rows_give_the_dense_solution(monkeypatch, dtype):
    """The dual kernels read very sparse features as CSR rows: the same problem, so the
    same solution (to rounding: the sums skip the zeros) and LIBLINEAR's objective."""
    rng = np.random.default_rng(25)
    X, Y = relu_features(rng, 300, 40, 3, signal=0.8)
    X = l2_normalize(np.where(rng.random(X.shape) < 0.08, X + 0.1, 0.0)).astype(dtype)
    batch = np.stack([X, np.roll(X, 1, axis=0)])
    found = {}
    for name, density in (("dense", 0.0), ("csr", 1.0)):
        monkeypatch.setattr(classify, "_SPARSE_DENSITY", density)
        tol = 1e-5 if dtype == np.float32 else 1e-8  # float32's floor is near 1e-6
        found[name] = fit_linear_svms(batch, Y, tol=tol, method="dual")
        assert found[name][2]["converged"].all()
    dense, csr = found["dense"], found["csr"]
    assert dense[2]["n_epochs"].min() > 0 and csr[2]["n_epochs"].min() > 0
    np.testing.assert_allclose(csr[0], dense[0], atol=1e-4)
    np.testing.assert_allclose(csr[2]["objective"], dense[2]["objective"], rtol=1e-6)
    for label in range(3):
        w_ref, b_ref = liblinear(X, Y[:, label])
        ref = objective(w_ref, b_ref, X, Y[:, label])
        assert abs(csr[2]["objective"][0, label] - ref) <= 1e-3 * ref


def test_sparse_rows_are_scipy_csr_in_the_dense_rows_types():
    """The kernels' CSR rows are scipy's CSR matrix of each version, and dense or CSR
    they are writable C-contiguous arrays of the same dtypes: numba then compiles each
    kernel once per dtype of X (a cold compilation costs seconds per kernel)."""
    import scipy.sparse

    from dnnstress import _svm_kernels

    rng = np.random.default_rng(3)
    X = np.where(rng.random((2, 30, 12)) < 0.05, rng.random((2, 30, 12)), 0.0)
    X = X.astype(np.float32)
    rows, indices, values = classify._sparse_rows(X, classify._census(X)[1])
    for k in range(2):
        csr = scipy.sparse.csr_matrix(X[k])
        start = rows[k, 0]
        np.testing.assert_array_equal(rows[k] - start, csr.indptr)
        np.testing.assert_array_equal(indices[start:rows[k, -1]], csr.indices)
        np.testing.assert_array_equal(values[start:rows[k, -1]], csr.data)
    ones = np.ones((2, 30, 12), np.float32)
    dense = classify._sparse_rows(ones, classify._census(ones)[1])
    assert dense[0].shape == (2, 0) and dense[1].size == 0 and dense[2].size == 0
    for sparse_array, dense_array in zip((rows, indices, values), dense):
        for array in (sparse_array, dense_array):
            assert array.flags.c_contiguous and array.flags.writeable
        assert (sparse_array.dtype, sparse_array.ndim) == (dense_array.dtype, dense_array.ndim)
    # A fit of each kind in float32 adds at most one float32 specialisation per kernel.
    Y = np.where(np.arange(30) % 2, 1, -1)[:, None].astype(np.int8)
    for features in (X[:1] + 0.0, np.ones((1, 30, 12), np.float32) + X[:1]):
        fit_linear_svms(features, Y, method="dual")
    for kernel in (_svm_kernels.dual_coordinate_descent, _svm_kernels.synchronize_weights,
                   _svm_kernels.primal_check, _svm_kernels.scan_rows,
                   _svm_kernels.fill_rows):
        float32 = [s for s in kernel.signatures if str(s[0].dtype) == "float32"]
        assert len(float32) == 1, (kernel.__name__, float32)
