"""A sweep's scores (svm, knn, retrieval): values against sklearn and naive loops, the
row format, resume and refusal."""

import json

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from dnnstress.classify import l2_normalize
from dnnstress.features import FeatureSet
from dnnstress.sweep import Grid, Sweep, read_results, run_sweep
from dnnstress.sweep import runner
from dnnstress.sweep.scores import NeighbourScorer, Scores
from fakes import make_fashion

ALL = ("svm", "knn", "retrieval")
GRID = Grid(levels=(2, 4))


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """Fake Fashion-MNIST images as 784-d features: 120 train (recall@100 needs 100)."""
    arrays = make_fashion(tmp_path_factory.mktemp("fashion"), n_train=120, n_test=30)
    (train_x, train_y), (test_x, test_y) = (
        (images.reshape(len(images), -1).astype(np.float32) / 255, labels.astype(np.int64))
        for images, labels in (arrays["train"], arrays["test"]))
    return FeatureSet(train_x, train_y, test_x, test_y)


def test_columns_follow_the_chosen_scores():
    assert Scores(ALL).columns("accuracy") == (
        "knn_accuracy", "recall@1", "recall@10", "recall@100", "precision@10", "map@10")
    assert Scores("retrieval, svm", label_k=5).metrics("map_voc07_11pt") == (
        "recall@10", "recall@1", "recall@100", "precision@5", "map@5", "map_voc07_11pt")
    assert Scores(("knn",)).metrics("accuracy") == ("knn_accuracy",)
    assert Scores().columns("accuracy") == ()


@pytest.mark.parametrize("kwargs, message", [
    ({"names": ("svm", "ann")}, "unknown score.*'ann'.*choose from svm, knn, retrieval"),
    ({"names": ()}, r"\(none given\)"),
    ({"names": ("knn", "knn")}, "name one twice"),
    ({"names": ("retrieval",), "recall_ks": (1, 5)}, "include 10 in recall_ks"),
    ({"knn_k": 0}, "knn_k"),
])
def test_bad_scores_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Scores(**kwargs)


