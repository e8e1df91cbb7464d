"""Table 3 of the paper: the smallest representation that keeps the score within a loss.

"Each column indicates the maximum desired loss with respect to the original score for an
experiment, while the cells indicate the minimum value which satisfies such requirement"
(paper, Sec. 3).  A *representation* is the stress parameter: the share of dimensions kept
(DR-1, DR-2), the number of values h (Q-1, Q-2) or the bits kept per value (Q-B).  FC has
two parameters, so its cell is the highest compression rate within the loss instead
(paper, Fig. 5).

Definition used for "minimum": the smallest representation such that it **and every
larger one** keep ``score >= (1 - max_loss) * baseline``.  The alternative, the smallest
representation that passes on its own, gives the same cell for every published cell we can
reproduce (the curves are monotone where it matters; ``tests/test_table3.py`` checks both),
so the paper does not decide between them.  We pick the stricter one because Table 3 is
read as a guarantee ("with only 10 % of the dimensions, we lose at most 2 %"), which a
lucky point on a noisy curve followed by a failing one would break.

Scores of repeated points (DR-1's 10 random draws) are averaged first, as the paper's
curves are.  Rows are dicts with the columns of ``results.csv`` (``None`` where empty).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import asdict, dataclass

from dnnstress.stress.accounting import (bits_for_levels, bits_per_vector, compression_rate,
                                         dr_schedule)

LOSSES = (0.01, 0.02, 0.03, 0.04, 0.05)

EXPERIMENT_NAMES = {
    "dr1": "DR-1 (random)", "dr2": "DR-2 (PCA)", "q1": "Q-1 (global)",
    "q2": "Q-2 (per dim.)", "qb": "Q-B (bits)", "fc": "FC (DR-2 + Q-2)",
}
# What people call the metrics whose keys results.csv records (dnnstress.metrics).
METRIC_NAMES = {"map_voc07_11pt": "mAP (VOC07 11-pt)", "map_area": "mAP (area under PR)",
                "accuracy": "accuracy"}
_MINIMISED = ("dr1", "dr2", "q1", "q2", "qb")
_PARAMETERS = ("kept_dims", "n_levels", "erased_bits")


@dataclass(frozen=True)
class Cell:
    """One cell of Table 3: the chosen point of one experiment for one loss.

    ``value`` is the representation in the paper's unit: the nominal kept share of
    dimensions (DR, from the DR schedule: 0.25 for 1024 of 4096), the number of values h
    (Q), the bits kept per value (Q-B) or the compression rate (FC).  ``score`` is the
    mean over repeats.
    """

    experiment: str
    max_loss: float
    value: float
    label: str
    score: float
    relative_score: float
    compression_rate: float
    n_features: int
    kept_dims: int | None = None
    n_levels: int | None = None
    erased_bits: int | None = None


@dataclass(frozen=True)
class Table3:
    """Table 3 for one run: ``cells[experiment, loss]`` is a :class:`Cell` or ``None``."""

    baseline: float
    metric: str
    losses: tuple
    experiments: tuple
    cells: dict

    def records(self) -> list[dict]:
        """One flat dict per cell (empty cells included, with ``value`` None)."""
        records = []
        for experiment in self.experiments:
            for loss in self.losses:
                cell = self.cells[experiment, loss]
                record = {"experiment": experiment, "max_loss": loss, "baseline": self.baseline,
                          "metric": self.metric}
                if cell is None:
                    record.update(value=None, label="–")
                else:
                    record.update({k: v for k, v in asdict(cell).items()
                                   if k not in ("experiment", "max_loss")})
                records.append(record)
        return records

    def to_markdown(self) -> str:
        """A markdown table: one line per experiment, one column per loss."""
        header = ["experiment"] + [f"≤ {_percent(loss)} loss" for loss in self.losses]
        lines = [
            f"Baseline score: {100 * self.baseline:.2f} % {metric_name(self.metric)}. "
            "Cells: smallest representation whose score, and that of every larger one, "
            "stays within the loss (DR: share of dimensions kept; Q: values per "
            "dimension; Q-B: bits kept per value); FC: highest compression rate within "
            "the loss.",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for experiment in self.experiments:
            labels = [self.cells[experiment, loss].label if self.cells[experiment, loss]
                      else "–" for loss in self.losses]
            lines.append(f"| {EXPERIMENT_NAMES.get(experiment, experiment)} | "
                         + " | ".join(labels) + " |")
        return "\n".join(lines) + "\n"

    def write_markdown(self, path) -> None:
        with open(path, "w") as handle:
            handle.write(self.to_markdown())

    def write_csv(self, path) -> None:
        """:meth:`records` as CSV, empty cells for missing values."""
        fields = ["experiment", "max_loss", "label", "value", "score", "relative_score",
                  "compression_rate", "n_features", "kept_dims", "n_levels", "erased_bits",
                  "baseline", "metric"]
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            for record in self.records():
                writer.writerow({k: "" if v is None else v for k, v in record.items()})


def baseline_score(rows) -> float:
    """The mean score of the ``baseline`` rows."""
    scores = [row["score"] for row in rows if row["experiment"] == "baseline"]
    if not scores:
        raise ValueError("no 'baseline' row: pass the baseline score explicitly")
    return _checked_baseline(sum(scores) / len(scores))


def minimum_representation(rows, experiment: str, max_loss: float, baseline=None):
    """The smallest representation of ``experiment`` that stays within ``max_loss``.

    Parameters
    ----------
    rows : iterable of dict
        Result rows (``results.csv`` columns); rows of other experiments are ignored.
    experiment : {"dr1", "dr2", "q1", "q2", "qb"}
    max_loss : float
        Largest relative loss allowed, a fraction (0.02 for 2 %).
    baseline : float, optional
        The unstressed score; default the mean of the ``baseline`` rows.

    Returns
    -------
    Cell or None
        The smallest representation ``r`` such that every representation ``>= r`` has a
        mean score ``>= (1 - max_loss) * baseline``; ``None`` if even the largest fails.
        Sizes are ordered by kept dimensions (DR), by h (Q) and by bits kept, i.e. fewer
        erased bits (Q-B).
    """
    if experiment not in _MINIMISED:
        raise ValueError(f"experiment must be one of {_MINIMISED}, got {experiment!r}")
    points = _mean_points(rows, experiment)
    baseline = baseline_score(rows) if baseline is None else _checked_baseline(baseline)
    threshold = (1.0 - _checked_loss(max_loss)) * baseline
    if experiment == "qb":
        points.sort(key=lambda p: -p["erased_bits"])  # fewest bits kept first
    else:
        points.sort(key=lambda p: p["n_levels" if experiment in ("q1", "q2") else "kept_dims"])
    chosen = None
    for point in reversed(points):  # from the largest down, until the first failure
        if point["score"] < threshold:
            break
        chosen = point
    return None if chosen is None else _cell(chosen, max_loss, baseline)


def best_compression(rows, experiment: str = "fc", max_loss: float = 0.01, baseline=None):
    """The point of ``experiment`` with the highest compression rate within ``max_loss``.

    Ties in compression rate (FC: every h from 17 to 32 costs 5 bits) go to the higher
    mean score.  Returns a :class:`Cell` whose ``value`` is the compression rate, or
    ``None`` if no point keeps ``score >= (1 - max_loss) * baseline``.
    """
    points = _mean_points(rows, experiment)
    baseline = baseline_score(rows) if baseline is None else _checked_baseline(baseline)
    threshold = (1.0 - _checked_loss(max_loss)) * baseline
    passing = [p for p in points if p["score"] >= threshold]
    if not passing:
        return None
    best = max(passing, key=lambda p: (p["compression_rate"], p["score"]))
    return _cell(best, max_loss, baseline, by_compression=True)


def table3(rows, losses=LOSSES, baseline=None) -> Table3:
    """Table 3 for every experiment present in ``rows``, one column per loss."""
    rows = list(rows)
    baseline = baseline_score(rows) if baseline is None else _checked_baseline(baseline)
    losses = tuple(_checked_loss(loss) for loss in losses)
    present = {row["experiment"] for row in rows}
    experiments = tuple(e for e in ("dr1", "dr2", "q1", "q2", "qb", "fc") if e in present)
    if not experiments:
        raise ValueError("no stressed rows (dr1, dr2, q1, q2, qb or fc) to tabulate")
    cells = {(experiment, loss): table3_cell(rows, experiment, loss, baseline)
             for experiment in experiments for loss in losses}
    metrics = sorted({row.get("metric") or "" for row in rows} - {""})
    return Table3(baseline=baseline, metric=", ".join(metrics) or "score", losses=losses,
                  experiments=experiments, cells=cells)


def table3_cell(rows, experiment: str, max_loss: float, baseline=None):
    """The cell of Table 3 for ``experiment`` and ``max_loss``: the one rule for every use.

    FC, with two parameters, gets :func:`best_compression`; every other experiment
    :func:`minimum_representation`.  The report's headline takes its cells from here too,
    so that it never names another configuration than the table (with Q-2 within 1 %,
    both say "h = 7" even where h = 8, also 3 bits, scores higher).
    """
    choose = best_compression if experiment == "fc" else minimum_representation
    return choose(rows, experiment, max_loss, baseline)


def metric_name(metric) -> str:
    """The human name of a metric key (``"map_voc07_11pt"`` -> ``"mAP (VOC07 11-pt)"``).

    Several keys joined by ", " (:attr:`Table3.metric`) are named one by one; an unknown
    key is kept as it is, and ``None`` is ``"score"``.
    """
    if not metric:
        return "score"
    return ", ".join(METRIC_NAMES.get(key, key) for key in metric.split(", "))


def qb_bits_kept(erased_bits: int) -> int:
    """Bits each value keeps after Q-B erases ``erased_bits``, as the accounting counts them.

    :func:`dnnstress.stress.accounting.bits_per_vector` of one value, so that Table 3, the
    headline and the Q-B figure all follow the storage accounting.
    """
    return bits_per_vector(1, erased_bits=erased_bits)


def nominal_kept_fraction(kept_dims: int, n_features: int) -> float:
    """The DR schedule's share for ``kept_dims`` (2047 of 4096 -> 0.5), else the ratio.

    The schedule's floors make ``kept_dims / n`` fall just short of the step (0.4998);
    the paper labels each step by its nominal share.
    """
    schedule = dr_schedule(n_features)
    if kept_dims in schedule:
        return (schedule.index(kept_dims) + 1) / len(schedule)
    return kept_dims / n_features


def _mean_points(rows, experiment):
    """Points of ``experiment`` with scores averaged over repeats, one per parameter set."""
    groups = defaultdict(list)
    for row in rows:
        if row["experiment"] == experiment:
            groups[tuple(row.get(k) for k in _PARAMETERS)].append(row)
    if not groups:
        raise ValueError(f"no rows for experiment {experiment!r}")
    points = []
    for key, group in groups.items():
        first = group[0]
        point = dict(zip(_PARAMETERS, key))
        point.update(experiment=experiment, n_features=int(first["n_features"]),
                     score=sum(row["score"] for row in group) / len(group),
                     compression_rate=_compression_rate(first))
        _check_parameters(point)
        points.append(point)
    return points


def _check_parameters(point):
    experiment = point["experiment"]
    needed = {"dr1": "kept_dims", "dr2": "kept_dims", "q1": "n_levels", "q2": "n_levels",
              "qb": "erased_bits", "fc": "n_levels"}.get(experiment)
    if needed and point[needed] is None:
        raise ValueError(f"a {experiment!r} row has no {needed}")
    if experiment == "fc" and point["kept_dims"] is None:
        raise ValueError("an 'fc' row has no kept_dims")


def _compression_rate(row):
    if row.get("compression_rate") is not None:
        return float(row["compression_rate"])
    n = int(row["n_features"])
    bits = bits_per_vector(row.get("kept_dims") or n, row.get("n_levels"),
                           row.get("erased_bits"))
    return compression_rate(n, bits)


def _cell(point, max_loss, baseline, by_compression=False):
    experiment, n = point["experiment"], point["n_features"]
    if by_compression:
        value = point["compression_rate"]
        label = f"{100 * value:.1f} %"
        if point["kept_dims"] is not None and point["n_levels"] is not None:
            label += (f" ({point['kept_dims']} of {n} dims x "
                      f"{bits_for_levels(point['n_levels'])} bits)")
    elif experiment in ("dr1", "dr2"):
        value = nominal_kept_fraction(point["kept_dims"], n)
        label = _percent(value)
    elif experiment in ("q1", "q2"):
        value = point["n_levels"]
        label = f"{value} values"
    else:
        value = qb_bits_kept(point["erased_bits"])
        label = f"{value} of {qb_bits_kept(0)} bits"
    return Cell(experiment=experiment, max_loss=max_loss, value=value, label=label,
                score=point["score"], relative_score=point["score"] / baseline,
                compression_rate=point["compression_rate"], n_features=n,
                kept_dims=point["kept_dims"], n_levels=point["n_levels"],
                erased_bits=point["erased_bits"])


def _percent(fraction):
    return f"{round(100 * fraction, 2):g} %"


def _checked_loss(max_loss):
    max_loss = float(max_loss)
    if not 0.0 <= max_loss < 1.0 or math.isnan(max_loss):
        raise ValueError(f"max_loss must be a fraction in [0, 1), got {max_loss}")
    return max_loss


def _checked_baseline(baseline):
    baseline = float(baseline)
    if not baseline > 0.0 or math.isinf(baseline):
        raise ValueError(f"baseline score must be positive and finite, got {baseline}")
    return baseline
