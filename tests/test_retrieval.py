"""Retrieval scoring against naive O(n^2) transcriptions, faiss, and hand-computed cases."""

import numpy as np
import pytest

from dnnstress._array import to_numpy
from dnnstress.classify import l2_normalize
from dnnstress.retrieval import (knn_accuracy, nearest_neighbors, recall_at_k,
                                 retrieval_scores)


def naive_neighbors(queries, database, k):
    """Every query's database rows sorted by (score desc, index asc), one by one."""
    result = []
    for q in queries:
        scores = [float(np.dot(q, row)) for row in database]
        result.append(sorted(range(len(database)), key=lambda j: (-scores[j], j))[:k])
    return np.array(result)


def naive_scores(train, test, s_train, s_test, y_train, y_test, k):
    """Unnormalised: the stressed vectors' half-integer products are exact, so their
    ties (and their order by index) are the same in any summation order."""
    true = naive_neighbors(test, train, k)
    found = naive_neighbors(s_test, s_train, k)
    recall, correct, precision, aps = [], [], [], []
    for i in range(len(test)):
        recall.append(len(set(true[i]) & set(found[i])) / k)
        labels = [y_train[j] for j in found[i]]
        best = max(set(labels), key=lambda c: (labels.count(c), -labels.index(c)))
        correct.append(best == y_test[i])
        rel = [label == y_test[i] for label in labels]
        precision.append(sum(rel) / k)
        n_rel = sum(y == y_test[i] for y in y_train)
        if n_rel:
            hits = np.cumsum(rel)
            aps.append(sum(hits[r] / (r + 1) for r in range(k) if rel[r]) / min(k, n_rel))
    return {f"recall@{k}": np.mean(recall), f"knn_accuracy@{k}": np.mean(correct),
            f"precision@{k}": np.mean(precision), f"map@{k}": np.mean(aps)}


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    # float64: the naive dot products and BLAS's agree to far below the score gaps.
    train = rng.standard_normal((60, 8))
    test = rng.standard_normal((23, 8))
    stress = lambda x: np.round(x * 2) / 2  # noqa: E731 - a coarse quantizer
    y_train, y_test = rng.integers(0, 4, 60), rng.integers(0, 5, 23)  # class 4: none
    return train, test, stress(train), stress(test), y_train, y_test


@pytest.mark.parametrize("block_rows", [1, 7, 256])
def test_nearest_neighbors_match_naive_search(block_rows):
    rng = np.random.default_rng(1)
    database = rng.standard_normal((50, 6))
    queries = rng.standard_normal((19, 6))
    indices, scores = nearest_neighbors(queries, database, 9, block_rows=block_rows)
    expected = naive_neighbors(queries, database, 9)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ database.T, expected, 1))


def test_ties_are_broken_by_index_whatever_argpartition_picks():
    # Integer-valued vectors: many exactly equal inner products, ties at the k-th place.
    rng = np.random.default_rng(2)
    database = rng.integers(-1, 2, (40, 3)).astype(np.float64)
    queries = rng.integers(-1, 2, (30, 3)).astype(np.float64)
    for k in (1, 5, 17, 40):
        np.testing.assert_array_equal(nearest_neighbors(queries, database, k, block_rows=8)[0],
                                      naive_neighbors(queries, database, k))


def test_scores_match_naive_transcription(problem):
    got = retrieval_scores(*problem, ks=(1, 5, 60), normalize=False, block_rows=10)
    for k in (1, 5, 60):
        for name, value in naive_scores(*problem, k).items():
            assert got[name] == pytest.approx(value, abs=1e-12), name


def test_unstressed_features_recall_everything(problem):
    train, test, _, _, y_train, y_test = problem
    got = retrieval_scores(train, test, train * 3.0, test * 3.0, ks=(1, 10))
    assert got == {"recall@1": 1.0, "recall@10": 1.0}


