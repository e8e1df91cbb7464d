"""Linear SVMs for stressed features: LIBLINEAR's objective, trained many at a time.

The paper scores every stressed feature set with a linear SVM (LIBLINEAR, C = 1, one
model per class, one-vs-rest; reference README "Order and classifier").  A sweep trains
hundreds of them on versions of ONE training set, so this module solves them in batches:

``fit_linear_svms(X, Y, C=1.0, ...) -> (W, b, info)``
    X is ``(B, n, d)``: B stressed versions of the same n training vectors; Y is the
    ``(n, L)`` target matrix in {1, -1, 0}.  All ``B * L`` binary problems are solved
    together; ``warm_start=(W0, b0)`` starts Newton from a neighbouring configuration's
    solution.
``LinearSVM(C=1.0, tol=1e-4, max_iter=1000, intercept_scaling=1.0)``
    The scikit-learn style estimator for one training set: ``fit(X, y)`` with 1-D class
    labels (one-vs-rest, ``predict`` = argmax) or a 2-D {1, -1, 0} multi-label matrix.
``l2_normalize(X)``
    Rows scaled to unit Euclidean norm; all-zero rows stay zero.

Every binary problem is exactly the one of ``sklearn.svm.LinearSVC(C, loss="squared_hinge",
penalty="l2", intercept_scaling=s)`` (LIBLINEAR solvers 1 and 2)::

    min_{w, b}  0.5 * (||w||^2 + b^2) + C * sum_i max(0, 1 - y_i (w . x_i + s b))^2

The bias is a weight on a constant feature ``s`` and is regularised like the others, as
in LIBLINEAR; the reported intercept is ``s * b``.  Samples with target 0 (VOC
"difficult") are left out of that label's loss, as the VOC devkit leaves them out of the
evaluation.

Two methods, one objective and one stopping rule (``method``):

The reference, and the GPU path, is a truncated Newton method in the primal, as
LIBLINEAR's primal solver (TRON) but vectorised over problems.  Every Hessian-vector
product of every problem is two matrix-matrix products with the shared X, ``X @ V`` and
``X.T @ U`` with V, U of width L, which is what CPU BLAS and GPUs do fastest.  On the CPU
those narrow products run at a few GB/s and a solve takes 120 - 290 passes over X, so
numpy input is solved first by dual coordinate descent (LIBLINEAR's dual solver,
compiled: dnnstress._svm_kernels), which needs 20 - 32 cache-friendly epochs on the
demo's features, all labels sharing each read of a sample; it measured faster than
LIBLINEAR's own dual solver on all 187 configurations of the demo grid at equal
accuracy, and on 186 at LIBLINEAR's default stop, which is less accurate on every one
(median 4.7x; the exception: Q-B with 62 of 64 bits erased, 1 % non-zero, 0.87x;
bench/RESULTS.md, 2026-12-02 night).  Its rounds end with an exact
check of the rule below or of a duality gap that certifies the same distance to the
optimum, so both methods stop at the same guaranteed accuracy; problems the dual
leaves unsolved after its epoch budget go on with Newton from its weights.  The Newton
method:

- the Newton system ``(I + 2C X_A' X_A) p = -g`` over the margin violators A is solved by
  conjugate gradients, stopped at a relative residual ``min(0.5, sqrt(||g|| / ||g0||))``
  (a forcing term giving superlinear convergence, Eisenstat & Walker 1996);
- the step length is the EXACT minimiser along ``p`` (a 1-D piecewise-quadratic problem,
  found by safeguarded Newton on its piecewise-linear derivative, from ``X @ p`` that
  CG accumulates for free), so no trust region is needed (Keerthi & DeCoste 2005);
- no preconditioner: the diagonal one LIBLINEAR offers made CG slower on ReLU features
  (more products for the same accuracy), as Hsia, Chiang & Lin (ACML 2018) also found
  on many sets.

A problem stops when ``||grad f(w)|| <= tol * max(min(#pos, #neg), 1) / #samples *
||grad f(0)||``, LIBLINEAR's primal rule (or, in the dual, at the duality gap that
certifies as much: :func:`_dual_coordinate_descent`).  Newton steps are few
(5 to 10 from zero, fewer from a warm start) and then exact to CG accuracy.
Arithmetic runs in the dtype of X (float32 features train in float32; float16 in
float32; the dual kernel's check and sums over samples in float64), and a solve that
overflows raises instead of returning weights.  The code uses
only functions that numpy and CuPy share, so CuPy input trains on the GPU unchanged; each
product is a 2-D GEMM per version on contiguous operands (no hidden copy), and the loops
read device flags only every few steps (``_sync_interval``), since each read is a sync.
"""

from __future__ import annotations

import functools
import itertools
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning

from dnnstress._array import (array_namespace, check_features, count_nonfinite,
                              is_cupy_array, raise_if_nonfinite, to_numpy)
from dnnstress.metrics import label_matrix

__all__ = ["IgnoredLabelWarning", "LinearSVM", "SOLVERS", "fit_linear_svms", "l2_normalize"]

SOLVERS = ("ours", "cuml")
METHODS = ("auto", "newton", "dual")


class IgnoredLabelWarning(UserWarning):
    """A label column has no sample to learn from (all 0, "ignored"): its model is 0."""

# Conjugate-gradient iterations per Newton step: CG is exact after d + 1 steps in exact
# arithmetic; in practice the forcing term stops it after tens.
_MAX_CG_ITER = 1000
# Safeguarded Newton steps in the line search: the derivative is piecewise linear, so a
# handful reach the exact root; bisection guarantees progress where Newton would not.
_MAX_LINE_SEARCH_ITER = 60
# Epochs "auto" gives the dual before Newton takes over: an epoch costs about one pass
# over X (fewer with shrinking), a cold Newton solve 120 - 290 passes, and the demo's
# features need 21 - 31 epochs.
_AUTO_DUAL_EPOCHS = 150
# Features at most this dense are read by the dual kernels as CSR rows: a gathered value
# costs several contiguous ones (Q-B with 62 bits erased, 1.7 % dense: 2x faster).
_SPARSE_DENSITY = 0.1


