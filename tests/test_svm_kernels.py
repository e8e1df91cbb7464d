"""The SVM's compiled building blocks against numpy written out: the eight-lane vector
loops over a CSR row (dnnstress._lanes) and the pass that counts a batch's non-zeros,
used columns and NaN/inf (dnnstress._svm_kernels.scan_rows, fill_rows)."""

import numba
import numpy as np
import pytest
import scipy.sparse

from dnnstress import _lanes, _svm_kernels
import dnnstress.classify as classify


@numba.njit
def _all_row_dots(columns, rows, indices, values, dots):
    """Every row's dots, lane block by lane block, as the kernels call them."""
    for i in range(rows.shape[0] - 1):
        for base in range(0, columns.shape[1], _lanes.LANES):
            _lanes.row_dots(columns, base, rows[i], rows[i + 1], indices, values, dots[i])


@numba.njit
def _all_row_axpys(columns, rows, indices, values, steps):
    """Every row's axpy in turn, row i with steps[i]."""
    for i in range(rows.shape[0] - 1):
        for base in range(0, columns.shape[1], _lanes.LANES):
            _lanes.row_axpys(columns, base, rows[i], rows[i + 1], indices, values, steps[i])


def _csr(rng, n, d, density, dtype):
    """A CSR matrix with rows of 0, 1, 2, ... non-zeros among them (odd and even counts:
    row_dots sums pairs, then the last one apart)."""
    X = np.where(rng.random((n, d)) < density, rng.standard_normal((n, d)), 0.0)
    X[0] = 0.0
    X[1, :] = 0.0
    X[1, 3] = 1.5
    return scipy.sparse.csr_matrix(X.astype(dtype))


@pytest.mark.parametrize("dtype, value_dtype", [(np.float32, np.float32),
                                                (np.float64, np.float64),
                                                (np.float64, np.float32)])
def test_row_dots_are_the_products_of_each_row_with_every_lane(dtype, value_dtype):
    rng = np.random.default_rng(0)
    X = _csr(rng, 60, 37, 0.3, value_dtype)
    columns = rng.standard_normal((37, 24)).astype(dtype)
    dots = np.full((60, 24), np.nan, dtype=dtype)
    _all_row_dots(columns, X.indptr.astype(np.int64), X.indices, X.data, dots)
    expected = X.toarray().astype(np.float64) @ columns.astype(np.float64)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dots, expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_array_equal(dots[0], 0.0)  # an empty row
    np.testing.assert_array_equal(dots[1], columns[3] * dtype(1.5))  # one non-zero


@pytest.mark.parametrize("dtype, value_dtype", [(np.float32, np.float32),
                                                (np.float64, np.float32)])
def test_row_axpys_add_each_step_times_the_row_to_its_lane(dtype, value_dtype):
    rng = np.random.default_rng(1)
    X = _csr(rng, 40, 29, 0.2, value_dtype)
    start = rng.standard_normal((29, 16)).astype(dtype)
    steps = np.where(rng.random((40, 16)) < 0.5, rng.standard_normal((40, 16)), 0.0)
    steps = steps.astype(dtype)
    columns = start.copy()
    _all_row_axpys(columns, X.indptr.astype(np.int64), X.indices, X.data, steps)
    expected = start.astype(np.float64) + X.toarray().T.astype(np.float64) @ steps
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(columns, expected, rtol=tolerance, atol=tolerance)
    untouched = np.flatnonzero(np.diff(X.tocsc().indptr) == 0)  # columns no row holds
    np.testing.assert_array_equal(columns[untouched], start[untouched])


