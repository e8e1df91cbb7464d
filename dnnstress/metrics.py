"""Scores of a stressed classifier: accuracy, and the VOC average precision.

The paper reports accuracy for the single-label sets (MIT-67, UPMC Food-101) and the
mean over the 20 classes of the average precision for PASCAL VOC 2007 (reference
README "Order and classifier").  Two AP definitions exist and both are here:

``method="voc07"`` (the default, metric name ``map_voc07_11pt``)
    The VOC 2007 devkit's ``VOCevalcls``: samples ranked by decreasing score (ties keep
    their input order, as MATLAB's stable ``sort``), precision and recall after every
    rank, then the mean over the 11 recall thresholds t = 0:0.1:1 of the best precision
    at recall >= t (0 where none).  This is what the 2007 challenge and the paper's
    tables use.
``method="area"`` (metric name ``map_area``)
    The devkit's later ``VOCap`` (VOC 2010 onwards): the area under the precision-recall
    curve after replacing precision by its monotone envelope (best precision at any
    higher recall).  Unlike ``sklearn.metrics.average_precision_score`` it takes that
    envelope and breaks score ties by rank rather than grouping them.

Labels are 1 (positive), -1 (negative) and 0 (ignored, VOC "difficult"): ignored samples
count neither as true nor false positives.  A label without positives has no AP (recall
is 0/0): that is an error, never a silent NaN or 0.  Scores are fractions in [0, 1].
Inputs may be numpy or CuPy arrays; the (small) score matrices are evaluated on the host.
"""

from __future__ import annotations

import numpy as np

from dnnstress._array import array_namespace, count_nonfinite, is_cupy_array, to_numpy

__all__ = ["accuracy", "mean_class_accuracy", "average_precision",
           "mean_average_precision", "score_predictions", "label_matrix", "METRIC_NAMES"]

# MATLAB builds 0:0.1:1 symmetrically: a + k*d for the first half, b - (n-k)*d for the
# second, so its thresholds are not exactly k/10 (0.3 is 0.30000000000000004).  Using
# the same doubles makes a recall of exactly 3/10 count as the devkit counts it.
_VOC07_RECALL_THRESHOLDS = np.array(
    [k * 0.1 for k in range(6)] + [1.0 - (10 - k) * 0.1 for k in range(6, 11)])

METRIC_NAMES = {"voc07": "map_voc07_11pt", "area": "map_area"}