def l2_normalize(X):
    """Scale every row of ``X`` (n, d) to unit Euclidean norm; zero rows stay zero.

    Returns a new array of the backend of ``X``, of its dtype, or float32 for narrower
    dtypes (float16, whose range the squares overflow).  On numpy a compiled kernel
    does it in two or three passes over each row while the row is in cache (the sums of
    squares in float64, NaN/inf detected on the way); on CuPy the array-API formula
    (rows divided by their largest absolute value before squaring, so nothing overflows
    or underflows).  The two agree to a few units in the last place (relative
    difference <= 8 eps of the dtype; tests/test_classify.py).
    """
    check_features(X, allow_empty=True, check_finite=is_cupy_array(X))
    X = at_least_float32(X)
    if is_cupy_array(X):
        return _l2_normalize_array_api(X)
    out = np.empty(X.shape, dtype=X.dtype)
    # float32 squares cannot overflow or underflow float64 (|x| <= 3.4e38, >= 1.4e-45),
    # so only float64 rows need dividing by their peak first.
    factors = np.empty(X.shape[0], dtype=X.dtype)
    bad_rows = _row_normalizer()(X, out, factors, X.dtype.itemsize > 4)
    if bad_rows:
        raise ValueError(f"X contains NaN or infinite values (in {bad_rows} row(s))")
    return out


def _l2_normalize_array_api(X):
    """The array-API formula: the CuPy path, and the twin of the compiled kernel."""
    xp = array_namespace(X)
    peak = xp.max(xp.abs(X), axis=1, keepdims=True) if X.shape[1] else xp.zeros(
        (X.shape[0], 1), dtype=X.dtype)
    scaled = X / xp.where(peak > 0, peak, 1).astype(X.dtype)
    norm = xp.sqrt((scaled * scaled).sum(axis=1, keepdims=True))
    return scaled / xp.where(norm > 0, norm, 1).astype(X.dtype)


@functools.lru_cache(maxsize=1)
def _row_normalizer():
    """The numba kernel ``(X, out, factors, by_peak) -> rows with NaN/inf``, compiled on
    first use (importing dnnstress stays cheap).

    Why: the array-API formula makes six passes over X through temporaries as large as
    X, 15x a copy at 6000 x 1280.  ``reassoc`` only lets LLVM vectorise the sums (it
    keeps NaN and inf semantics, which the finiteness test relies on).  The scale of a
    row goes through ``factors`` (X's dtype) so that the last pass multiplies in that
    dtype.  One thread: on this 2-core machine, shared with BLAS, ``prange`` measured
    1.4x slower (bench/RESULTS.md).
    """
    import numba

    @numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
    def normalize_rows(X, out, factors, by_peak):
        n, d = X.shape
        bad_rows = 0
        for i in range(n):
            inverse = 1.0
            if by_peak:
                peak = 0.0
                for j in range(d):
                    value = abs(X[i, j])
                    peak = value if value > peak else peak
                if peak > 0:  # an inf peak makes inverse 0 and the sum below NaN
                    inverse = 1.0 / peak
            squares = 0.0
            for j in range(d):
                scaled = X[i, j] * inverse
                squares += scaled * scaled
            if not squares < np.inf:  # NaN or inf in the row
                bad_rows += 1
                continue
            factors[i] = inverse / np.sqrt(squares) if squares > 0 else 0.0
            for j in range(d):
                out[i, j] = X[i, j] * factors[i]
        return bad_rows

    return normalize_rows


