"""The scores a sweep computes for every configuration: the SVM, k-NN, retrieval.

- ``"svm"`` (the default, the paper): the one-vs-rest linear SVM's accuracy, or its VOC
  mean average precision on multi-label data (:mod:`dnnstress.sweep.runner` trains it).
- ``"knn"``: k-NN classification accuracy: majority vote of the labels of a test
  vector's ``knn_k`` nearest training vectors by inner product of the L2-normalised
  stressed features; a tie between labels goes to the one whose first vote ranks
  nearest (:func:`dnnstress.retrieval.knn_accuracy`).  Single-label data only.
- ``"retrieval"``: ``recall@k`` of each test vector's ``k`` exact nearest training
  neighbours in the UNSTRESSED space, for every k of ``recall_ks``, and the label
  ``precision@label_k`` and ``map@label_k`` of the training items retrieved in the
  stressed space (:func:`dnnstress.retrieval.retrieval_scores`).

The first score is the sweep's primary one: its value fills the row's ``score``,
``metric`` and ``relative_score`` (the SVM's exactly as before scores existed).  Every
other value gets a column of its own named by its metric (``knn_accuracy``,
``recall@1``, ..., ``map@10``, or the SVM's ``accuracy``): :meth:`Scores.columns`.
The unstressed neighbours are searched once per sweep (:class:`NeighbourScorer`).
"""

from __future__ import annotations

import dataclasses

from dnnstress._array import array_namespace, check_count
from dnnstress.metrics import METRIC_NAMES
from dnnstress.retrieval import knn_accuracy, label_scores, nearest_neighbors, recall_at_k

SCORES = ("svm", "knn", "retrieval")
RETRIEVAL_PRIMARY_K = 10  # the primary retrieval score is recall@10


@dataclasses.dataclass(frozen=True)
class Scores:
    """Which scores a sweep computes, and their neighbourhood sizes.

    Parameters
    ----------
    names : tuple of str, or a comma-separated str
        Any of ``svm, knn, retrieval``, each at most once; the first is the primary.
    knn_k : int
        Neighbours voting in ``"knn"``.
    recall_ks : tuple of int
        The ``recall@k`` of ``"retrieval"`` (10 among them when it is the primary).
    label_k : int
        The k of ``"retrieval"``'s ``precision@k`` and ``map@k``.
    """

    names: tuple[str, ...] = ("svm",)
    knn_k: int = 10
    recall_ks: tuple[int, ...] = (1, 10, 100)
    label_k: int = 10

    def __post_init__(self):
        names = self.names
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else names
        try:
            names = tuple(names)
        except TypeError:
            raise TypeError(f"scores must be names ({', '.join(SCORES)}), got "
                            f"{self.names!r}") from None
        unknown = [n for n in names if n not in SCORES]
        if unknown or not names:
            given = ", ".join(map(repr, unknown)) or "(none given)"
            raise ValueError(f"unknown score(s) {given}; choose from {', '.join(SCORES)}")
        if len(set(names)) != len(names):
            raise ValueError(f"scores {', '.join(names)} name one twice")
        object.__setattr__(self, "names", names)
        check_count(self.knn_k, "knn_k", 1, 1 << 30)
        check_count(self.label_k, "label_k", 1, 1 << 30)
        if not isinstance(self.recall_ks, tuple) or not self.recall_ks:
            raise ValueError(f"recall_ks must be a non-empty tuple of integers, got "
                             f"{self.recall_ks!r}")
        for k in self.recall_ks:
            check_count(k, "recall_ks values", 1, 1 << 30)
        if names[0] == "retrieval" and RETRIEVAL_PRIMARY_K not in self.recall_ks:
            raise ValueError(f"retrieval as the primary score is recall@"
                             f"{RETRIEVAL_PRIMARY_K}: include {RETRIEVAL_PRIMARY_K} in "
                             f"recall_ks {self.recall_ks}")

    @classmethod
    def of(cls, scores) -> Scores:
        """``scores`` as a :class:`Scores`: one already, or its names."""
        return scores if isinstance(scores, cls) else cls(scores)

    def metrics(self, svm_metric: str) -> tuple[str, ...]:
        """Every value's metric name, the primary's first; ``svm_metric`` is the SVM's
        (``accuracy`` or the AP method's, :func:`svm_metric`)."""
        own = {"svm": (svm_metric,), "knn": ("knn_accuracy",),
               "retrieval": (*(f"recall@{k}" for k in self.recall_ks),
                             f"precision@{self.label_k}", f"map@{self.label_k}")}
        primary = {"svm": svm_metric, "knn": "knn_accuracy",
                   "retrieval": f"recall@{RETRIEVAL_PRIMARY_K}"}[self.names[0]]
        others = [m for name in self.names for m in own[name] if m != primary]
        return (primary, *others)

    def columns(self, svm_metric: str) -> tuple[str, ...]:
        """The extra columns of the rows: every metric but the primary (in ``score``)."""
        return self.metrics(svm_metric)[1:]

    def row_columns(self, values: dict, svm_metric: str) -> dict:
        """A row's ``score``, ``metric`` and extra columns from a configuration's
        ``values`` (metric name -> float)."""
        primary, *others = self.metrics(svm_metric)
        return {"score": values[primary], "metric": primary,
                **{name: values[name] for name in others}}

    def depth(self) -> int:
        """Neighbours one stressed search must return for every chosen score (0: none)."""
        depths = {"knn": (self.knn_k,), "retrieval": (*self.recall_ks, self.label_k)}
        return max((k for name in self.names for k in depths.get(name, ())), default=0)

    def check(self, n_train: int, multilabel: bool) -> None:
        """Refuse what these features cannot score (before a sweep writes anything)."""
        if "knn" in self.names and multilabel:
            raise ValueError("the knn score (k-NN classification accuracy) needs "
                             "single-label features; these are multi-label: choose svm "
                             "or retrieval")
        if self.depth() > n_train:
            raise ValueError(f"the scores {', '.join(self.names)} look at {self.depth()} "
                             f"neighbours but the features have {n_train} training "
                             f"vectors; choose a smaller knn_k, recall_ks or label_k")

    def as_dict(self) -> dict:
        """JSON-ready description (part of a sweep's identity in ``sweep.json``): the
        names and the ks of the chosen scores only, which are all the rows depend on."""
        chosen = {"names": list(self.names)}
        if "knn" in self.names:
            chosen["knn_k"] = self.knn_k
        if "retrieval" in self.names:
            chosen.update(recall_ks=list(self.recall_ks), label_k=self.label_k)
        return chosen


