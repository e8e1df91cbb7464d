"""Accuracy and VOC average precision against hand computations and the devkit's code."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from dnnstress.metrics import (accuracy, average_precision, mean_average_precision,
                               mean_class_accuracy, score_predictions)


def devkit_voc07(confidence, gt):
    """VOCevalcls.m of the VOC 2007 devkit, line by line (1-based MATLAB made 0-based).

        [sc,si]=sort(-confidence);  tp=gt(si)>0;  fp=gt(si)<0;
        fp=cumsum(fp);  tp=cumsum(tp);  rec=tp/sum(gt>0);  prec=tp./(fp+tp);
        ap=0; for t=0:0.1:1, p=max(prec(rec>=t)); if isempty(p), p=0; end; ap=ap+p/11; end
    """
    si = sorted(range(len(confidence)), key=lambda i: -confidence[i])  # stable, as MATLAB
    tp = np.cumsum([gt[i] > 0 for i in si])
    fp = np.cumsum([gt[i] < 0 for i in si])
    rec = tp / sum(g > 0 for g in gt)
    with np.errstate(invalid="ignore"):  # 0/0 at leading "difficult" ranks: NaN, as MATLAB
        prec = tp / (fp + tp)
    # MATLAB's colon 0:0.1:1 is symmetric: k*0.1 up to the middle, 1 - (10-k)*0.1 after.
    thresholds = [k * 0.1 for k in range(6)] + [1 - (10 - k) * 0.1 for k in range(6, 11)]
    ap = 0.0
    for t in thresholds:
        chosen = prec[rec >= t]
        p = np.nanmax(chosen) if chosen.size else 0.0  # MATLAB's max ignores NaN
        ap += p / 11
    return ap


def devkit_vocap(confidence, gt):
    """VOCap.m (devkit 2010+) after the same ranking: area under the precision envelope."""
    si = sorted(range(len(confidence)), key=lambda i: -confidence[i])
    kept = [gt[i] for i in si if gt[i] != 0]
    tp = np.cumsum([g > 0 for g in kept])
    fp = np.cumsum([g < 0 for g in kept])
    rec, prec = tp / tp[-1], tp / (fp + tp)
    mrec = [0.0, *rec, 1.0]
    mpre = [0.0, *prec, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec))
               if mrec[i] != mrec[i - 1])


def test_voc07_hand_computed():
    # Ranked: +, -, +, -, -, +   (npos = 3)
    # recall    1/3 1/3 2/3 2/3 2/3 1;  precision 1, 1/2, 2/3, 1/2, 2/5, 1/2
    # t = 0 .. 0.3: max prec = 1 (4 thresholds); 0.4 .. 0.6: 2/3 (3); 0.7 .. 1: 1/2 (4)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, -1, 1, -1, -1, 1])
    expected = (4 * 1 + 3 * 2 / 3 + 4 * 0.5) / 11
    assert average_precision(scores, labels) == pytest.approx(expected, abs=1e-15)
    # Area: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3], 1/2 on (2/3, 1].
    assert average_precision(scores, labels, "area") == pytest.approx(
        (1 + 2 / 3 + 1 / 2) / 3, abs=1e-15)


def test_ignored_samples_count_for_nothing():
    scores = np.array([0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 0, -1, 1, 0, -1, 1])
    keep = labels != 0
    for method in ("voc07", "area"):
        assert average_precision(scores, labels, method) == average_precision(
            scores[keep], labels[keep], method)


def test_ties_keep_input_order_as_the_devkit():
    labels = np.array([-1, 1])
    assert average_precision(np.array([0.5, 0.5]), labels) == pytest.approx(
        (6 * 1 / 2 + 5 * 1 / 2) / 11)  # negative ranked first: precision 1/2 at recall 1
    assert average_precision(np.array([0.5, 0.5]), labels[::-1]) == 1.0


@pytest.mark.parametrize("seed", range(20))
def test_matches_devkit_transcription_with_ties_and_ignored(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    scores = np.round(rng.standard_normal(n), 1)  # rounding makes many ties
    labels = rng.choice([1, -1, 0], size=n, p=[0.3, 0.6, 0.1])
    labels[rng.integers(n)] = 1
    assert average_precision(scores, labels) == pytest.approx(
        devkit_voc07(scores.tolist(), labels.tolist()), abs=1e-12)
    assert average_precision(scores, labels, "area") == pytest.approx(
        devkit_vocap(scores.tolist(), labels.tolist()), abs=1e-12)


def test_recall_of_exactly_three_tenths_follows_matlab():
    # 10 positives: ranks 1-3 positive (recall 0.3 at precision 1), one negative, then
    # the other 7 positives (precision 4/5 .. 10/11).  MATLAB's t(4) is
    # 0.30000000000000004 > 3/10, so the devkit's max(prec(rec >= t)) there is 10/11,
    # not 1: three thresholds see precision 1 and eight see 10/11.
    labels = np.array([1, 1, 1, -1] + [1] * 7 + [-1] * 5)
    scores = -np.arange(labels.size, dtype=float)
    expected = (3 * 1 + 8 * 10 / 11) / 11
    assert average_precision(scores, labels) == pytest.approx(expected, abs=1e-15)
    assert devkit_voc07(scores.tolist(), labels.tolist()) == pytest.approx(expected,
                                                                           abs=1e-15)


@pytest.mark.parametrize("seed", range(10))
def test_area_against_sklearn_on_tie_free_data(seed):
    rng = np.random.default_rng(100 + seed)
    scores = rng.permutation(40).astype(float)  # no ties
    labels = np.where(rng.random(40) < 0.4, 1, -1)
    labels[0] = 1
    ours = average_precision(scores, labels, "area")
    theirs = average_precision_score(labels == 1, scores)
    # sklearn sums precision at each positive without the envelope; the envelope can
    # only raise precision, so ours >= theirs, with equality exactly where precision at
    # every positive already is the best at that or any higher recall.
    assert ours >= theirs - 1e-12
    order = np.argsort(-scores)
    hits = labels[order] == 1
    precision = np.cumsum(hits) / np.arange(1, 41)
    at_positives = precision[hits]
    envelope = np.maximum.accumulate(at_positives[::-1])[::-1]
    assert ours == pytest.approx(np.mean(envelope), abs=1e-12)
    assert theirs == pytest.approx(np.mean(at_positives), abs=1e-12)


def test_mean_average_precision_is_the_mean_over_columns():
    rng = np.random.default_rng(7)
    scores = rng.standard_normal((50, 3))
    labels = np.where(rng.random((50, 3)) < 0.3, 1, -1)
    labels[0] = 1
    for method in ("voc07", "area"):
        expected = np.mean([average_precision(scores[:, j], labels[:, j], method)
                            for j in range(3)])
        assert mean_average_precision(scores, labels, method) == pytest.approx(expected)


def test_perfect_and_worst_rankings():
    labels = np.array([1, 1, -1, -1, -1])
    assert average_precision(np.arange(5.0)[::-1], labels) == 1.0
    worst = average_precision(np.arange(5.0), labels)  # positives last: precision 1/4, 2/5
    assert worst == pytest.approx(2 / 5)


def test_accuracy_and_mean_class_accuracy():
    y_true = np.array([0, 0, 0, 0, 1, 1])
    y_pred = np.array([0, 0, 0, 0, 0, 1])
    assert accuracy(y_true, y_pred) == pytest.approx(5 / 6)
    assert mean_class_accuracy(y_true, y_pred) == pytest.approx((1 + 0.5) / 2)
    assert accuracy(np.array(["a", "b"]), np.array(["a", "a"])) == 0.5


def test_score_predictions_picks_the_metric():
    decision = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert score_predictions(decision, np.array([1, 0, 0])) == (pytest.approx(2 / 3),
                                                                "accuracy")
    assert score_predictions(decision, np.array(["b", "a", "b"]),
                             classes=np.array(["a", "b"])) == (1.0, "accuracy")
    labels = np.array([[-1, 1], [1, -1], [-1, 1]])
    assert score_predictions(decision, labels) == (1.0, "map_voc07_11pt")
    assert score_predictions(decision, labels, method="area") == (1.0, "map_area")


@pytest.mark.parametrize("call, match", [
    (lambda: average_precision(np.array([]), np.array([])), "empty"),
    (lambda: average_precision(np.ones(3), np.ones(4)), "shape mismatch"),
    (lambda: average_precision(np.ones(3), np.array([-1, 0, -1])), "no positive"),
    (lambda: average_precision(np.ones(2), np.array([1, 2])), "only 1"),
    (lambda: average_precision(np.array([np.nan, 1.0]), np.array([1, -1])), "NaN"),
    (lambda: average_precision(np.ones(2), np.array([1, -1]), "11pt"), "method"),
    (lambda: mean_average_precision(np.ones((3, 2)), np.array([[1, -1]] * 3)),
     r"\[1\]"),
    (lambda: accuracy(np.array([]), np.array([])), "empty"),
    (lambda: accuracy(np.ones(3), np.ones(2)), "shape mismatch"),
    (lambda: score_predictions(np.ones((3, 2)), np.ones(4)), "rows"),
    (lambda: average_precision(np.ones(3), np.array([1.0, np.nan, -1.0])), "NaN"),
    (lambda: accuracy(np.array([0.0, np.nan]), np.array([0.0, 1.0])), "NaN"),
])
def test_bad_input_is_refused_clearly(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_boolean_labels_mean_positive_or_negative_never_ignored():
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    present = np.array([True, False, True, False])
    signed = np.where(present, 1, -1)
    assert average_precision(scores, present) == average_precision(scores, signed)
    # Read as 0 ("ignored"), False would have made the ranking perfect: AP 1.
    assert average_precision(scores, present) < 1.0
    matrix = np.stack([present, ~present], axis=1)
    assert mean_average_precision(np.stack([scores, -scores], axis=1), matrix) == \
        mean_average_precision(np.stack([scores, -scores], axis=1), np.where(matrix, 1, -1))