def test_a_lane_does_not_depend_on_its_neighbours_or_its_place():
    """Each label's sum is its own: the same weights in another lane, next to other
    labels, give the same bits (a label's result must not depend on its group)."""
    rng = np.random.default_rng(2)
    X = _csr(rng, 50, 33, 0.4, np.float32)
    rows = X.indptr.astype(np.int64)
    columns = rng.standard_normal((33, 16)).astype(np.float32)
    moved = np.roll(columns, 11, axis=1)
    moved[:, :3] = rng.standard_normal((33, 3))
    dots, moved_dots = np.empty((50, 16), np.float32), np.empty((50, 16), np.float32)
    _all_row_dots(columns, rows, X.indices, X.data, dots)
    _all_row_dots(moved, rows, X.indices, X.data, moved_dots)
    np.testing.assert_array_equal(np.roll(dots, 11, axis=1)[:, 3:], moved_dots[:, 3:])


def test_the_lane_loops_refuse_mixed_weight_dtypes_and_wider_values():
    """Lanes of another dtype than the weights, or values that casting to the weights'
    dtype would round (float64 into float32), are refused when compiled."""
    columns = np.zeros((4, 8), np.float32)
    for values, lanes in ((np.float32, np.float64), (np.float64, np.float32)):
        with pytest.raises(TypeError, match="share one float dtype, values are floats "
                                            "no wider"):
            _all_row_dots(columns, np.zeros(2, np.int64), np.zeros(0, np.int32),
                          np.zeros(0, values), np.zeros((1, 8), lanes))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_census_counts_rows_columns_and_nonfinite_values_as_numpy(dtype):
    rng = np.random.default_rng(3)
    X = np.where(rng.random((3, 70, 45)) < 0.1, rng.random((3, 70, 45)), 0.0).astype(dtype)
    X[:, :, 7] = 0.0  # a column no version uses
    X[2, :, 9] = 0.0
    X[2, 5, 9] = 1e-40  # used by one sample of one version (subnormal in float32)
    used, row_counts = classify._census(X)
    np.testing.assert_array_equal(used, (X != 0).any(axis=(0, 1)))
    assert not used[7] and used[9]
    np.testing.assert_array_equal(row_counts, np.count_nonzero(X, axis=2).ravel())
    for bad, count in ((np.nan, 1), (np.inf, 2), (-np.inf, 3)):
        X.reshape(-1)[rng.choice(X.size, count, replace=False)] = bad
        with pytest.raises(ValueError, match="X contains [0-9]+ NaN or infinite"):
            classify._census(X)
    blocks = np.zeros((2, 45), bool)
    assert _svm_kernels.scan_rows(X, np.empty(210, np.int64), blocks) == (
        X.size - np.isfinite(X).sum())


def test_fits_refuse_nonfinite_features_whatever_the_solver_path():
    """The census is the numpy path's only finiteness test: dense rows, CSR rows and
    Newton each refuse NaN and inf with the error that names them."""
    rng = np.random.default_rng(4)
    Y = np.where(rng.random((50, 2)) < 0.5, 1, -1).astype(np.int8)
    dense = rng.random((1, 50, 6)).astype(np.float32)
    sparse = np.where(rng.random((1, 50, 60)) < 0.03, 1.0, 0.0).astype(np.float32)
    for X in (dense, sparse):
        for method in ("dual", "newton", "auto"):
            broken = X.copy()
            broken[0, 7, 3] = np.inf
            with pytest.raises(ValueError, match="X contains 1 NaN or infinite"):
                classify.fit_linear_svms(broken, Y, method=method)


@pytest.mark.parametrize("method", ["dual", "newton", "auto"])
def test_byte_swapped_features_fit_as_native_ones(method):
    """A big-endian X (as read from some files) is trained as its native copy: the
    compiled passes take only the machine's byte order."""
    rng = np.random.default_rng(5)
    Y = np.where(rng.random((60, 2)) < 0.5, 1, -1).astype(np.int8)
    X = np.where(rng.random((1, 60, 30)) < 0.05, rng.random((1, 60, 30)), 0.0)
    X = X.astype(np.float32)
    swapped = X.astype(X.dtype.newbyteorder())
    assert not swapped.dtype.isnative
    for fitted, expected in zip(classify.fit_linear_svms(swapped, Y, method=method)[:2],
                                classify.fit_linear_svms(X, Y, method=method)[:2]):
        np.testing.assert_array_equal(fitted, expected)