def test_hand_computed_case():
    # Database: classes 0, 0, 1; query near row 2 then rows 0 and 1.
    database = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    query = np.array([[0.3, 1.0]])
    found = nearest_neighbors(query, database, 3)[0]
    np.testing.assert_array_equal(found, [[2, 1, 0]])
    # k = 3 votes 0, 0 against 1: class 0; k = 1: class 1.
    assert knn_accuracy(found, np.array([0, 0, 1]), np.array([0])) == 1.0
    assert knn_accuracy(found[:, :1], np.array([0, 0, 1]), np.array([0])) == 0.0
    # A 1-1 tie at k = 2 goes to the nearest (row 2's class 1).
    assert knn_accuracy(np.array([[2, 0]]), np.array([0, 5, 1]), np.array([1])) == 1.0
    # recall: true [2, 1], found [2, 0] -> 1/2.
    assert recall_at_k(np.array([[2, 1]]), np.array([[2, 0]]), 2) == 0.5


def test_multi_label_precision_and_map():
    # Query shares label 0 with rows 0 and 2; row 1 only has label 1; "difficult" 0s
    # (VOC's convention) count as absent.
    y_train = np.array([[1, -1], [-1, 1], [1, 1]])
    y_test = np.array([[1, 0]])
    train = np.array([[1.0, 0.0], [0.8, 0.2], [0.5, 0.5]])
    test = np.array([[1.0, 0.01]])
    got = retrieval_scores(train, test, train, test, y_train, y_test, ks=(2, 3))
    # ranking 0, 1, 2: relevant, not, relevant.
    assert got["precision@2"] == 0.5 and got["precision@3"] == pytest.approx(2 / 3)
    assert got["map@2"] == 0.5  # (1/1) / min(2, 2)
    assert got["map@3"] == pytest.approx((1 + 2 / 3) / 2)
    assert "knn_accuracy@2" not in got


def test_faiss_flat_index_finds_the_same_neighbours():
    faiss = pytest.importorskip("faiss", reason="faiss-cpu not installed")
    rng = np.random.default_rng(3)
    database = l2_normalize(rng.standard_normal((300, 32)).astype(np.float32))
    queries = l2_normalize(rng.standard_normal((70, 32)).astype(np.float32))
    faiss.omp_set_num_threads(1)  # a shared 2-core machine: no spinning OpenMP team
    index = faiss.IndexFlatIP(32)
    index.add(database)
    _, expected = index.search(queries, 10)
    np.testing.assert_array_equal(nearest_neighbors(queries, database, 10, block_rows=16)[0],
                                  expected)


def test_faiss_agrees_up_to_ties():
    # Integer vectors: many equal inner products; faiss orders a tie as it likes, we
    # by index.  Same scores at every rank, the same items above the k-th score, and
    # the tied ones at the k-th among the items of that score.
    faiss = pytest.importorskip("faiss", reason="faiss-cpu not installed")
    rng = np.random.default_rng(5)
    database = rng.integers(-2, 3, (200, 4)).astype(np.float32)
    queries = rng.integers(-2, 3, (40, 4)).astype(np.float32)
    faiss.omp_set_num_threads(1)
    index = faiss.IndexFlatIP(4)
    index.add(database)
    k = 15
    their_scores, theirs = index.search(queries, k)
    ours, our_scores = nearest_neighbors(queries, database, k, block_rows=16)
    np.testing.assert_array_equal(our_scores, their_scores)
    full = queries @ database.T
    n_tied_rows = 0
    for row, (a, b) in enumerate(zip(ours, theirs)):
        kth = our_scores[row, -1]
        assert set(a[our_scores[row] > kth]) == set(b[their_scores[row] > kth])
        assert set(b[their_scores[row] == kth]) <= set(np.flatnonzero(full[row] == kth))
        n_tied_rows += np.count_nonzero(full[row] == kth) > np.count_nonzero(
            our_scores[row] == kth)
    assert n_tied_rows > 20  # the case is about ties at the k-th place