def fit_linear_svms(X, Y, *, C=1.0, intercept_scaling=1.0, tol=1e-4, max_iter=1000,
                    warm_start=None, solver="ours", method="auto"):
    """Train ``B * L`` L2-regularised squared-hinge linear SVMs at once.

    Parameters
    ----------
    X : array of shape (B, n, d), floating
        B versions (stressed configurations) of the same n training vectors.  Versions
        of different widths are zero-padded to a common d: a column that is zero for
        every sample enters the objective only through the regulariser ``0.5 w_j^2``, so
        its optimal weight is exactly 0 and the other weights are those of the narrower
        problem.  Strip the padding from ``W`` afterwards.  Dtypes narrower than float32
        (float16) train in float32: their range overflows in the products.
    Y : array of shape (n, L) with values in {1, -1, 0}
        Targets shared by all B versions: label l's problem uses the samples with
        ``Y[:, l] != 0``.  One-vs-rest over classes is ``Y[i, l] = 1 if y_i == l else -1``.
        A boolean matrix means True = 1, False = -1 (never "ignored").  A column that is
        all 0 has nothing to learn (its model is 0) and gives an
        :class:`IgnoredLabelWarning`.
    C : float, default 1.0
        Loss weight (LIBLINEAR's ``-c``).
    intercept_scaling : float, default 1.0
        Value s of the constant feature that carries the (regularised) bias.
    tol : float, default 1e-4
        Stop a problem when its gradient norm falls below ``tau = tol`` times its value
        at 0, times the fraction of the minority class (LIBLINEAR's primal stopping
        rule), or, in the dual, when its duality gap certifies what that rule does
        (``||w - w*|| <= tau``) and an objective within ``tol`` of its optimum.
    max_iter : int, default 1000
        Maximum number of Newton iterations per problem, and of dual coordinate-descent
        epochs (what ``max_iter`` counts for LIBLINEAR's and LinearSVC's dual solvers).
    warm_start : tuple (W0, b0) or None
        Initial point of the Newton method, e.g. the solution of a neighbouring
        configuration (Q-2 with one level fewer).  ``W0`` has shape (L, d') or
        (B, L, d') with d' <= d (missing trailing columns start at 0), ``b0`` shape
        (L,) or (B, L), as returned.  The dual starts at 0 whatever it is: on the demo's
        features warm starts saved it 1 - 4 % of the epochs and cost 16 - 30 % more
        time (``_dual_coordinate_descent``); so on numpy a warm start is used by
        ``method="newton"`` only ("auto" hands Newton the dual's weights).
    solver : {"ours", "cuml"}, default "ours"
        "ours": the batched Newton-CG solver of this module, on numpy or CuPy.  "cuml":
        RAPIDS cuML's ``LinearSVC`` (squared hinge, L2, ``penalized_intercept=True``:
        LIBLINEAR's regularised bias with s = 1), one problem at a time, for comparison;
        it ignores ``warm_start`` and needs cuML installed.  The default stays ours
        because it batches all labels (and configurations) into each pass over X and
        warm-starts, which cuML's one-problem-per-fit API cannot (on the CPU it measured
        11-22x faster than sklearn's LinearSVC at VOC size, ``dnnstress bench svm``;
        cuML itself has not been measured yet: no GPU was available).
    method : {"auto", "newton", "dual"}, default "auto"
        How solver "ours" minimises (the same objective and guarantee either way):
        "newton", the array-API Newton-CG solver (the reference, and the GPU path);
        "dual", dual coordinate descent compiled for the CPU (numpy input only);
        "auto", on numpy the dual for at most ``min(max_iter, 150)`` epochs and then
        Newton, warm-started from it, for the problems still unsolved; Newton on CuPy.

    Returns
    -------
    W : array of shape (B, L, d)
        Weights (``coef_`` of each version), in the training dtype.
    b : array of shape (B, L)
        Intercepts, ``intercept_scaling`` times the bias weight.
    info : dict
        ``n_iter`` (B, L) Newton iterations, ``n_epochs`` (B, L) dual epochs,
        ``converged`` (B, L) bool, ``objective`` (B, L) float64, as numpy arrays;
        ``n_hessian_products`` (int), the number of batched Hessian-vector products
        (each costs two passes over X).

    Raises
    ------
    ValueError
        When the solution or its objective is not finite (features so large that the
        products overflow the training dtype): no score may come from such a solve, and
        the fault is the input's, like that of NaN features.
    """
    xp = array_namespace(X)
    X, census = _check_batch(X, xp)
    Y = _check_targets(Y, X.shape[1], xp)
    _check_positive(C, "C")
    _check_positive(intercept_scaling, "intercept_scaling", allow_zero=True)
    _check_positive(tol, "tol")
    max_iter = _check_max_iter(max_iter)
    check_solver(solver)
    method = _check_method(method, xp)
    problem = _Problem(X, Y, float(C), float(intercept_scaling))
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked below
        if solver == "cuml":
            V, info, overflowed = _fit_cuml(problem, float(tol), max_iter)
        else:
            V = _initial_point(warm_start, X, Y.shape[1], intercept_scaling, xp)
            V, info, overflowed = _minimise(problem, V, float(tol), max_iter, method,
                                            census)
    d = X.shape[2]
    if (overflowed or not np.isfinite(info["objective"]).all()
            or count_nonfinite(V.reshape(-1, 1))):
        raise ValueError(
            f"the SVM solve overflowed {V.dtype} (non-finite weights or objective): the "
            f"features are too large for it; L2-normalise them first (l2_normalize)")
    coef = xp.ascontiguousarray(xp.swapaxes(V[:, :d, :], 1, 2))
    intercept = intercept_scaling * V[:, d, :]
    return coef, intercept, info


class _Problem:
    """The data of a batch: X (B, n, d), targets y and mask m (n, L), C and s.

    A variable is one array V of shape (B, d + 1, L): row j < d holds the weight of
    feature j, row d the bias weight, one column per problem, so that products with X
    are matrix-matrix and every vector operation of CG is one array operation, not one
    for the weights and one for the bias.
    """

    def __init__(self, X, Y, C, s):
        xp = array_namespace(X)
        self.xp, self.C, self.s = xp, C, s
        # Every product below is a 2-D GEMM on X[k] (C-contiguous) or its transpose
        # (F-contiguous), which BLAS and cuBLAS read in place.  CuPy's batched matmul
        # would instead copy a transposed 3-D view to a contiguous array on every call.
        self.X = xp.ascontiguousarray(X)
        self.n_versions, self.n_samples, self.n_features = X.shape
        self.y = Y.astype(X.dtype)
        self.m = (Y != 0).astype(X.dtype)

    def forward(self, V):
        """``X w + s b`` of every sample and problem, shape (B, n, L)."""
        xp, d = self.xp, self.n_features
        out = xp.empty((self.n_versions, self.n_samples, V.shape[2]), dtype=V.dtype)
        for k in range(self.n_versions):
            xp.matmul(self.X[k], V[k, :d], out=out[k])
        out += self.s * V[:, d:]
        return out

    def backward(self, R):
        """``(X' r, s 1' r)`` of residuals R (B, n, L), shape (B, d + 1, L)."""
        xp, d = self.xp, self.n_features
        out = xp.empty((self.n_versions, d + 1, R.shape[2]), dtype=R.dtype)
        for k in range(self.n_versions):
            xp.matmul(self.X[k].T, R[k], out=out[k, :d])
        out[:, d:] = self.s * R.sum(axis=1, keepdims=True)
        return out

    def hinge(self, z):
        """Masked margin violations ``v = m * max(0, 1 - y z)``."""
        return self.m * self.xp.maximum(1 - self.y * z, 0)

    def gradient(self, V, v):
        """Gradient of the objective at V, given its violations ``v``."""
        return V - 2 * self.C * self.backward(self.y * v)

    def objective(self, V, v):
        """Objective of every problem, shape (B, L), summed in float64."""
        xp = self.xp
        return (0.5 * (V * V).sum(axis=1, dtype=xp.float64)
                + self.C * (v * v).sum(axis=1, dtype=xp.float64))

    def hessian_product(self, D, P):
        """``H p`` with the generalised Hessian ``I + 2C X_A' X_A`` (A: ``D == 1``).

        Also returns ``u = X p + s p_b`` (before masking), which CG accumulates into
        ``X p`` for the line search.
        """
        u = self.forward(P)
        return P + 2 * self.C * self.backward(D * u), u


