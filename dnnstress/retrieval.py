"""Retrieval scores of stressed features: nearest neighbours, recall@k, k-NN accuracy, mAP@k.

The downstream task beyond the paper's linear SVM (issue 9, part 3): every test vector
queries the training set by inner product on L2-normalised features (cosine
similarity), once in the unstressed space and once in the stressed one.

- ``recall@k``: the fraction of a test vector's ``k`` exact nearest training neighbours
  in the UNSTRESSED space that the stressed space's ``k`` nearest contain, averaged.
- ``knn_accuracy@k``: majority vote of the labels of the ``k`` nearest (stressed space);
  a tie between labels goes to the one met first in the ranking (the nearest).
- ``precision@k`` and ``map@k``: how many retrieved training items are relevant to the
  query (same label; for multi-label targets, at least one positive label in common).

Search is brute force, by blocked matrix products: ``block_rows`` queries at a time are
scored against the whole database, so memory stays at ``block_rows x n_train`` scores
whatever the number of queries (by default as many rows as make about 32 MiB of
scores: a matrix product of a few hundred rows runs well below the speed of a large
one).  Ranking is a total order, decreasing score and then increasing training index,
so results are deterministic, ties included, and the ``k`` nearest are the first ``k``
of the ``K > k`` nearest; the top k of a block costs one selection pass and one read
of the positions (:func:`_top_k`).  Written against the array API:
numpy or CuPy in, the same backend computes.
"""

from __future__ import annotations

import numpy as np

from dnnstress._array import array_namespace, check_count, check_features, to_numpy
from dnnstress.classify import l2_normalize

DEFAULT_KS = (1, 10, 100)
DEFAULT_BLOCK_ROWS = 256  # label bookkeeping: (rows, k, classes) booleans a block
SCORE_BLOCK_BYTES = 32 << 20


def nearest_neighbors(queries, database, k, *, block_rows=None):
    """The ``k`` database rows of largest inner product with every query.

    Parameters
    ----------
    queries : array of shape (n_queries, d)
    database : array of shape (n_database, d), on the backend of ``queries``
    k : int
        Neighbours per query, 1 to ``n_database``.
    block_rows : int or None, default None
        Queries scored per matrix product (None: about 32 MiB of scores); memory
        stays at a few times ``block_rows * n_database`` scores.

    Returns
    -------
    indices : int64 array of shape (n_queries, k)
        Database rows by decreasing inner product; equal scores by increasing index.
    scores : array of shape (n_queries, k)
        Their inner products, in the dtype of the product.

    Examples
    --------
    >>> nearest_neighbors(np.eye(3)[:2], np.array([[0.0, 1, 0], [1, 0, 0], [1, 0, 0]]), 2)[0]
    array([[1, 2],
           [0, 1]])
    """
    check_features(queries, name="queries")
    check_features(database, name="database", n_features=queries.shape[1])
    return _search(queries, database, check_count(k, "k", 1, database.shape[0]), block_rows)


