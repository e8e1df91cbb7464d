"""RandomRotation: exact orthogonality, the Hadamard reference, variance spreading."""

import numpy as np
import pytest
from scipy.linalg import hadamard
from sklearn.exceptions import NotFittedError

from dnnstress._array import to_numpy
from dnnstress.stress import UniformQuantizer
from dnnstress.stress.binary import BinaryQuantizer
from dnnstress.stress.rotation import RandomRotation, make_rotated, walsh_hadamard


def features(d, n=30, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


@pytest.mark.parametrize("d, method, expected", [
    (16, "auto", "hadamard"), (12, "auto", "qr"), (16, "qr", "qr"), (12, "hadamard", "hadamard")])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_norms_and_inner_products_preserved_and_inverse_recovers(d, method, expected, dtype,
                                                                 rtol):
    X = features(d, dtype=dtype)
    r = RandomRotation(random_state=3, method=method).fit(X)
    assert r.method_ == expected
    Y = r.transform(X)
    assert Y.dtype == dtype
    scale = np.abs(X @ X.T).max()
    np.testing.assert_allclose(Y @ Y.T, X @ X.T, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(r.inverse_transform(Y), X, rtol=0, atol=rtol * np.abs(X).max())


def test_hadamard_equals_the_explicit_matrix():
    X = features(32)
    r = RandomRotation(random_state=1, method="hadamard").fit(X)
    matrix = hadamard(32) * r.signs_[:, None] / np.sqrt(32)  # D, then H, normalised
    np.testing.assert_allclose(r.transform(X), X @ matrix, atol=1e-12)
    np.testing.assert_array_equal(walsh_hadamard(np.eye(8)), hadamard(8))


def test_padding_to_a_power_of_two_is_what_is_stored():
    X = features(6)
    r = RandomRotation(random_state=0, method="hadamard").fit(X)
    assert r.n_features_out_ == 8 and r.transform(X).shape == (30, 8)
    np.testing.assert_allclose(np.linalg.norm(r.transform(X), axis=1),
                               np.linalg.norm(X, axis=1))
    pipe = make_rotated(UniformQuantizer(16), random_state=0, method="hadamard").fit(X)
    assert pipe.bits_per_vector == 8 * 4


def test_qr_matrix_is_orthogonal_and_seeded():
    X = features(10)
    q = RandomRotation(random_state=5).fit(X).rotation_
    np.testing.assert_allclose(q @ q.T, np.eye(10), atol=1e-13)
    np.testing.assert_array_equal(RandomRotation(random_state=5).fit(X).rotation_, q)
    assert not np.allclose(RandomRotation(random_state=6).fit(X).rotation_, q)


# Hadamard: every output mixes all inputs with weights 1/d, so its variance is the mean
# variance up to sampling noise; a QR rotation's weights Q_ji^2 vary (a Dirichlet draw).
@pytest.mark.parametrize("d, spread", [(64, 0.05), (48, 0.35)])
def test_rotation_spreads_variance(d, spread):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((4000, d)) * np.geomspace(0.3, 3, d)  # variances 0.09 to 9
    before = X.var(axis=0)
    after = RandomRotation(random_state=0).fit(X).transform(X).var(axis=0)
    assert before.std() / before.mean() > 1.1
    assert after.std() / after.mean() < spread
    np.testing.assert_allclose(after.sum(), before.sum(), rtol=1e-10)


def test_make_rotated_reports_the_quantizer_bits():
    X = features(16)
    pipe = make_rotated(UniformQuantizer(16, per_dimension=True), random_state=0).fit(X)
    assert pipe.bits_per_vector == 16 * 4
    assert make_rotated(BinaryQuantizer(), random_state=0).fit(X).bits_per_vector == 16
    rotation = pipe.named_steps["rotation"]
    expected = UniformQuantizer(16, per_dimension=True).fit(rotation.transform(X))
    np.testing.assert_array_equal(pipe.transform(X), expected.transform(rotation.transform(X)))


def test_errors():
    X = features(4)
    with pytest.raises(NotFittedError):
        RandomRotation().transform(X)
    with pytest.raises(NotFittedError):
        RandomRotation().inverse_transform(X)
    with pytest.raises(ValueError, match="method must be one of 'auto', 'hadamard', 'qr'"):
        RandomRotation(method="givens").fit(X)
    r = RandomRotation(random_state=0).fit(X)
    with pytest.raises(ValueError, match="Y has 3 features"):
        r.inverse_transform(X[:, :3])


@pytest.mark.parametrize("d", [16, 12])
def test_same_results_on_the_array_backend(xp, d):
    X = features(d, dtype=np.float32)
    r = RandomRotation(random_state=2).fit(X)
    device = xp.asarray(X)
    Y = r.transform(device)
    assert type(Y) is type(device)
    np.testing.assert_allclose(to_numpy(Y), r.transform(X), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_numpy(r.inverse_transform(Y)), X, atol=1e-5)