def _check_method(method, xp):
    """``method`` with "auto" resolved: "dual" (then Newton) on numpy, else "newton"."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "dual" and xp is not np:
        raise ValueError("method 'dual' is a CPU kernel and takes numpy arrays; CuPy "
                         "input trains with method 'newton' (or 'auto', which picks it)")
    return method if method != "auto" or xp is np else "newton"


def _minimise(problem, V, tol, max_iter, method, census):
    """The chosen method, Newton from V (a warm start, or zero); what _truncated_newton
    returns, with ``n_epochs`` in the info (``census``: what :func:`_census` found).

    Columns that are zero in every version (zero padding, h = 1, Q-B with every bit
    erased, dead ReLU units) are left out first: their optimal weight is exactly 0, and
    every product or epoch would still pay for them; except where the dual reads X as
    CSR rows, which skip them anyway (their weights come out 0 from the dual's
    ``w = sum_i alpha_i y_i x_i``), so that leaving them out would only copy X.  With
    no column left the problem is the bias alone, a quadratic that one Newton step
    solves exactly, where the dual would need tens of epochs over n identical samples.
    """
    xp = problem.xp
    used, row_counts = census
    csr = _sparse_rows(problem.X, row_counts) if method != "newton" else None
    reads_csr = csr is not None and csr[0].size > 0
    if not used.all() and not (reads_csr and used.any()):
        rows = np.flatnonzero(np.append(used, True))  # the kept weights and the bias
        index = xp.asarray(rows)
        narrow = _Problem(xp.take(problem.X, index[:-1], axis=2), problem.y, problem.C,
                          problem.s)
        method = "newton" if method == "auto" and rows.size == 1 else method
        V_narrow, info, overflowed = _minimise(narrow, xp.take(V, index, axis=1), tol,
                                               max_iter, method,
                                               (np.ones(rows.size - 1, bool), row_counts))
        V = xp.zeros_like(V)
        V[:, index, :] = V_narrow
        return V, info, overflowed
    if method == "newton":
        V, info, overflowed = _truncated_newton(problem, V, tol, max_iter)
        info["n_epochs"] = np.zeros_like(info["n_iter"])
        return V, info, overflowed
    epochs = max_iter if method == "dual" else min(max_iter, _AUTO_DUAL_EPOCHS)
    V, info, overflowed = _dual_coordinate_descent(problem, csr, tol, epochs)
    if method == "dual" or overflowed or info["converged"].all():
        return V, info, overflowed
    V, newton, overflowed = _truncated_newton(problem, V, tol, max_iter)
    newton["n_epochs"] = info["n_epochs"]
    return V, newton, overflowed


def _dual_coordinate_descent(problem, sparse_rows, tol, max_epochs):
    """Dual coordinate descent (dnnstress._svm_kernels) from 0 until the stopping rule
    holds; returns what _truncated_newton does (``n_iter`` 0, ``n_epochs`` set).

    The dual starts at 0, LIBLINEAR's start, whatever the warm start: measured on the
    demo's features, starting from the dual point a warm start w gives (``alpha_i = 2C
    max(0, 1 - y_i w . x_i)``, scaled to the best along it, or 0 where that point was
    worse) saved 3.6 % of the epochs from the baseline's weights and 1 % from the
    neighbouring Q-2 configuration's, and its margins and checks, a few passes over X,
    cost 30 % and 16 % more time.  A problem stops when
    its weights w are certified within the primal rule's distance ``tau`` of the
    optimum w*: by the rule itself, ``||grad f(w)|| <= tau``, or by the duality gap,
    ``f(w) - D(alpha) <= tau^2 / 2``.  The objective is 1-strongly convex, so either
    gives ``||w - w*|| <= tau`` and ``f(w) - f(w*) <= tau^2 / 2``.  The gap must also
    be at most ``tol * f(w)``: the gradient rule stops far inside its bound, and on
    small or unnormalised problems ``tau^2 / 2`` measured up to 1.5 % of the objective,
    where the rule's own stop is within 1e-3 of it.  On the demo's features the gap
    certifies after 20 - 30 epochs, where the gradient rule needs 25 - 42 (every epoch
    checked).  LIBLINEAR stops its dual at a projected-gradient spread of 0.1, which
    certifies neither, and which left the objective up to 3e-3 from optimal on the
    demo grid.  Each round of epochs ends where the kernel's estimate of the gap
    reaches its target (the certified gap, then smaller with the gap left), and is
    followed by an exact check (its cost: about one epoch), until a certificate holds
    or ``max_epochs`` are spent.
    """
    from dnnstress import _svm_kernels as kernels

    X = (problem.X, *sparse_rows)  # the kernels' rows, dense or CSR too
    values_read = X[3].size if X[1].size else problem.X.size
    with kernels.threads_for(values_read, problem.y.shape[1]):
        return _dual_rounds(problem, X, tol, max_epochs)


def _dual_rounds(problem, X, tol, max_epochs):
    """The body of _dual_coordinate_descent, on the threads it chose; ``X`` holds the
    kernels' rows."""
    from dnnstress import _svm_kernels as kernels

    y, C, s = problem.y, problem.C, problem.s
    n_versions, n, d = problem.X.shape
    n_labels = y.shape[1]
    shape = (n_versions, n_labels)
    alpha = np.zeros((n_versions, n, n_labels))
    W = np.zeros((n_versions, n_labels, d + 1), dtype=problem.X.dtype)
    groups = kernels.label_groups(n_versions, n_labels)
    todo = np.ones(shape, dtype=bool)
    gradient_norm, objective, dual = np.empty(shape), np.empty(shape), np.zeros(shape)
    kernels.primal_check(*X, y, s, C, W, todo, groups, gradient_norm, objective)
    # The check at w = 0 gives ||g(0)||, which the threshold would otherwise take a
    # BLAS product for; and OpenBLAS's threads, spinning for a while after a call,
    # shared the cores with the kernels' threads (the baseline's fit: 122 -> 83 ms).
    threshold = _stopping_threshold(problem, tol, gradient_norm[:, None, :])[0][:, 0, :]
    epochs = np.zeros(shape, dtype=np.int64)
    distance_gap = 0.5 * threshold * threshold  # what ||grad f|| <= tau certifies
    for round_number in itertools.count():
        overflowed = ~(np.isfinite(gradient_norm) & np.isfinite(objective))
        gap = objective - dual + _gap_rounding(objective, alpha, C, n + d + 1)
        certified_gap = np.minimum(distance_gap, tol * objective)
        converged = ((gradient_norm <= threshold) | (gap <= certified_gap)) & ~overflowed
        todo = ~converged & ~overflowed & (epochs < max_epochs)
        if not todo.any():
            break
        if round_number:
            target *= np.clip(0.5 * certified_gap / np.where(todo, gap, 1.0), 1e-3, 0.5)
        else:
            target = certified_gap
        kernels.dual_coordinate_descent(*X, y, s, C, alpha, W, todo, target,
                                        max_epochs - epochs, groups, epochs, round_number)
        kernels.synchronize_weights(*X, y, s, C, alpha, W, todo, groups, dual)
        kernels.primal_check(*X, y, s, C, W, todo, groups, gradient_norm, objective)
    info = {"n_iter": np.zeros(shape, dtype=np.int64), "n_epochs": epochs,
            "converged": converged, "objective": objective, "n_hessian_products": 0}
    return np.ascontiguousarray(np.swapaxes(W, 1, 2)), info, bool(overflowed.any())