def _search(queries, database, k, block_rows):
    """:func:`nearest_neighbors` of checked features."""
    xp = array_namespace(queries, database)
    n = queries.shape[0]
    indices = xp.empty((n, k), dtype=xp.int64)
    scores = xp.empty((n, k), dtype=xp.result_type(queries.dtype, database.dtype))
    if block_rows is None:
        block_rows = max(1, SCORE_BLOCK_BYTES // (database.shape[0] * scores.itemsize))
    block_rows = check_count(block_rows, "block_rows", 1, 1 << 30)
    database_t = database.T
    # One score buffer for all blocks: fresh blocks would pay page faults every time.
    block = xp.empty((min(block_rows, n), database.shape[0]), dtype=scores.dtype)
    for rows in _row_blocks(n, block_rows):
        block_scores = block[:rows.stop - rows.start]
        xp.matmul(queries[rows], database_t, out=block_scores)
        indices[rows], scores[rows] = _top_k(block_scores, k)
    return indices, scores


def _top_k(block_scores, k):
    """Top ``k`` of every row of a score block, ordered by (score desc, index asc).

    One selection pass finds every row's k-th score; the positions at or above it are
    then read in column order, so sorting their scores stably settles the ties by index.
    A row where more than k scores reach the k-th keeps the tied ones of lowest index.
    (An argpartition of positions costs twice the selection of values, and picks
    arbitrarily among ties.)
    """
    xp = array_namespace(block_scores)
    n_rows, n_cols = block_scores.shape
    if k == n_cols:
        candidates = xp.broadcast_to(xp.arange(n_cols), (n_rows, n_cols))
    else:
        kth = xp.partition(block_scores, n_cols - k, axis=1)[:, n_cols - k, None]
        chosen = block_scores >= kth
        tied = xp.nonzero(xp.count_nonzero(chosen, axis=1) > k)[0]
        if tied.size:  # rare on real features: keep the first of the scores equal to kth
            scores, bound = block_scores[tied], kth[tied]
            above = scores > bound
            equal = scores == bound
            wanted = k - xp.count_nonzero(above, axis=1)
            chosen[tied] = above | (equal & (xp.cumsum(equal, axis=1) <= wanted[:, None]))
        starts = xp.arange(n_rows, dtype=xp.int64)[:, None] * n_cols
        candidates = xp.reshape(xp.flatnonzero(chosen), (n_rows, k)) - starts
    order = xp.argsort(-xp.take_along_axis(block_scores, candidates, axis=1), axis=1,
                       kind="stable")
    indices = xp.take_along_axis(candidates, order, axis=1)
    return indices, xp.take_along_axis(block_scores, indices, axis=1)


def retrieval_scores(train, test, stressed_train, stressed_test, y_train=None, y_test=None,
                     *, ks=DEFAULT_KS, normalize=True, block_rows=None):
    """Retrieval scores of stressed features against the unstressed ones.

    Parameters
    ----------
    train, test : arrays of shape (n_train, d) and (n_test, d)
        Unstressed features: they define every test vector's true neighbours.
    stressed_train, stressed_test : arrays of shape (n_train, d') and (n_test, d')
        The same vectors after a stressor fitted on the training set.
    y_train, y_test : arrays, optional
        Labels: integer class per row (1-D), or multi-label targets (n, n_labels) whose
        positive entries (> 0) mark a label (VOC's {1, -1, 0}).  Without them only
        recall is computed; k-NN accuracy needs 1-D classes.
    ks : sequence of int, default (1, 10, 100)
        Neighbourhood sizes, each at most ``n_train``.
    normalize : bool, default True
        L2-normalise all four feature sets first (the inner product is then the cosine).
    block_rows : int or None, default None
        Test vectors per matrix product (None: about 32 MiB of scores).

    Returns
    -------
    scores : dict of float
        ``recall@k`` for every k; with labels ``precision@k`` and ``map@k``, and for
        1-D classes ``knn_accuracy@k``.

    Notes
    -----
    ``map@k`` averages, over queries with at least one relevant training item, the
    average precision at k: ``sum_i P@i rel_i / min(k, n_relevant)``.  Queries without
    any relevant training item are left out (their precision still counts as 0).
    """
    # l2_normalize counts NaN and inf itself: one pass over the features, not two.
    sets = _checked_sets(train, test, stressed_train, stressed_test, check_finite=not normalize)
    ks = _check_ks(ks, train.shape[0])
    labels = _checked_labels(y_train, y_test, train.shape[0], test.shape[0], train)
    if normalize:
        sets = [l2_normalize(x) for x in sets]
    train, test, stressed_train, stressed_test = sets
    deepest = max(ks)
    true, _ = _search(test, train, deepest, block_rows)
    found, _ = _search(stressed_test, stressed_train, deepest, block_rows)
    result = {f"recall@{k}": recall_at_k(true, found, k) for k in ks}
    if labels is not None:
        result.update(label_scores(found, *labels, ks))
        if labels[0].ndim == 1:
            result.update({f"knn_accuracy@{k}": knn_accuracy(found[:, :k], *labels)
                           for k in ks})
    return result


def recall_at_k(true_neighbors, found_neighbors, k):
    """Mean fraction of the first ``k`` true neighbours among the first ``k`` found."""
    xp = array_namespace(true_neighbors, found_neighbors)
    true, found = true_neighbors[:, :k], found_neighbors[:, :k]
    # Membership by sorting: a row's k indices are distinct, so the common ones appear
    # twice in the sorted concatenation.
    both = xp.sort(xp.concatenate([true, found], axis=1), axis=1)
    common = xp.count_nonzero(both[:, 1:] == both[:, :-1], axis=1)
    return float(xp.mean(common / k))


def label_scores(neighbors, y_train, y_test, ks):
    """``precision@k`` and ``map@k`` of ranked training ``neighbors`` (n_test,
    >= max(ks)) given the labels (see :func:`retrieval_scores`)."""
    xp = array_namespace(neighbors)
    relevant = _relevance(neighbors, y_train, y_test)
    n_relevant = _relevant_counts(y_train, y_test)
    ranks = xp.arange(1, relevant.shape[1] + 1)
    hits = xp.cumsum(relevant, axis=1)
    has_relevant = n_relevant > 0
    if not bool(xp.any(has_relevant)):
        raise ValueError("no test vector has a relevant training item (no label shared): "
                         "precision and mAP are undefined")
    result = {}
    for k in ks:
        result[f"precision@{k}"] = float(xp.mean(hits[:, k - 1] / k))
        gains = xp.sum(xp.where(relevant[:, :k], hits[:, :k] / ranks[:k], 0.0), axis=1)
        ap = gains[has_relevant] / xp.minimum(n_relevant[has_relevant], k)
        result[f"map@{k}"] = float(xp.mean(ap))
    return result


def knn_accuracy(neighbors, y_train, y_test, *, block_rows=DEFAULT_BLOCK_ROWS):
    """Accuracy of the majority label of ranked ``neighbors``; ties go to the nearest."""
    xp = array_namespace(neighbors)
    classes, train_codes = xp.unique(y_train, return_inverse=True)
    votes = train_codes.reshape(-1)[neighbors]  # (n_test, k) class positions
    n_classes, k = classes.shape[0], neighbors.shape[1]
    predicted = xp.empty(neighbors.shape[0], dtype=xp.int64)
    for rows in _row_blocks(neighbors.shape[0], block_rows):
        hits = votes[rows, :, None] == xp.arange(n_classes)  # (rows, k, classes)
        counts = xp.sum(hits, axis=1)
        first = xp.where(xp.any(hits, axis=1), xp.argmax(hits, axis=1), k)
        # More votes win; among equal counts the class whose first vote ranks nearest.
        predicted[rows] = xp.argmax(counts * (k + 1) - first, axis=1)
    return float(xp.mean(classes[predicted] == y_test))


def _row_blocks(n, block_rows):
    return (slice(start, min(start + block_rows, n)) for start in range(0, n, block_rows))


def _relevance(neighbors, y_train, y_test):
    """Boolean (n_test, K): is the retrieved training item relevant to the query?"""
    xp = array_namespace(neighbors)
    if y_train.ndim == 1:
        return y_train[neighbors] == y_test[:, None]
    if y_train.shape[1] <= _MAX_SET_LABELS:
        return (_label_sets(y_train)[neighbors] & _label_sets(y_test)[:, None]) != 0
    shared = (y_train[neighbors] > 0) & (y_test[:, None, :] > 0)
    return xp.any(shared, axis=2)


def _relevant_counts(y_train, y_test):
    """Training items relevant to each test vector (same class, or a shared label)."""
    xp = array_namespace(y_train)
    if y_train.ndim == 1:
        classes, sizes = xp.unique(y_train, return_counts=True)
        where = xp.clip(xp.searchsorted(classes, y_test), 0, classes.shape[0] - 1)
        return xp.where(classes[where] == y_test, sizes[where], 0)
    counts = xp.empty(y_test.shape[0], dtype=xp.int64)
    if y_train.shape[1] <= _MAX_SET_LABELS:
        # Few distinct label sets in a training set: count each once, not each image.
        sets, sizes = xp.unique(_label_sets(y_train), return_counts=True)
        test_sets = _label_sets(y_test)
        for rows in _row_blocks(y_test.shape[0], DEFAULT_BLOCK_ROWS):
            shared = (test_sets[rows, None] & sets) != 0
            counts[rows] = xp.sum(xp.where(shared, sizes, 0), axis=1)
        return counts
    positive_train = (y_train > 0).astype(xp.float32).T
    positive_test = (y_test > 0).astype(xp.float32)
    for rows in _row_blocks(y_test.shape[0], DEFAULT_BLOCK_ROWS):
        counts[rows] = xp.count_nonzero(positive_test[rows] @ positive_train > 0, axis=1)
    return counts


_MAX_SET_LABELS = 63  # label sets as bits of an int64


def _label_sets(y):
    """Every row's positive labels as the bits of one int64 (at most 63 labels)."""
    xp = array_namespace(y)
    bits = xp.asarray(1, dtype=xp.int64) << xp.arange(y.shape[1], dtype=xp.int64)
    return xp.sum(xp.where(y > 0, bits, 0), axis=1)


def _check_ks(ks, n_train):
    try:
        ks = tuple(ks)
    except TypeError:
        raise TypeError(f"ks must be a sequence of integers, got {ks!r}") from None
    if not ks:
        raise ValueError("ks is empty: give at least one neighbourhood size")
    for k in ks:
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k > n_train:
            raise ValueError(f"k = {k} exceeds the {n_train} training vectors; "
                             f"choose ks of at most {n_train}")
    return tuple(check_count(k, "k", 1, n_train) for k in ks)


def _checked_sets(train, test, stressed_train, stressed_test, check_finite):
    names = ("train", "test", "stressed_train", "stressed_test")
    sets = [train, test, stressed_train, stressed_test]
    for x, name in zip(sets, names):
        check_features(x, name=name, check_finite=check_finite)
    array_namespace(*sets)
    for a, b, what in ((train, test, ""), (stressed_train, stressed_test, "stressed_")):
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"{what}train has {a.shape[1]} features but {what}test has "
                             f"{b.shape[1]}")
    for a, b, what in ((train, stressed_train, "train"), (test, stressed_test, "test")):
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"{what} has {a.shape[0]} rows but stressed_{what} has "
                             f"{b.shape[0]}: stress the same vectors")
    return sets


def _checked_labels(y_train, y_test, n_train, n_test, like_array):
    if y_train is None and y_test is None:
        return None
    if y_train is None or y_test is None:
        raise ValueError("give both y_train and y_test, or neither")
    xp = array_namespace(like_array)
    y_train, y_test = (xp.asarray(to_numpy(y)) if xp is not np else np.asarray(y)
                       for y in (y_train, y_test))
    if y_train.ndim not in (1, 2) or y_train.ndim != y_test.ndim:
        raise ValueError(f"labels must be 1-D classes or 2-D multi-label targets of the "
                         f"same kind, got shapes {y_train.shape} and {y_test.shape}")
    if y_train.shape[0] != n_train or y_test.shape[0] != n_test:
        raise ValueError(f"labels have {y_train.shape[0]} and {y_test.shape[0]} rows but "
                         f"the features {n_train} and {n_test}")
    if y_train.ndim == 2 and y_train.shape[1] != y_test.shape[1]:
        raise ValueError(f"y_train has {y_train.shape[1]} labels but y_test "
                         f"{y_test.shape[1]}")
    return y_train, y_test
