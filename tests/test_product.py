"""ProductQuantizer against faiss's own quantizer and a naive nearest-centroid search."""

import pickle
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from dnnstress.stress.product import ProductQuantizer, make_pca_pq


@pytest.fixture(scope="module")
def faiss():
    module = pytest.importorskip("faiss", reason="faiss-cpu not installed (pip install "
                                 "faiss-cpu)")
    module.omp_set_num_threads(1)  # a shared 2-core machine: no spinning OpenMP team
    return module


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((400, 12)) * np.linspace(0.5, 3, 12)).astype(np.float32)


def naive_codes(X, centroids):
    """Nearest centroid of every sub-vector, one distance at a time (ties: lowest)."""
    m, k, sub = centroids.shape
    codes = np.empty((len(X), m), dtype=np.int64)
    for i, row in enumerate(X.astype(np.float64)):
        for j in range(m):
            piece = row[j * sub:(j + 1) * sub]
            codes[i, j] = min(range(k), key=lambda c: (
                float(np.sum((piece - centroids[j, c]) ** 2)), c))
    return codes


@pytest.mark.parametrize("n_subvectors, n_bits", [(3, 4), (4, 5), (2, 8)])
def test_equals_faiss_and_naive_assignment(faiss, X, n_subvectors, n_bits):
    pq = ProductQuantizer(n_subvectors, n_bits, random_state=7).fit(X)
    reference = faiss.ProductQuantizer(12, n_subvectors, n_bits)
    reference.cp.seed = 7
    reference.cp.min_points_per_centroid = 1
    reference.train(X)
    np.testing.assert_array_equal(
        pq.centroids_, faiss.vector_to_array(reference.centroids).reshape(pq.centroids_.shape))
    test = X[::7] * 1.1
    packed = pq.pack(test)
    np.testing.assert_array_equal(packed, reference.compute_codes(test))
    np.testing.assert_array_equal(pq.transform(test), reference.decode(packed))
    np.testing.assert_array_equal(pq.encode(test), naive_codes(test, pq.centroids_))


def test_properties(faiss, X):
    pq = ProductQuantizer(4, 5, random_state=0).fit(X)
    assert pq.bits_per_vector == 20 and pq.n_features_out_ == 12
    test = X[:30]
    codes = pq.encode(test)
    assert codes.dtype == np.uint8 and codes.shape == (30, 4) and codes.max() < 32
    Y = pq.transform(test)
    np.testing.assert_array_equal(pq.decode(codes), Y)
    np.testing.assert_array_equal(pq.transform(Y), Y)  # a centroid is its own nearest
    packed = pq.pack(test)
    assert packed.shape == (30, -(-pq.bits_per_vector // 8)) == (30, 3)
    np.testing.assert_array_equal(pq.unpack(packed), Y)
    assert pq.transform(test.astype(np.float64)).dtype == np.float64
    # 16-bit codes: uint16
    wide = ProductQuantizer(12, 9, random_state=0).fit(np.tile(X, (2, 1)))
    assert wide.encode(X[:3]).dtype == np.uint16 and wide.bits_per_vector == 108


def test_copy_and_pickle_rebuild_faiss_from_the_centroids(faiss, X):
    pq = ProductQuantizer(3, 4, random_state=1).fit(X)
    again = pickle.loads(pickle.dumps(pq))
    np.testing.assert_array_equal(again.transform(X), pq.transform(X))
    assert clone(pq).get_params() == pq.get_params()


def test_pca_then_pq(faiss, X):
    pipe = make_pca_pq(8, 4, 3, random_state=0).fit(X)
    assert pipe.bits_per_vector == 12 and pipe.transform(X).shape == (400, 8)
    projected = pipe.named_steps["dr2"].transform(X)
    alone = ProductQuantizer(4, 3, random_state=0).fit(projected)
    np.testing.assert_allclose(pipe.transform(X), alone.transform(projected))


def test_errors(faiss, X):
    with pytest.raises(NotFittedError):
        ProductQuantizer(3).transform(X)
    with pytest.raises(NotFittedError):
        ProductQuantizer(3).bits_per_vector
    with pytest.raises(ValueError, match="n_subvectors = 5 must divide the 12 features"):
        ProductQuantizer(5, 2).fit(X)
    with pytest.raises(ValueError, match="256 centroids .* need at least as many"):
        ProductQuantizer(3, 8).fit(X[:100])
    with pytest.raises(ValueError, match=r"n_bits must be in \[1, 16\]"):
        ProductQuantizer(3, 17).fit(X)
    pq = ProductQuantizer(3, 4).fit(X)
    with pytest.raises(ValueError, match="fitted on 12"):
        pq.pack(X[:, :6])
    with pytest.raises(ValueError, match="packed rows have 1 bytes"):
        pq.unpack(np.zeros((2, 1), np.uint8))


def test_missing_faiss_says_how_to_install(monkeypatch, X):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        ProductQuantizer(3, 4).fit(X)


@pytest.mark.gpu
def test_cupy_input_is_refused_with_the_way_out(faiss, X, cupy):
    with pytest.raises(TypeError, match="runs on the CPU"):
        ProductQuantizer(3, 4).fit(cupy.asarray(X))