def _gap_rounding(objective, alpha, C, n_terms):
    """A margin for the float64 rounding of a computed duality gap: each of its final
    sums of ``n_terms`` terms is off by at most ``n_terms * eps`` times the sum of
    their magnitudes (the rounding inside the dot products is not bounded here).  It
    keeps the certificate honest at tiny tolerances, where a computed gap of 0 would
    otherwise certify anything."""
    magnitude = objective + alpha.sum(axis=1) + np.square(alpha).sum(axis=1) / (4 * C)
    return 2 * n_terms * np.finfo(np.float64).eps * magnitude


def _census(X):
    """What a fit must know of X (B, n, d) before it starts, ``(used, row_counts)``:
    which columns hold a non-zero in some version, and on numpy each row's number of
    non-zeros (B * n,), None on CuPy; a ValueError if X holds NaN or infinity.  On numpy
    one compiled pass finds all three (:func:`dnnstress._svm_kernels.scan_rows`)."""
    if is_cupy_array(X):
        raise_if_nonfinite(count_nonfinite(X.reshape(-1, X.shape[2])), "X")
        return to_numpy((X != 0).any(axis=(0, 1))), None
    import numba

    from dnnstress import _svm_kernels as kernels

    row_counts = np.empty(X.shape[0] * X.shape[1], dtype=np.int64)
    seen = np.zeros((numba.get_num_threads(), X.shape[2]), dtype=bool)  # a block each
    raise_if_nonfinite(kernels.scan_rows(X, row_counts, seen), "X")
    return seen.any(axis=0), row_counts


def _sparse_rows(X, row_counts):
    """X's CSR rows for the dual kernels ``(rows (B, n + 1), indices, values)`` where at
    most ``_SPARSE_DENSITY`` of it is non-zero (``row_counts``: each row's non-zeros, as
    :func:`_census` counts them), else empty ones (dense rows are read); numpy only:
    the kernels are compiled for the CPU.

    Dense or CSR, the three are writable C-contiguous arrays of the same dtypes, so
    that numba compiles each kernel once per dtype of X, not once per layout (a cold
    compilation costs seconds per kernel)."""
    from dnnstress import _svm_kernels as kernels

    n_versions, n, d = X.shape
    column = np.int32 if d <= np.iinfo(np.int32).max else np.int64  # half the bytes read
    starts = np.zeros(row_counts.size + 1, dtype=np.int64)
    np.cumsum(row_counts, out=starts[1:])
    if starts[-1] > _SPARSE_DENSITY * X.size:
        return (np.zeros((n_versions, 0), dtype=np.int64), np.zeros(0, column),
                np.zeros(0, X.dtype))
    indices, values = np.empty(starts[-1], dtype=column), np.empty(starts[-1], X.dtype)
    if starts[-1]:  # all-zero X (Q-B with every bit erased) has no row to fill
        kernels.fill_rows(X, starts, indices, values)
    rows = np.lib.stride_tricks.sliding_window_view(starts, n + 1)[::n]
    return np.array(rows), indices, values


def check_solver(solver) -> str:
    """``solver`` if it is one of :data:`SOLVERS` and can run here (cuML importable for
    "cuml"), else a ValueError or a RuntimeError saying how to install it."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "cuml":
        cuml_linear_svc()
    return solver


def cuml_linear_svc():
    """cuML's ``LinearSVC`` class, or a RuntimeError saying why not and how to install."""
    try:
        from cuml.svm import LinearSVC
    except ImportError as error:
        raise RuntimeError(f"solver 'cuml' needs RAPIDS cuML, which failed to import "
                           f"({error}); install it with: pip install cuml-cu12 "
                           "(or cuml-cu13 for CUDA 13)") from None
    return LinearSVC