@pytest.mark.parametrize("call, message", [
    (lambda p: retrieval_scores(*p[:4], ks=(61,)), "k = 61 exceeds the 60 training"),
    (lambda p: retrieval_scores(*p[:4], ks=()), "ks is empty"),
    (lambda p: retrieval_scores(p[0], p[1], p[2][:5], p[3]), "train has 60 rows"),
    (lambda p: retrieval_scores(p[0], p[1][:, :3], p[2], p[3]), "train has 8 features"),
    (lambda p: retrieval_scores(*p[:4], p[4], ks=(1,)), "both y_train and y_test"),
    (lambda p: retrieval_scores(*p[:4], p[4][:3], p[5], ks=(1,)), "labels have 3 and 23 rows"),
    (lambda p: nearest_neighbors(p[0], p[1][:, :2], 1), "database has 2 features"),
    (lambda p: retrieval_scores(*p[:4], np.zeros(60), np.ones(23), ks=(1,)), "no test vector"),
])
def test_bad_input_is_named(problem, call, message):
    with pytest.raises(ValueError, match=message):
        call(problem)


def test_nan_features_are_refused(problem):
    train = problem[0].copy()
    train[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        retrieval_scores(train, *problem[1:4], ks=(1,))


def test_bench_retrieval_runs_and_reports_its_fractions(capsys):
    import argparse

    from dnnstress.benchmarks import retrieval as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--scale", "0.02", "--k", "5", "--rounds", "1"])
    args.device = "cpu"
    result = bench.run(args)["devices"]["cpu"]
    assert set(result["fraction_of_matmul"]) == {"nearest_neighbors", "retrieval_scores",
                                                 "sweep retrieval score"}
    assert all(f > 0 for f in result["fraction_of_matmul"].values())
    assert set(result["scores"]) == {f"{name}@{k}" for name in ("recall", "precision", "map")
                                     for k in (1, 5, 10)}
    assert "of the matmul throughput" in capsys.readouterr().out


def test_same_results_on_the_array_backend(xp, problem):
    device = [xp.asarray(a) for a in problem[:4]]
    got = retrieval_scores(*device, *problem[4:], ks=(1, 5), block_rows=10)
    assert got == pytest.approx(retrieval_scores(*problem, ks=(1, 5), block_rows=10),
                                abs=1e-12)
    indices, scores = nearest_neighbors(device[1], device[0], 4)
    assert type(indices) is type(device[0]) and type(scores) is type(device[0])
    np.testing.assert_array_equal(to_numpy(indices),
                                  nearest_neighbors(problem[1], problem[0], 4)[0])


@pytest.mark.parametrize("n_labels", [5, 70])  # label sets as int64 bits, and past 63
def test_multi_label_scores_match_naive_transcription(n_labels):
    rng = np.random.default_rng(4)
    y_train = rng.choice([1, -1, 0], (80, n_labels), p=[0.06, 0.9, 0.04])
    y_test = rng.choice([1, -1, 0], (15, n_labels), p=[0.06, 0.9, 0.04])
    train, test = rng.standard_normal((80, 6)), rng.standard_normal((15, 6))
    k = 12
    got = retrieval_scores(train, test, train, test, y_train, y_test, ks=(k,))
    found = naive_neighbors(l2_normalize(test), l2_normalize(train), k)
    shares = lambda i, j: bool(np.any((y_test[i] > 0) & (y_train[j] > 0)))  # noqa: E731
    precision, aps = [], []
    for i in range(15):
        rel = [shares(i, j) for j in found[i]]
        precision.append(sum(rel) / k)
        n_rel = sum(shares(i, j) for j in range(80))
        if n_rel:
            hits = np.cumsum(rel)
            aps.append(sum(hits[r] / (r + 1) for r in range(k) if rel[r]) / min(k, n_rel))
    assert got[f"precision@{k}"] == pytest.approx(np.mean(precision), abs=1e-12)
    assert got[f"map@{k}"] == pytest.approx(np.mean(aps), abs=1e-12)
    assert 0 < got[f"map@{k}"] < 1