def test_knn_matches_sklearn_cosine_brute_force():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 6))
    y_train, y_test = rng.integers(0, 3, 90), rng.integers(0, 3, 40)
    train = centres[y_train] + 1.5 * rng.standard_normal((90, 6))
    test = centres[y_test] + 1.5 * rng.standard_normal((40, 6))
    k = 7
    train, test = l2_normalize(train), l2_normalize(test)
    reference = KNeighborsClassifier(k, metric="cosine", algorithm="brute").fit(train,
                                                                                y_train)
    votes = reference.predict_proba(test)
    # sklearn breaks a tie between labels by the smallest label, we by the nearest
    # vote: compare on the test vectors whose majority is unique (most of them).
    unique = (votes == votes.max(axis=1, keepdims=True)).sum(axis=1) == 1
    assert unique.sum() >= 30
    expected = np.mean(reference.predict(test[unique]) == y_test[unique])
    got = NeighbourScorer(Scores(("knn",), knn_k=k)).fit(
        train, test[unique], y_train, y_test[unique]).score(train, test[unique])
    assert got["knn_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert 0.3 < expected < 1


def _naive_rank(query, database):
    scores = [float(np.dot(query, row)) for row in database]
    return sorted(range(len(database)), key=lambda j: (-scores[j], j))


def test_retrieval_matches_a_naive_double_loop():
    rng = np.random.default_rng(1)
    train, test = rng.standard_normal((40, 5)), rng.standard_normal((12, 5))
    y_train, y_test = rng.integers(0, 3, 40), rng.integers(0, 3, 12)
    s_train, s_test = np.round(train * 2) / 2, np.round(test * 2) / 2
    scores = Scores(("retrieval",), recall_ks=(1, 3, 10), label_k=6)
    # Unnormalised half-integer products are exact: ties rank the same in any order.
    got = NeighbourScorer(scores, block_rows=5).fit(train, test, y_train, y_test).score(
        s_train, s_test)
    recalls = {k: [] for k in (1, 3, 10)}
    precision, aps = [], []
    for i in range(12):
        true, found = _naive_rank(test[i], train), _naive_rank(s_test[i], s_train)
        for k in recalls:
            recalls[k].append(len(set(true[:k]) & set(found[:k])) / k)
        relevant = [y_train[j] == y_test[i] for j in found[:6]]
        precision.append(sum(relevant) / 6)
        hits, gains = 0, 0.0
        for rank, rel in enumerate(relevant, 1):
            hits += rel
            gains += hits / rank if rel else 0.0
        aps.append(gains / min(6, int(np.sum(y_train == y_test[i]))))
    expected = {**{f"recall@{k}": np.mean(v) for k, v in recalls.items()},
                "precision@6": np.mean(precision), "map@6": np.mean(aps)}
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
    assert got["recall@10"] < 1


def test_sweep_with_every_score_fills_the_columns(fashion, tmp_path):
    sweep = Sweep(fashion, tmp_path, experiments="q2", grid=GRID, progress=False,
                  scores=ALL).run()
    rows = read_results(tmp_path)
    extra = ["knn_accuracy", "recall@1", "recall@10", "recall@100", "precision@10",
             "map@10"]
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header[-6:] == extra and sweep.written == 3
    assert [r["metric"] for r in rows] == ["accuracy"] * 3
    baseline = rows[0]
    assert baseline["experiment"] == "baseline" and baseline["relative_score"] == 1.0
    assert all(baseline[f"recall@{k}"] == 1.0 for k in (1, 10, 100))
    for row in rows:
        assert all(0 <= row[name] <= 1 for name in extra)
    assert rows[1]["recall@10"] < 1  # q2 at h = 2 moves neighbours
    # The k-NN and retrieval columns are those of the scorer on the same features.
    s = Scores(ALL)
    x = [l2_normalize(a) for a in (fashion.train_x, fashion.test_x)]
    direct = NeighbourScorer(s).fit(*x, fashion.train_y, fashion.test_y).score(*x)
    assert {name: baseline[name] for name in extra} == pytest.approx(direct, abs=1e-12)
    info = json.loads((tmp_path / "sweep.json").read_text())
    assert info["runs"][-1]["score_columns"] == ["score", *extra]
    assert info["scores"]["names"] == list(ALL)
    # Resumed with the same scores: nothing to do.
    assert Sweep(fashion, tmp_path, experiments="q2", grid=GRID, progress=False,
                 scores=ALL).run().skipped == 3
    with pytest.raises(ValueError, match="scores"):
        Sweep(fashion, tmp_path, experiments="q2", grid=GRID, progress=False,
              scores=("svm", "knn")).run()
    with pytest.raises(ValueError, match="scores"):
        Sweep(fashion, tmp_path, experiments="q2", grid=GRID, progress=False).run()


def test_primary_knn_and_retrieval_train_no_svm(fashion, tmp_path, monkeypatch):
    def no_svm(*args, **kwargs):
        raise AssertionError("an SVM was trained")

    monkeypatch.setattr(runner, "fit_linear_svms", no_svm)
    run_sweep(fashion, tmp_path / "r", experiments="q2", grid=GRID, progress=False,
              scores="retrieval")
    rows = read_results(tmp_path / "r")
    assert [r["metric"] for r in rows] == ["recall@10"] * 3
    assert rows[0]["score"] == 1.0 and "recall@100" in rows[0] and "svm" not in rows[0]
    run_sweep(fashion, tmp_path / "k", experiments="q2", grid=GRID, progress=False,
              scores=Scores(("knn",), knn_k=3))
    rows = read_results(tmp_path / "k")
    assert rows[0]["metric"] == "knn_accuracy" and rows[1]["relative_score"] == pytest.approx(
        rows[1]["score"] / rows[0]["score"])


def test_old_sweep_json_without_scores_means_the_svm(fashion, tmp_path):
    run_sweep(fashion, tmp_path, experiments="q2", grid=Grid(levels=(2,)), progress=False)
    path = tmp_path / "sweep.json"
    info = json.loads(path.read_text())
    assert info.pop("scores") == {"names": ["svm"]}
    path.write_text(json.dumps(info))
    sweep = Sweep(fashion, tmp_path, experiments="q2", grid=GRID, progress=False).run()
    assert (sweep.skipped, sweep.written) == (2, 1)
    with pytest.raises(ValueError, match="scores"):
        Sweep(fashion, tmp_path, experiments="q2", grid=GRID, progress=False,
              scores="svm,knn").run()


def test_unscorable_features_are_refused_before_writing(fashion, tmp_path):
    with pytest.raises(ValueError, match="100 neighbours but the features have 50"):
        Sweep(FeatureSet(fashion.train_x[:50], fashion.train_y[:50], fashion.test_x,
                         fashion.test_y), tmp_path / "a", scores="retrieval")
    Y = np.where(np.random.default_rng(0).random((120, 3)) < 0.5, 1, -1).astype(np.int8)
    multilabel = FeatureSet(fashion.train_x, Y, fashion.train_x[:30], Y[:30])
    with pytest.raises(ValueError, match="single-label"):
        Sweep(multilabel, tmp_path / "b", scores="svm,knn")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_command_line_scores(fashion, tmp_path, capsys):
    from dnnstress.cli import main

    path = fashion.save(tmp_path / "f.npz")
    assert main(["sweep", str(path), "--out", str(tmp_path / "s"), "--experiments", "q2",
                 "--levels", "2", "--scores", "knn,svm", "--quiet",
                 "--json", str(tmp_path / "s.json")]) == 0
    rows = read_results(tmp_path / "s")
    assert [r["metric"] for r in rows] == ["knn_accuracy"] * 2 and "accuracy" in rows[0]
    assert json.loads((tmp_path / "s.json").read_text())["params"]["scores"] == ["knn", "svm"]
    with pytest.raises(SystemExit):
        main(["sweep", str(path), "--out", str(tmp_path / "t"), "--scores", "svm,ann"])
    assert "choose from svm, knn, retrieval" in capsys.readouterr().err


def test_same_values_on_the_array_backend(xp):
    rng = np.random.default_rng(2)
    train, test = (l2_normalize(rng.standard_normal(shape)) for shape in ((50, 6), (20, 6)))
    y_train, y_test = rng.integers(0, 3, 50), rng.integers(0, 3, 20)
    s = Scores(ALL, recall_ks=(1, 10), label_k=4)
    stressed = [np.round(x * 4) / 4 for x in (train, test)]
    expected = NeighbourScorer(s).fit(train, test, y_train, y_test).score(*stressed)
    got = NeighbourScorer(s, block_rows=7).fit(xp.asarray(train), xp.asarray(test), y_train,
                                               y_test).score(*map(xp.asarray, stressed))
    assert got == pytest.approx(expected, abs=1e-12)