def _fit_cuml(problem, tol, max_iter):
    """Every problem solved by cuML's LinearSVC; returns what _truncated_newton does."""
    CumlLinearSVC = cuml_linear_svc()
    if problem.s != 1.0:
        raise ValueError("solver 'cuml' supports intercept_scaling=1 only (its bias "
                         "feature is the constant 1)")
    xp = problem.xp
    B, _, d = problem.X.shape
    Y = to_numpy(problem.y)
    V = xp.zeros((B, d + 1, Y.shape[1]), dtype=problem.X.dtype)
    for label in range(Y.shape[1]):
        keep = np.flatnonzero(Y[:, label] != 0)
        if np.unique(Y[keep, label]).size < 2:
            # One class or none: no classifier to fit with cuML; our solver's exact
            # answer (w = 0, the bias alone) is the same problem's solution.
            sub = _Problem(problem.X, problem.y[:, label:label + 1], problem.C, 1.0)
            start = xp.zeros((B, d + 1, 1), dtype=V.dtype)
            V[:, :, label:label + 1] = _truncated_newton(sub, start, tol, max_iter)[0]
            continue
        for k in range(B):
            svc = CumlLinearSVC(penalty="l2", loss="squared_hinge", C=problem.C,
                                fit_intercept=True, penalized_intercept=True, tol=tol,
                                max_iter=max_iter)
            svc.fit(problem.X[k][xp.asarray(keep)], xp.asarray(Y[keep, label]))
            V[k, :d, label] = xp.asarray(svc.coef_, dtype=V.dtype).reshape(-1)
            V[k, d, label] = xp.asarray(svc.intercept_, dtype=V.dtype).reshape(-1)[0]
    v = problem.hinge(problem.forward(V))
    info = {"n_iter": np.zeros((B, Y.shape[1]), dtype=np.int64),
            "converged": np.ones((B, Y.shape[1]), dtype=bool),
            "objective": to_numpy(problem.objective(V, v)), "n_hessian_products": 0}
    return V, info, False


def _sync_interval(xp):
    """Steps between the host reads of "is any problem still running?".

    Reading a device flag waits for the GPU's queue to drain, so on CuPy the loops test
    every few steps; a step taken after a problem finished is masked out (it changes
    nothing) and only costs its products.  On numpy a test is free and a wasted product
    is not.
    """
    return 1 if xp is np else 4


def _truncated_newton(problem, V, tol, max_iter):
    """Newton-CG with exact line search, all problems in lockstep (see module doc)."""
    xp = problem.xp
    eps = float(np.finfo(V.dtype).eps)
    z = problem.forward(V)
    threshold, g0_norm = _stopping_threshold(problem, tol)
    n_iter = xp.zeros(g0_norm.shape, dtype=xp.int64)
    stalled = xp.zeros(g0_norm.shape, dtype=bool)
    overflowed = ~xp.isfinite(threshold)
    n_products = 0
    for iteration in range(max_iter + 1):
        v = problem.hinge(z)
        g = problem.gradient(V, v)
        g_norm = xp.sqrt(_dot(g, g))
        # An overflowed problem (inf or NaN gradient, now or at 0) stops here, and
        # fit_linear_svms refuses the result.
        overflowed |= ~xp.isfinite(g_norm)
        converged = (g_norm <= threshold) & ~overflowed
        todo = ~converged & ~stalled & ~overflowed
        if iteration == max_iter or not bool(todo.any()):
            break
        n_iter += todo
        D = ((v > 0) & todo).astype(V.dtype)
        forcing = xp.minimum(xp.sqrt(g_norm / _nonzero(g0_norm)), 0.5)
        P, XP, n_cg = _conjugate_gradient(problem, D, g, todo, forcing * g_norm)
        n_products += n_cg
        t, decrease = _exact_line_search(problem, V, z, P, XP, v)
        t = xp.where(todo, t, 0)
        # Below the precision of the dtype the objective stops decreasing: give up on
        # that problem rather than loop to max_iter (reported as not converged).
        stalled |= todo & (decrease <= 10 * eps * problem.objective(V, v)[:, None, :])
        V = V + t * P
        z = z + t * XP
    info = {
        "n_iter": to_numpy(n_iter[:, 0, :]),
        "converged": to_numpy(converged[:, 0, :]),
        "objective": to_numpy(problem.objective(V, v)),
        "n_hessian_products": n_products,
    }
    return V, info, bool(to_numpy(overflowed).any())


def _stopping_threshold(problem, tol, g0_norm=None):
    """LIBLINEAR's primal stopping rule, so that tol means what it means for LinearSVC
    with dual=False: ``||g|| <= tol * max(min(#pos, #neg), 1) / #samples * ||g(0)||``.
    Returns the threshold and ``||g(0)||``, shape (B, 1, L) each; ``g0_norm`` is
    ``||g(0)||`` where the caller has it (the dual's check at w = 0), else one product
    with X computes it."""
    xp = problem.xp
    if g0_norm is None:
        B, n, d = problem.X.shape
        zero = xp.zeros((B, d + 1, problem.y.shape[1]), dtype=problem.X.dtype)
        g0 = problem.gradient(zero, problem.hinge(xp.zeros((B, n, problem.y.shape[1]),
                                                           dtype=zero.dtype)))
        g0_norm = xp.sqrt(_dot(g0, g0))
    n_pos = (problem.y > 0).sum(axis=0)
    n_neg = (problem.y < 0).sum(axis=0)
    balance = xp.maximum(xp.minimum(n_pos, n_neg), 1) / xp.maximum(n_pos + n_neg, 1)
    return tol * balance.astype(g0_norm.dtype) * g0_norm, g0_norm


