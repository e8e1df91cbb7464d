"""DR-1 and DR-2 against sklearn's PCA, hand-made cases and their structural properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA

from dnnstress._array import to_numpy
from dnnstress.stress import PCADrop, RandomDrop


def correlated(n, d, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.linspace(3.0, 0.1, d)  # distinct variances: a well-defined basis
    mixing = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return (rng.standard_normal((n, d)) * scales) @ mixing.T + rng.standard_normal(d)


@pytest.mark.parametrize("n, d", [(200, 12), (15, 40)])  # covariance and Gram routes
def test_pca_components_equal_sklearn_up_to_sign(n, d):
    X = correlated(n, d)
    k = min(8, n - 1)
    ours = PCADrop(k).fit(X)
    reference = PCA(n_components=k, svd_solver="full").fit(X)
    signs = np.sign(np.sum(ours.components_[:k] * reference.components_, axis=1))
    np.testing.assert_allclose(ours.components_[:k], reference.components_ * signs[:, None],
                               atol=1e-8)
    np.testing.assert_allclose(ours.explained_variance_[:k], reference.explained_variance_,
                               rtol=1e-8)
    # Projection is X @ V_k without centring (reference README, DR-2).
    np.testing.assert_allclose(ours.transform(X), X @ (reference.components_ * signs[:, None]).T,
                               atol=1e-8)


def test_pca_signs_are_deterministic():
    X = correlated(100, 6)
    components = PCADrop().fit(X).components_
    largest = np.abs(components).argmax(axis=1)
    assert (components[np.arange(6), largest] > 0).all()
    np.testing.assert_array_equal(PCADrop().fit(X.copy()).components_, components)


def test_pca_full_basis_preserves_dot_products(xp):
    X = correlated(80, 10).astype(np.float32)
    device_x = xp.asarray(X)
    projected = PCADrop().fit(device_x).transform(device_x)
    assert type(projected) is type(device_x) and projected.dtype == np.float32
    np.testing.assert_allclose(to_numpy(projected @ projected.T), X @ X.T, rtol=1e-4, atol=1e-3)


def test_one_pca_fit_serves_every_k():
    X = correlated(60, 9)
    pca = PCADrop().fit(X)
    full = pca.transform(X)
    for k in (1, 4, 9):
        pca.set_params(n_components=k)
        assert pca.n_features_out_ == k and pca.bits_per_vector == 32 * k
        np.testing.assert_allclose(pca.transform(X), full[:, :k])


def test_gram_route_limits_components():
    X = correlated(6, 30)
    with pytest.raises(ValueError, match="n_components"):
        PCADrop(10).fit(X)
    assert PCADrop(5).fit(X).transform(X).shape == (6, 5)


def test_random_drop_keeps_exactly_the_chosen_columns():
    X = np.arange(40, dtype=np.float64).reshape(4, 10)
    drop = RandomDrop(4, random_state=3).fit(X)
    assert len(set(drop.indices_)) == 4
    np.testing.assert_array_equal(drop.transform(X), X[:, drop.indices_])
    np.testing.assert_array_equal(drop.transform(X + 1), X[:, drop.indices_] + 1)


@settings(max_examples=50, deadline=None)
@given(d=st.integers(2, 60), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_random_drop_subsets_are_nested_and_seeded(d, seed, data):
    X = np.ones((2, d))
    small, large = sorted(data.draw(st.lists(st.integers(1, d), min_size=2, max_size=2)))
    kept_small = set(RandomDrop(small, random_state=seed).fit(X).indices_)
    kept_large = set(RandomDrop(large, random_state=seed).fit(X).indices_)
    assert len(kept_small) == small and kept_small <= kept_large
    again = RandomDrop(small, random_state=seed).fit(X).indices_
    assert set(again) == kept_small


def test_random_drop_seeds_differ():
    X = np.ones((2, 1000))
    a = RandomDrop(10, random_state=0).fit(X).indices_
    b = RandomDrop(10, random_state=1).fit(X).indices_
    assert set(a) != set(b)


def test_random_drop_on_every_backend(xp):
    X = correlated(20, 15).astype(np.float32)
    drop = RandomDrop(5, random_state=0).fit(xp.asarray(X))
    np.testing.assert_array_equal(to_numpy(drop.transform(xp.asarray(X))), X[:, drop.indices_])


def test_float32_gram_route_matches_the_float64_fit():
    # Float32 features take the products in float32 (twice as fast), from a float64
    # Gram: the leading directions stay those of the exact float64 fit, each to what a
    # float32 rounding of the covariance (eps * largest variance) can turn it, which is
    # that over its gap to the nearest other variance (Davis-Kahan).  Measured: 0.02 -
    # 0.06 of this bound; entrywise 3e-6 for two directions whose variances are 1e-3
    # of the largest apart (on AVX-512 BLAS; under 1e-6 on AVX2), 1e-6 elsewhere.
    rng = np.random.default_rng(3)
    X = np.maximum(correlated(120, 400, seed=3) + rng.standard_normal(400), 0).astype(np.float32)
    ours = PCADrop().fit(X)
    exact = PCA(svd_solver="full").fit(X.astype(np.float64))
    k, variances = 32, exact.explained_variance_
    gaps = np.minimum(np.abs(np.diff(variances[:k + 1])),
                      np.abs(np.diff(variances[:k], prepend=np.inf)))
    bound = np.finfo(np.float32).eps * variances[0] / gaps
    signs = np.sign(np.sum(ours.components_[:k] * exact.components_[:k], axis=1))
    error = np.abs(ours.components_[:k] - exact.components_[:k] * signs[:, None]).max(axis=1)
    assert (error <= bound).all(), (error / bound).max()
    assert error.max() < 1e-5  # a near-tie's wider bound must not hide a wrong direction
    np.testing.assert_allclose(ours.explained_variance_[:k], exact.explained_variance_[:k],
                               rtol=1e-6)
    assert ours.components_.dtype == np.float64


@pytest.mark.parametrize("n, d", [(60, 6000), (3000, 60)])  # Gram and covariance routes
def test_pca_fit_holds_no_float64_copy_of_the_data(monkeypatch, n, d):
    # Centring one block at a time: the fit allocates its result plus a few blocks, never
    # a float64 copy of X (several of them made a 1 GB GoogLeNet layer peak at 9.2 GB).
    import tracemalloc

    from dnnstress.stress import reduce

    monkeypatch.setattr(reduce, "_BLOCK_VALUES", 2**14)  # blocks of 128 KB, X of 2.9 MB
    X = np.maximum(np.random.default_rng(0).standard_normal((n, d), dtype=np.float32), 0)
    tracemalloc.start()
    try:
        pca = PCADrop().fit(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    result = pca.components_.nbytes + pca.mean_.nbytes + pca.explained_variance_.nbytes
    float64_copy = X.size * 8
    assert peak - result < 0.6 * float64_copy, (peak, result, float64_copy)


@pytest.mark.parametrize("d", [1, 3])  # covariance and Gram routes
def test_pca_refuses_features_whose_squares_overflow(d):
    X = np.zeros((2, d))
    X[0, 0] = 1.7e308
    with pytest.raises(ValueError, match="too large for PCA"):
        PCADrop().fit(X)


def test_float32_pca_of_subnormal_features_stays_finite():
    # The weakest directions' weights 1 / sqrt(variance) leave float32's range here: the
    # projection then runs in float64 instead of overflowing.
    X = np.array([[1e-45, 0, 0], [0, 0, 0]], dtype=np.float32)
    assert np.isfinite(PCADrop().fit(X).components_).all()


@pytest.mark.parametrize("n, d", [(200, 12), (15, 40)])  # covariance and Gram routes
def test_pca_fit_of_k_directions_is_the_leading_part_of_the_full_fit(n, d):
    X = correlated(n, d)
    full = PCADrop().fit(X)
    k = 5
    pca = PCADrop(k).fit(X)
    assert pca.components_.shape == (k, d) and pca.explained_variance_.shape == (k,)
    np.testing.assert_allclose(pca.components_, full.components_[:k], atol=1e-12)
    np.testing.assert_allclose(pca.explained_variance_, full.explained_variance_[:k])
    pca.set_params(n_components=3)  # lowered after the fit: its leading directions
    np.testing.assert_allclose(pca.transform(X), full.transform(X)[:, :3], atol=1e-10)
    pca.set_params(n_components=k + 1)
    with pytest.raises(ValueError, match=f"n_components={k + 1} but only {k} principal"):
        pca.transform(X)


def test_float32_gram_route_keeps_the_float64_variance_at_every_count():
    # DR-2's score depends on the kept subspace only (the SVM on L2-normalised features
    # is rotation invariant), so the criterion at each count is the variance it keeps.
    rng = np.random.default_rng(5)
    X = np.maximum(correlated(150, 600, seed=5) + rng.standard_normal(600), 0).astype(np.float32)
    ours = PCADrop().fit(X)
    exact = PCA(svd_solver="full").fit(X.astype(np.float64))
    centred = X.astype(np.float64) - X.mean(axis=0, dtype=np.float64)
    for k in (7, 30, 74, 149):
        kept = np.sum((centred @ ours.components_[:k].T) ** 2) / (len(X) - 1)
        reference = np.sum(exact.explained_variance_[:k])
        assert abs(kept - reference) < 1e-6 * reference, (k, kept, reference)


@pytest.mark.parametrize("scale, dtype", [(1.0, np.float32), (1e20, np.float64),
                                          (1e-20, np.float64)])
def test_products_leave_float32_for_features_beyond_its_comfortable_range(scale, dtype):
    from dnnstress.stress.reduce import _product_dtype

    X = (correlated(10, 40) * scale).astype(np.float32)
    assert _product_dtype(X) == dtype
    assert _product_dtype(X.astype(np.float64)) == np.float64
    # Still the float64 fit's leading directions, whatever the scale.
    ours = PCADrop(3).fit(X).components_
    exact = PCA(n_components=3, svd_solver="full").fit(X.astype(np.float64)).components_
    signs = np.sign(np.sum(ours * exact, axis=1))
    np.testing.assert_allclose(ours, exact * signs[:, None], atol=1e-5)