def svm_metric(multilabel: bool, ap_method: str) -> str:
    """The metric name of the SVM's score (that of :func:`dnnstress.metrics.score_predictions`)."""
    return METRIC_NAMES[ap_method] if multilabel else "accuracy"


class NeighbourScorer:
    """The k-NN and retrieval values of stressed features, against the unstressed ones.

    ``fit`` takes the unstressed, L2-normalised features and their labels and, when
    ``"retrieval"`` is chosen, searches every test vector's true neighbours once for
    the whole sweep (``true_neighbors_``); ``score`` then needs one search per
    configuration, deep enough for every chosen score.

    Parameters
    ----------
    scores : Scores
    block_rows : int or None
        Test vectors per matrix product (None: about 32 MiB of scores); memory stays
        bounded however many test vectors there are.
    """

    def __init__(self, scores: Scores, block_rows=None):
        self.scores = scores
        self.block_rows = block_rows

    def fit(self, train_x, test_x, train_y, test_y) -> NeighbourScorer:
        """Labels on the features' backend; the true neighbours if retrieval is chosen."""
        xp = array_namespace(train_x, test_x)
        self.train_y_, self.test_y_ = xp.asarray(train_y), xp.asarray(test_y)
        self.true_neighbors_ = None
        if "retrieval" in self.scores.names:
            depth = max(self.scores.recall_ks)
            self.true_neighbors_, _ = nearest_neighbors(test_x, train_x, depth,
                                                         block_rows=self.block_rows)
        return self

    def score(self, train_x, test_x) -> dict:
        """``{metric: value}`` of the chosen k-NN and retrieval scores on stressed,
        L2-normalised features."""
        scores = self.scores
        found, _ = nearest_neighbors(test_x, train_x, scores.depth(),
                                     block_rows=self.block_rows)
        values = {}
        if "knn" in scores.names:
            values["knn_accuracy"] = knn_accuracy(found[:, :scores.knn_k], self.train_y_,
                                                  self.test_y_)
        if "retrieval" in scores.names:
            values.update({f"recall@{k}": recall_at_k(self.true_neighbors_, found, k)
                           for k in scores.recall_ks})
            values.update(label_scores(found, self.train_y_, self.test_y_,
                                       (scores.label_k,)))
        return values