def _conjugate_gradient(problem, D, g, todo, threshold):
    """Approximate Newton direction: CG on ``H p = -g`` until ``||r|| <= threshold``.

    Returns the direction, ``X p + s p_b`` (accumulated from CG's own products, saving
    one pass over X) and the number of batched Hessian products used.  A problem leaves
    for good once its residual is small enough (``active`` only ever loses members), so
    the result does not depend on how often the host looks at ``active``.
    """
    xp = problem.xp
    P = xp.zeros_like(g)
    XP = xp.zeros(problem.X.shape[:2] + g.shape[2:], dtype=g.dtype)
    r = -g
    direction = r
    rr = _dot(r, r)
    active = todo & (xp.sqrt(rr) > threshold)
    interval = _sync_interval(xp)
    n_products = 0
    while n_products < _MAX_CG_ITER:
        if n_products % interval == 0 and not bool(active.any()):
            break
        Hd, u = problem.hessian_product(D, direction)
        n_products += 1
        alpha = xp.where(active, rr / _nonzero(_dot(direction, Hd)), 0)
        P = P + alpha * direction
        XP = XP + alpha * u
        r = r - alpha * Hd
        rr_new = _dot(r, r)
        active = active & (xp.sqrt(rr_new) > threshold)
        beta = xp.where(active, rr_new / _nonzero(rr), 0)
        rr = rr_new
        direction = r + beta * direction
    return P, XP, n_products


def _exact_line_search(problem, V, z, P, XP, v):
    """Minimise ``f(w + t p)`` over t > 0 for every problem; returns t and the decrease.

    ``f`` along p is convex and piecewise quadratic, its derivative piecewise linear and
    increasing, so Newton's step is exact once on the right piece.  The root is bracketed
    (``phi'(0) < 0`` for a descent direction) and Newton steps leaving the bracket are
    replaced by bisection (or doubling while no upper end is known).  A problem's t is
    frozen once it has settled, so extra rounds (see ``_sync_interval``) change nothing.
    """
    xp, C, y, m = problem.xp, problem.C, problem.y, problem.m
    wp = _dot(V, P)
    pp = _dot(P, P)
    shape = wp.shape
    t = xp.ones(shape, dtype=V.dtype)
    lo = xp.zeros(shape, dtype=V.dtype)
    hi = xp.full(shape, xp.inf, dtype=V.dtype)
    settled = xp.zeros(shape, dtype=bool)
    eps = float(np.finfo(V.dtype).eps)
    interval = _sync_interval(xp)
    for step_number in range(_MAX_LINE_SEARCH_ITER):
        if step_number % interval == 0 and step_number and bool(settled.all()):
            break
        viol = m * xp.maximum(1 - y * (z + t * XP), 0)
        slope = wp + t * pp - 2 * C * (y * XP * viol).sum(axis=1, keepdims=True)
        curvature = pp + 2 * C * ((viol > 0) * XP * XP).sum(axis=1, keepdims=True)
        lo = xp.where(slope <= 0, t, lo)
        hi = xp.where(slope >= 0, t, hi)
        step = t - slope / _nonzero(curvature)
        # step == t: t is the root to rounding; doubling from it would undo the search.
        inside = ((step > lo) & (step < hi)) | (step == t)
        fallback = xp.where(xp.isinf(hi), 2 * t, 0.5 * (lo + hi))
        t_next = xp.where(inside, step, fallback)
        done = xp.abs(t_next - t) <= 4 * eps * t
        t = xp.where(settled, t, t_next)
        settled = settled | done
    viol = m * xp.maximum(1 - y * (z + t * XP), 0)
    loss_change = C * ((viol * viol).sum(axis=1, keepdims=True) - (v * v).sum(
        axis=1, keepdims=True))
    decrease = -(t * wp + 0.5 * t * t * pp + loss_change)
    return t, decrease


def _dot(a, c):
    """Inner product of variables per problem, shape (B, 1, L)."""
    return (a * c).sum(axis=1, keepdims=True)


def _nonzero(a):
    """``a`` with zeros replaced by 1: a safe divisor where the quotient is masked."""
    return array_namespace(a).where(a != 0, a, 1)


def _check_batch(X, xp):
    if not (isinstance(X, np.ndarray) or is_cupy_array(X)):
        raise TypeError(f"X must be a numpy or CuPy array, got {type(X).__name__}")
    if X.ndim != 3:
        raise ValueError(f"X must be 3-D (versions x samples x features), got shape "
                         f"{X.shape}; use X[None] for a single training set")
    if X.shape[0] == 0:
        raise ValueError("X holds no versions (shape[0] == 0)")
    check_features(X.reshape(X.shape[0] * X.shape[1], X.shape[2]), name="X",
                   check_finite=False)  # _census counts NaN and inf, in its own pass
    if not X.dtype.isnative:  # the kernels are compiled for the machine's byte order
        X = X.astype(X.dtype.newbyteorder("="))
    X = xp.ascontiguousarray(at_least_float32(X))  # as _Problem holds it
    return X, _census(X)


def _check_targets(Y, n_samples, xp):
    if not (isinstance(Y, np.ndarray) or is_cupy_array(Y)):
        raise TypeError(f"Y must be a numpy or CuPy array, got {type(Y).__name__}")
    if Y.ndim != 2 or Y.shape[0] != n_samples or Y.shape[1] == 0:
        raise ValueError(f"Y must have shape (n_samples={n_samples}, n_labels >= 1), "
                         f"got {Y.shape}")
    Y = label_matrix(xp.asarray(to_numpy(Y) if xp is np else Y), "Y")
    ignored = to_numpy((Y == 0).all(axis=0))
    if ignored.any():
        warnings.warn(f"label column(s) {np.flatnonzero(ignored).tolist()} of Y are all 0 "
                      "(ignored): nothing to learn, their model is 0 and their scores are "
                      "meaningless", IgnoredLabelWarning, stacklevel=3)
    return Y


def at_least_float32(X):
    """``X`` itself, or as float32 when its dtype is narrower (float16): float16's range
    (65504) overflows in the products and its 11-bit mantissa in the sums."""
    return X.astype(np.float32) if X.dtype.itemsize < 4 else X