def accuracy(y_true, y_pred) -> float:
    """Fraction of samples whose predicted class equals the true one."""
    y_true, y_pred = _paired_vectors(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def mean_class_accuracy(y_true, y_pred) -> float:
    """Mean over the classes present in ``y_true`` of the per-class accuracy (recall).

    Insensitive to class imbalance; equals :func:`accuracy` on balanced test sets such
    as MIT-67's (20 images per class).
    """
    y_true, y_pred = _paired_vectors(y_true, y_pred)
    classes, index = np.unique(y_true, return_inverse=True)
    hits = np.bincount(index, weights=(y_true == y_pred), minlength=classes.size)
    return float(np.mean(hits / np.bincount(index, minlength=classes.size)))


def average_precision(scores, labels, method: str = "voc07") -> float:
    """Average precision of one label's ``scores`` (n,) against ``labels`` (n,) in {1,-1,0}.

    ``method="voc07"``: VOC 2007 11-point interpolated AP; ``method="area"``: area under
    the precision envelope (VOC 2010+).  See the module docstring.  Raises ``ValueError``
    when no sample is positive.
    """
    scores = _as_host(scores, "scores", ndim=1)
    labels = _as_host(_host_labels(labels), "labels", ndim=1)
    _check_same_shape(scores, labels)
    _check_method(method)
    if not (labels == 1).any():
        raise ValueError("no positive sample: average precision is undefined")
    return _average_precision(scores, labels, method)


def mean_average_precision(scores, labels, method: str = "voc07") -> float:
    """Mean over the L columns of the average precision; ``scores``, ``labels`` (n, L).

    Raises ``ValueError`` naming any label column without a positive sample.
    """
    scores = _as_host(scores, "scores", ndim=2)
    labels = _as_host(_host_labels(labels), "labels", ndim=2)
    _check_same_shape(scores, labels)
    _check_method(method)
    missing = np.flatnonzero(~(labels == 1).any(axis=0))
    if missing.size:
        raise ValueError(f"label column(s) {missing.tolist()} have no positive sample: "
                         "average precision is undefined")
    return float(np.mean([_average_precision(scores[:, j], labels[:, j], method)
                          for j in range(labels.shape[1])]))


def score_predictions(decision, y_true, classes=None, method: str = "voc07"):
    """Score a classifier's ``decision`` (n, L) against ``y_true``: (score, metric name).

    1-D ``y_true`` (class labels): accuracy of ``classes[argmax(decision)]``, with
    ``classes`` the labels of the L columns (default ``0 .. L-1``; pass the
    classifier's ``classes_``), metric ``"accuracy"``.  2-D ``y_true`` in {1, -1, 0}:
    mean average precision, metric ``"map_voc07_11pt"`` or ``"map_area"``.
    """
    decision = _as_host(decision, "decision", ndim=2)
    y_true = to_numpy(y_true) if is_cupy_array(y_true) else np.asarray(y_true)
    if y_true.ndim == 2:
        return mean_average_precision(decision, y_true, method), METRIC_NAMES[
            _check_method(method)]
    if y_true.ndim != 1:
        raise ValueError(f"y_true must be 1-D classes or a 2-D label matrix, got shape "
                         f"{y_true.shape}")
    if y_true.shape[0] != decision.shape[0]:
        raise ValueError(f"decision has {decision.shape[0]} rows but y_true has "
                         f"{y_true.shape[0]}")
    classes = np.arange(decision.shape[1]) if classes is None else to_numpy(classes)
    if classes.shape != (decision.shape[1],):
        raise ValueError(f"classes has shape {classes.shape} but decision has "
                         f"{decision.shape[1]} columns")
    return accuracy(y_true, classes[np.argmax(decision, axis=1)]), "accuracy"


def label_matrix(labels, name="labels"):
    """``labels`` (numpy or CuPy) checked to hold only 1, -1 and 0, as an array.

    A boolean array is read as presence: True is 1 (positive), False is -1 (negative),
    never 0 ("ignored"), which ``False == 0`` would silently make it.  NaN is refused.
    """
    xp = array_namespace(labels)
    if labels.dtype == bool:
        return xp.where(labels, 1, -1).astype(xp.int8)
    if labels.dtype.kind in "fc" and labels.size and count_nonfinite(labels.reshape(-1, 1)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if not bool(((labels == 1) | (labels == -1) | (labels == 0)).all()):
        raise ValueError(f"{name} must contain only 1 (positive), -1 (negative) and "
                         "0 (ignored)")
    return labels


def _average_precision(scores, labels, method):
    """The devkit's computation on validated host vectors with at least one positive."""
    order = np.argsort(-scores, kind="stable")  # MATLAB's sort(-confidence) is stable
    ranked = labels[order]
    ranked = ranked[ranked != 0]  # ignored samples are neither tp nor fp
    tp = np.cumsum(ranked > 0)
    fp = np.cumsum(ranked < 0)
    recall = tp / tp[-1]
    precision = tp / (tp + fp)
    if method == "voc07":
        return float(np.mean([np.max(precision[recall >= t], initial=0.0)
                              for t in _VOC07_RECALL_THRESHOLDS]))
    # VOCap: precision envelope, then the area of the step function at recall changes.
    recall = np.concatenate(([0.0], recall, [1.0]))
    envelope = np.maximum.accumulate(np.concatenate(([0.0], precision, [0.0]))[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * envelope[steps]))


def _as_host(a, name, ndim):
    """``a`` as a non-empty numpy array of ``ndim`` dimensions with finite numbers."""
    a = to_numpy(a) if is_cupy_array(a) else np.asarray(a)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _paired_vectors(y_true, y_pred):
    y_true = to_numpy(y_true) if is_cupy_array(y_true) else np.asarray(y_true)
    y_pred = to_numpy(y_pred) if is_cupy_array(y_pred) else np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D, got shapes {y_true.shape} and "
                         f"{y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("y_true is empty")
    if y_true.dtype.kind in "fc" and not np.isfinite(y_true).all():
        raise ValueError("y_true contains NaN or infinite class labels")
    _check_same_shape(y_true, y_pred)
    return y_true, y_pred


def _check_same_shape(a, b):
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} and {b.shape}")


def _host_labels(labels):
    """Labels on the host, checked and with booleans read as 1 / -1 (label_matrix)."""
    return label_matrix(to_numpy(labels) if is_cupy_array(labels) else np.asarray(labels))


def _check_method(method):
    if method not in METRIC_NAMES:
        raise ValueError(f"method must be one of {sorted(METRIC_NAMES)}, got {method!r}")
    return method
