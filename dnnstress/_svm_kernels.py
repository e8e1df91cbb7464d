"""Compiled CPU kernels of the linear SVM's dual coordinate descent (numba).

The problem is LIBLINEAR's L2-loss SVC (solver 1) with its bias as a weight on a
constant feature ``s``; its dual is ``min_a 0.5 a'(Q + I / 2C) a - sum(a)``, ``a >= 0``,
``Q_ij = y_i y_j x_i . x_j`` over the samples a label uses, and ``w = sum_i a_i y_i x_i``
(Hsieh, Chang, Lin, Keerthi & Sundararajan, ICML 2008).  One coordinate step reads one
sample, a dot product and an axpy with ``w``, so it is a loop a compiler must run, not
an array operation: these kernels are the numpy path of
:func:`dnnstress.classify.fit_linear_svms`, whose array-API Newton solver stays the
reference and the GPU path.

Why faster than LIBLINEAR itself on dense features: rows are read as contiguous float32
(LIBLINEAR walks (index, float64) pairs, 16 bytes per non-zero and an indirect access
to w each; ReLU features are about half non-zero), the dot and the axpy vectorise, the
labels of a group share each read of a sample (its row stays in the L1 cache for all of
them), and the groups run in parallel over the cores, where LIBLINEAR solves labels one
after another.

Layout: ``X`` (B, n, d) versions of the training set, and optionally the same as CSR
rows (``rows`` (B, n + 1) offsets into ``indices`` and ``values``; ``rows`` of shape
(B, 0) means dense), which the kernels then read instead, so that on very sparse
features (Q-B with 62 bits erased: 1 % non-zero) only the non-zeros cost; ``Y`` (n, L)
targets in {1, -1, 0} (0: left out of that label); ``alpha`` (B, n, L) float64 dual
variables (a sample's labels side by side, as they are visited); ``W`` (B, L, d + 1)
weights in the dtype of ``X``, the bias weight last.  A problem is a pair (version,
label) and only those with ``todo`` set are touched.  The labels of a version visit
the samples in one order, drawn from a generator seeded by the version's index and
the call's ``seed``, and each label's arithmetic is its own, so results depend
neither on the grouping of the labels nor on the number of threads.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np

from dnnstress._lanes import LANES, row_axpys, row_dots

# Contracting into FMAs and reassociating the dot products' sums is what lets LLVM
# vectorise them; the inputs were checked finite (scan_rows) before any such kernel
# runs.  scan_rows itself is compiled without fastmath: under "nnan" or "ninf" its
# test for NaN and infinity would be folded away.
_EXACT_JIT = dict(parallel=True, cache=True, nogil=True)
_JIT = dict(_EXACT_JIT, fastmath={"reassoc", "contract"})
_MULTIPLIER = np.uint64(2685821657736338717)


# Epochs smaller than this (values of X read x labels) run on one thread:
# on the shared 2-core machine the threads' synchronisation then costs more than they
# save (demo features with 64 - 1280 columns: 1.3 - 1.5x slower on two threads).
_PARALLEL_WORK = 1 << 25


@contextlib.contextmanager
def threads_for(values_read, n_labels):
    """Run the kernels on one thread while the work of an epoch, ``values_read`` (the
    values of X the kernels read: all, or the non-zeros of CSR rows) times the labels,
    is small (``_PARALLEL_WORK``), else on numba's threads."""
    previous = numba.get_num_threads()
    if values_read * n_labels < _PARALLEL_WORK:
        numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def label_groups(n_versions, n_labels):
    """Label boundaries (G + 1,) of the groups solved together: enough groups for every
    thread to have a task, but no smaller than needed, since a group reads X once for
    all its labels.  Results do not depend on it."""
    tasks_per_version = -(-numba.get_num_threads() // n_versions)
    n_groups = max(1, min(n_labels, tasks_per_version))
    return np.linspace(0, n_labels, n_groups + 1).round().astype(np.int64)


@numba.njit(inline="always")
def _task(task, groups):
    """The version, first label and number of labels of task ``task`` (tasks run over
    the versions, and within a version over the label groups)."""
    n_groups = groups.shape[0] - 1
    group = task % n_groups
    return task // n_groups, groups[group], groups[group + 1] - groups[group]


@numba.njit(inline="always")
def _dot(M, r, x, i, total):
    """``total + M[r, :d] . x_i``, sample i of dense rows ``x`` (n, d); CSR rows are
    read by :func:`_column_dots`, for all labels at once."""
    for j in range(x.shape[1]):
        total += M[r, j] * x[i, j]
    return total


@numba.njit(inline="always")
def _as_columns(M, first, width, d, csr):
    """Rows ``first .. first + width - 1`` of ``M`` (their first d entries) column by
    column, ``(d, lanes)``, the lanes padded to whole vectors of ``LANES`` (padding 0): how
    the kernels hold a group's weights on CSR rows, so that a non-zero's product with
    every label's weight, and its update of them, are one vector operation each.
    Empty, ``(0, 0)``, on dense rows (``csr`` False)."""
    lanes = -(-width // LANES) * LANES if csr else 0
    columns = np.zeros((d if csr else 0, lanes), dtype=M.dtype)
    for q in range(width if csr else 0):
        for j in range(d):
            columns[j, q] = M[first + q, j]
    return columns


@numba.njit(inline="always")
def _column_dots(columns, i, rows, indices, values, dots):
    """``dots[q] = columns[:, q] . x_i`` for every lane q, x_i sample i of CSR rows
    (``rows``: this version's n + 1 offsets into ``indices`` and ``values``), eight
    lanes at a time in vector registers (:func:`dnnstress._lanes.row_dots`).  The
    vector loops do not check bounds: ``dots`` has as many lanes as ``columns``, a
    whole number of ``LANES`` (:func:`_as_columns`)."""
    for base in range(0, dots.shape[0], LANES):
        row_dots(columns, base, rows[i], rows[i + 1], indices, values, dots)


@numba.njit(inline="always")
def _column_axpys(columns, steps, i, rows, indices, values):
    """``columns[:, q] += steps[q] * x_i`` for every lane q, then ``steps`` zeroed (a
    step of 0 leaves its lane as it is); ``steps`` as ``dots`` in :func:`_column_dots`."""
    for base in range(0, steps.shape[0], LANES):
        row_axpys(columns, base, rows[i], rows[i + 1], indices, values, steps)
    steps[:] = 0


@numba.njit(inline="always")
def _axpy(M, r, step, x, i, rows, indices, values):
    """``M[r, :d] += step * x_i``: sample i of dense rows ``x`` (n, d), or of CSR rows
    (as :func:`_column_dots` reads them) when ``rows`` is not empty."""
    if rows.shape[0]:
        for p in range(rows[i], rows[i + 1]):
            M[r, indices[p]] += step * values[p]
    else:
        for j in range(x.shape[1]):
            M[r, j] += step * x[i, j]


@numba.njit(inline="always")
def _random_below(state, bound):
    """A pseudo-random integer in [0, bound) from xorshift64* (``state``: 1 uint64),
    by Lemire's multiply-shift (``bound`` < 2^32): a 64-bit modulo costs tens of cycles
    per sample of every epoch."""
    x = state[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    state[0] = x
    high = (x * _MULTIPLIER) >> np.uint64(32)
    return np.int64((high * np.uint64(bound)) >> np.uint64(32))


@numba.njit(**_EXACT_JIT)
def scan_rows(X, counts, used):
    """One pass over ``X`` (B, n, d) for what a fit needs to know before it starts:
    ``counts`` (B * n,) the non-zeros of each row, ``used`` (blocks, d) whether each
    block of rows has a non-zero in each column (any over axis 0 says which columns the
    problem uses), and, returned, the number of NaN and infinite values.  numpy's
    finiteness test, ``X != 0``, the column test and the count were four passes over
    X and two masks: 8 of Q-B 62's 37 ms a fit."""
    n_versions, n, d = X.shape
    flat = X.reshape(n_versions * n, d)
    n_blocks = used.shape[0]
    nonfinite = 0
    for block in numba.prange(n_blocks):
        seen = used[block]
        for r in range(block * flat.shape[0] // n_blocks,
                       (block + 1) * flat.shape[0] // n_blocks):
            nonzero, bad = 0, 0
            for j in range(d):
                value = flat[r, j]
                nonzero += value != 0
                seen[j] |= value != 0
                bad += not abs(value) < np.inf
            counts[r] = nonzero
            nonfinite += bad
    return nonfinite


@numba.njit(**_EXACT_JIT)
def fill_rows(X, starts, indices, values):
    """The CSR rows of ``X`` (B, n, d): row r's non-zeros, in column order, at
    ``starts[r] ..`` of ``indices`` (their columns) and ``values``."""
    n_versions, n, d = X.shape
    flat = X.reshape(n_versions * n, d)
    for r in numba.prange(flat.shape[0]):
        p = starts[r]
        for j in range(d):
            if flat[r, j] != 0:
                indices[p] = j
                values[p] = flat[r, j]
                p += 1


@numba.njit(**_JIT)
def dual_coordinate_descent(X, rows, indices, values, Y, s, C, alpha, W, todo, gap, budget,
                            groups, epochs, seed):
    """Coordinate-descent epochs on every problem with ``todo``, LIBLINEAR's
    ``solve_l2r_l1l2_svc`` with shrinking, in place on ``alpha`` and ``W``.

    A problem stops once an epoch finds ``C sum_i PG_i^2 <= gap[k, l]`` over the
    projected gradients PG_i of the dual at the samples it visited, or after
    ``budget[k, l]`` epochs of this call; ``epochs[k, l]`` is increased by the epochs
    it ran.  At a fixed ``alpha`` that sum over all samples bounds the duality gap
    from above (each sample's term of the gap is at most ``C PG_i^2``), and a shrunk
    sample's PG was 0 when it was shrunk, so the rule ends where the gap is about
    ``gap``, which the caller then checks exactly, over every sample (LIBLINEAR's rule,
    the spread of PG, bounds no objective, and brings the shrunk samples back for one
    more epoch before it stops: 1 epoch in 30 on the demo's features).

    The labels ``groups[g] .. groups[g + 1] - 1`` of a version are solved together, one
    task per (version, group): each sample's row is read once per epoch for all of them
    (their weights stay in the L1/L2 cache), where a label at a time streams the whole
    of X from memory every epoch.  Every label of a version visits the samples in the
    same order, drawn from a generator seeded by the version and ``seed`` (a new one
    each call: rounds of two epochs that repeated the orders took 1.6x the epochs),
    so a label's result does not depend on the grouping (nor on the number of threads).
    """
    n_versions, n, d = X.shape
    n_groups = groups.shape[0] - 1
    diagonal = 0.5 / C  # the L2 loss's term of the dual Hessian's diagonal
    inverse_curvature = np.empty((n_versions, n))  # 1 / Q_ii of the dual
    for k in numba.prange(n_versions):
        for i in range(n):
            total = 0.0
            if rows.shape[1]:
                for p in range(rows[k, i], rows[k, i + 1]):
                    total += np.float64(values[p]) * values[p]
            else:
                for j in range(d):
                    total += np.float64(X[k, i, j]) * X[k, i, j]
            inverse_curvature[k, i] = 1.0 / (total + s * s + diagonal)
    for task in numba.prange(n_versions * n_groups):
        k, first, width = _task(task, groups)
        # Whole C-contiguous matrices, indexed at first + q: a slice would be typed as
        # of unknown layout, and its loops would not vectorise.
        x, w, a, own_rows = X[k], W[k], alpha[k], rows[k]
        typed = np.zeros(2, dtype=W.dtype)  # [0] a zero, [1] a cast, in W's dtype
        live = np.zeros(width, dtype=np.int64)  # the labels a sample is visited for
        csr = own_rows.shape[0] > 0
        columns = _as_columns(w, first, width, d, csr)  # written back at the end
        dots = np.zeros(columns.shape[1], dtype=W.dtype)
        steps = np.zeros(columns.shape[1], dtype=W.dtype)
        running = np.zeros(width, dtype=np.bool_)
        active = np.zeros((n, width), dtype=np.bool_)
        for q in range(width):
            running[q] = todo[k, first + q] and budget[k, first + q] > 0
            for i in range(n):
                active[i, q] = Y[i, first + q] != 0
        # Shrinking tests the bound alpha = 0 only: the L2 loss's alpha has no upper one.
        pg_max_old = np.full(width, np.inf)
        pg_max = np.empty(width)
        pg_squares = np.empty(width)
        state = np.full(1, (np.uint64(k) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1))
                        ^ (np.uint64(seed) * np.uint64(0xD1B54A32D192ED03)))
        order = np.arange(n)
        epoch = 0
        while running.any():
            for position in range(n):
                other = position + _random_below(state, n - position)
                order[position], order[other] = order[other], order[position]
            pg_max[:] = -np.inf
            pg_squares[:] = 0.0
            for position in range(n):
                i = order[position]
                n_live = 0
                for q in range(width):  # without a branch: active[i] is a coin toss
                    live[n_live] = q
                    n_live += running[q] & active[i, q]
                if n_live == 0:
                    continue
                if csr:
                    _column_dots(columns, i, own_rows, indices, values, dots)
                stepped = False
                for t in range(n_live):
                    q = live[t]
                    label = first + q
                    y = np.float64(Y[i, label])
                    if csr:
                        dot = dots[q]
                    else:
                        dot = _dot(w, label, x, i, typed[0])
                    margin = y * (np.float64(dot) + s * w[label, d])
                    gradient = margin - 1.0 + a[i, label] * diagonal
                    projected = gradient
                    if a[i, label] == 0.0:
                        if gradient > pg_max_old[q]:  # at its bound, likely to stay: shrink
                            active[i, q] = False
                            continue
                        projected = min(gradient, 0.0)
                    pg_max[q] = max(pg_max[q], projected)
                    pg_squares[q] += projected * projected
                    if abs(projected) > 1e-12:
                        new = max(a[i, label] - gradient * inverse_curvature[k, i], 0.0)
                        typed[1] = (new - a[i, label]) * y
                        step = typed[1]
                        a[i, label] = new
                        if csr:
                            steps[q] = step
                            stepped = True
                        else:
                            _axpy(w, label, step, x, i, own_rows, indices, values)
                        w[label, d] += step * s
                if stepped:
                    _column_axpys(columns, steps, i, own_rows, indices, values)
            epoch += 1
            for q in range(width):
                if not running[q]:
                    continue
                epochs[k, first + q] += 1
                if epoch >= budget[k, first + q]:
                    running[q] = False
                    continue
                if C * pg_squares[q] <= gap[k, first + q]:
                    running[q] = False
                    continue
                pg_max_old[q] = pg_max[q] if pg_max[q] > 0 else np.inf
        for q in range(width if csr else 0):
            for j in range(d):
                w[first + q, j] = columns[j, q]


@numba.njit(**_JIT)
def synchronize_weights(X, rows, indices, values, Y, s, C, alpha, W, todo, groups, dual):
    """``W = sum_i alpha_i y_i x_i`` afresh for every problem with ``todo``, summed in
    float64: the epochs' updates in W's dtype drift from it (by about 1e-5 of W in
    float32 after tens of epochs), and the dual is only solved for this ``W``.  Sets
    ``dual`` to the dual objective ``sum(alpha) - ||w||^2 / 2 - ||alpha||^2 / 4C`` of
    ``alpha``, from the float64 sum: a lower bound on the optimum whatever W's dtype."""
    n_versions, n, d = X.shape
    n_groups = groups.shape[0] - 1
    for task in numba.prange(n_versions * n_groups):
        k, first, width = _task(task, groups)
        total = np.zeros((width, d + 1))
        for i in range(n):
            for q in range(width):
                weight = alpha[k, i, first + q] * Y[i, first + q]
                if weight != 0.0 and todo[k, first + q]:
                    _axpy(total, q, weight, X[k], i, rows[k], indices, values)
                    total[q, d] += weight * s
        for q in range(width):
            label = first + q
            if todo[k, label]:
                value = 0.0
                for i in range(n):
                    value += alpha[k, i, label] * (1.0 - alpha[k, i, label] / (4 * C))
                for j in range(d + 1):
                    W[k, label, j] = total[q, j]
                    value -= 0.5 * total[q, j] * total[q, j]
                dual[k, label] = value


@numba.njit(**_JIT)
def primal_check(X, rows, indices, values, Y, s, C, W, todo, groups, gradient_norm,
                 objective):
    """The primal objective ``0.5 ||w||^2 + C sum_i max(0, 1 - y_i w . x_i)^2`` and the
    norm of its gradient at ``W`` of every problem with ``todo``, in float64: the
    stopping rule judges the weights returned, not the dual's view of them."""
    n_versions, n, d = X.shape
    n_groups = groups.shape[0] - 1
    for task in numba.prange(n_versions * n_groups):
        k, first, width = _task(task, groups)
        weights = np.zeros((width, d + 1))
        gradient = np.zeros((width, d + 1))
        loss = np.zeros(width)
        for q in range(width):
            for j in range(d + 1):
                weights[q, j] = W[k, first + q, j]
                gradient[q, j] = weights[q, j]
        live = np.zeros(width, dtype=np.int64)  # the labels sample i is checked for
        csr = rows.shape[1] > 0
        columns = _as_columns(weights, 0, width, d, csr)
        gradient_columns = np.zeros_like(columns)  # added into gradient at the end
        dots = np.zeros(columns.shape[1])
        steps = np.zeros(columns.shape[1])
        for i in range(n):
            n_live = 0
            for q in range(width):
                if Y[i, first + q] != 0 and todo[k, first + q]:
                    live[n_live] = q
                    n_live += 1
            if n_live == 0:
                continue
            if csr:
                _column_dots(columns, i, rows[k], indices, values, dots)
            stepped = False
            for t in range(n_live):
                q = live[t]
                y = np.float64(Y[i, first + q])
                if csr:
                    dot = dots[q] + s * weights[q, d]
                else:
                    dot = _dot(weights, q, X[k], i, s * weights[q, d])
                violation = 1.0 - y * dot
                if violation > 0:
                    loss[q] += violation * violation
                    step = -2.0 * C * y * violation
                    if csr:
                        steps[q] = step
                        stepped = True
                    else:
                        _axpy(gradient, q, step, X[k], i, rows[k], indices, values)
                    gradient[q, d] += step * s
            if stepped:
                _column_axpys(gradient_columns, steps, i, rows[k], indices, values)
        for q in range(width if csr else 0):
            for j in range(d):
                gradient[q, j] += gradient_columns[j, q]
        for q in range(width):
            if todo[k, first + q]:
                gradient_norm[k, first + q] = np.sqrt(np.sum(gradient[q] * gradient[q]))
                objective[k, first + q] = (0.5 * np.sum(weights[q] * weights[q])
                                           + C * loss[q])