def _check_positive(value, name, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not (np.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, "
                         f"got {value}")


def _check_max_iter(max_iter):
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral):
        raise TypeError(f"max_iter must be an integer, got {max_iter!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    return int(max_iter)


def _initial_point(warm_start, X, n_labels, s, xp):
    """Zero, or the warm start in the solver layout (B, d + 1, L), bias weight last."""
    n_versions, _, d = X.shape
    V = xp.zeros((n_versions, d + 1, n_labels), dtype=X.dtype)
    if warm_start is None:
        return V
    try:
        W0, b0 = warm_start
    except (TypeError, ValueError):
        raise TypeError("warm_start must be a pair (W0, b0) or None") from None
    W0 = xp.asarray(W0, dtype=X.dtype)
    b0 = xp.asarray(b0, dtype=X.dtype)
    if W0.ndim == 2:
        W0 = W0[None]
    if b0.ndim == 1:
        b0 = b0[None]
    if (W0.ndim != 3 or W0.shape[0] not in (1, n_versions) or W0.shape[1] != n_labels
            or W0.shape[2] > d):
        raise ValueError(f"warm_start W0 must have shape ({n_labels}, <= {d}) or "
                         f"({n_versions}, {n_labels}, <= {d}), got {W0.shape}")
    if b0.ndim != 2 or b0.shape[0] not in (1, n_versions) or b0.shape[1] != n_labels:
        raise ValueError(f"warm_start b0 must have shape ({n_labels},) or "
                         f"({n_versions}, {n_labels}), got {b0.shape}")
    if count_nonfinite(W0.reshape(-1, 1)) or count_nonfinite(b0.reshape(-1, 1)):
        raise ValueError("warm_start contains NaN or infinite values")
    V[:, :W0.shape[2], :] = xp.swapaxes(W0, 1, 2)
    if s > 0:  # with s == 0 the bias weight is irrelevant and stays 0
        V[:, d, :] = b0 / s
    return V


class LinearSVM(BaseEstimator):
    """One-vs-rest linear SVM with LIBLINEAR's (and ``LinearSVC``'s) objective.

    Parameters
    ----------
    C : float, default 1.0
        Loss weight; the paper uses LIBLINEAR's default C = 1.
    tol : float, default 1e-4
        Relative gradient-norm tolerance, or duality gap (see :func:`fit_linear_svms`).
    max_iter : int, default 1000
        Maximum Newton iterations.
    intercept_scaling : float, default 1.0
        The constant feature that carries the regularised bias, as in ``LinearSVC``.

    Attributes
    ----------
    coef_ : array of shape (L, d)
    intercept_ : array of shape (L,)
    classes_ : numpy array of shape (L,)
        The class labels (1-D targets) or ``arange(L)`` (multi-label targets).
    multilabel_ : bool
        True when fitted on a 2-D {1, -1, 0} target matrix.
    n_iter_ : int
        Iterations of the slowest label: Newton iterations plus dual epochs.
    n_features_in_ : int

    Notes
    -----
    Binary 1-D targets also train one model per class (two, mirror images of each
    other) so that ``decision_function`` always has one column per class.
    """

    def __init__(self, C=1.0, tol=1e-4, max_iter=1000, intercept_scaling=1.0):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.intercept_scaling = intercept_scaling

    def fit(self, X, y):
        """Train one model per class (1-D ``y``) or per label column (2-D ``y``)."""
        check_features(X)
        xp = array_namespace(X)
        Y, self.classes_, self.multilabel_ = one_vs_rest_targets(y, X.shape[0], xp)
        W, b, info = fit_linear_svms(
            X[None], Y, C=self.C, intercept_scaling=self.intercept_scaling, tol=self.tol,
            max_iter=self.max_iter)
        if not info["converged"].all():
            warnings.warn(f"LinearSVM did not converge to tol={self.tol} for "
                          f"{int((~info['converged']).sum())} label(s); increase max_iter "
                          "or tol", ConvergenceWarning, stacklevel=2)
        self.coef_, self.intercept_ = W[0], b[0]
        self.n_iter_ = int((info["n_iter"] + info["n_epochs"]).max())
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X):
        """Scores ``X @ coef_.T + intercept_``, shape (n, L)."""
        if not hasattr(self, "coef_"):
            raise ValueError("this LinearSVM is not fitted yet: call fit first")
        check_features(X, n_features=self.n_features_in_)
        return X @ self.coef_.T + self.intercept_

    def predict(self, X):
        """Class of the highest score (1-D targets) or the sign matrix in {1, -1}."""
        scores = self.decision_function(X)
        xp = array_namespace(scores)
        if self.multilabel_:
            return xp.where(scores > 0, 1, -1).astype(xp.int8)
        best = xp.argmax(scores, axis=1)
        if xp is np:
            return self.classes_[best]
        return xp.asarray(self.classes_)[best]


def one_vs_rest_targets(y, n_samples, xp):
    """The (n, L) {1, -1, 0} solver targets for ``y`` on backend ``xp``, the label of
    each column, and whether ``y`` was multi-label (2-D) already."""
    if not (isinstance(y, np.ndarray) or is_cupy_array(y)):
        y = np.asarray(y)
    if y.shape[:1] != (n_samples,):
        raise ValueError(f"y has {y.shape[0] if y.ndim else 0} rows but X has {n_samples}")
    if y.ndim == 2:
        return label_matrix(xp.asarray(y), "y"), np.arange(y.shape[1]), True
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D classes or a 2-D label matrix, got shape {y.shape}")
    y_host = to_numpy(y)
    if y_host.dtype.kind in "fc" and not np.isfinite(y_host).all():
        raise ValueError("y contains NaN or infinite class labels")
    classes = np.unique(y_host)
    if classes.size < 2:
        raise ValueError(f"y needs samples of at least 2 classes, got {classes.size}")
    Y = np.where(y_host[:, None] == classes[None, :], 1, -1).astype(np.int8)
    return xp.asarray(Y), classes, False
