"""The rate-score frontier of a sweep: the best configuration for each storage budget.

Every configuration of every experiment (the paper's seven, the newer stressors, a
user's own) is a point: its storage (``bits_per_vector``) and its score, averaged over
repeats (DR-1's random draws) as the paper's curves are.  A point is on the *Pareto
frontier* when no other configuration has fewer or equal bits and a higher score; the
frontier answers "what is the best I can keep within B bits?" whichever stressor gives it.

Rows are dicts with the columns of ``results.csv``.  A row's parameters come from its
``params`` JSON column; rows of older sweeps, which lack it, get them from the typed
columns (``kept_dims``, ``n_levels``, ``erased_bits``).  Besides ``score`` (the linear
SVM's), a sweep may record other score columns (``knn_accuracy``, ``recall@10``, ...):
each has its own frontier, relative to the baseline row's value of that column.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from dnnstress.table3 import EXPERIMENT_NAMES, baseline_score, metric_name

# Parameters that tell repeats of one configuration apart, not configurations.
REPEAT_PARAMS = ("repeat", "seed")
# The parameters of the paper's experiments, for rows written before the params column.
_TYPED_PARAMS = ("kept_dims", "n_levels", "erased_bits")
_LEGACY_PARAMS = {"baseline": (), "dr1": ("kept_dims",), "dr2": ("kept_dims",),
                  "q1": ("n_levels",), "q2": ("n_levels",), "fc": ("kept_dims", "n_levels"),
                  "qb": ("erased_bits",)}
# How the common parameters read in labels; any other reads "name=value".
_PARAM_FORMATS = {"kept_dims": "{} dims", "kept_share": "{:g} % of dims", "n_levels": "h = {}",
                  "erased_bits": "{} bits erased"}
_RECORD_FIELDS = ("bits_per_vector", "bits_per_dimension", "experiment", "params", "label",
                  "score", "relative_score", "std", "n_repeats", "entropy_bits_per_vector",
                  "packed_bytes_per_vector")


@dataclass(frozen=True)
class Configuration:
    """One configuration of a sweep for one score column, its repeats averaged.

    ``value`` is the mean of the column over the repeats, ``std`` their standard
    deviation (ddof=1, as MATLAB's ``std`` the authors used; 0 for a single run) and
    ``relative`` the mean relative to the baseline's value of the column.
    ``entropy_bits_per_vector`` (the mean over repeats) and ``packed_bytes_per_vector``
    are the sizes a lossless coder and the packed codes reach; None where the rows
    have none (no codes, or rows of an older sweep).
    """

    experiment: str
    params: dict
    bits_per_vector: int
    n_features: int
    value: float
    std: float
    n_repeats: int
    relative: float
    entropy_bits_per_vector: float | None = None
    packed_bytes_per_vector: int | None = None

    @property
    def bits_per_dimension(self) -> float:
        """Bits per dimension of the original (unstressed) vector."""
        return self.bits_per_vector / self.n_features

    @property
    def label(self) -> str:
        """The experiment's name and its parameters: ``"FC (DR-2 + Q-2): 409 dims, h = 27"``."""
        name = EXPERIMENT_NAMES.get(self.experiment, self.experiment)
        return f"{name}: {format_params(self.params)}" if self.params else name

    def record(self) -> dict:
        """A flat dict for tables: bits, experiment, params, label, score, relative score,
        entropy and packed sizes."""
        return {"bits_per_vector": self.bits_per_vector,
                "bits_per_dimension": self.bits_per_dimension,
                "experiment": self.experiment, "params": self.params, "label": self.label,
                "score": self.value, "relative_score": self.relative, "std": self.std,
                "n_repeats": self.n_repeats,
                "entropy_bits_per_vector": self.entropy_bits_per_vector,
                "packed_bytes_per_vector": self.packed_bytes_per_vector}


@dataclass(frozen=True)
class Frontier:
    """The configurations of one score column and their Pareto frontier.

    ``points`` are the frontier's configurations sorted by bits (ties: higher score
    first, then the order of the rows); ``configurations`` are all of them, in the
    order the rows first name them.
    """

    column: str
    metric: str
    baseline: float
    configurations: tuple = field(repr=False)
    points: tuple

    def best_within(self, bits_per_vector) -> Configuration | None:
        """The highest-scoring configuration with at most ``bits_per_vector`` bits (ties:
        fewer bits), or ``None`` if none fits."""
        budget = _checked_budget(bits_per_vector)
        fitting = [p for p in self.points if p.bits_per_vector <= budget]
        if not fitting:
            return None
        return min(fitting, key=lambda p: (-p.value, p.bits_per_vector))

    def cheapest_within(self, max_loss: float) -> Configuration | None:
        """The configuration with the fewest bits that keeps ``relative >= 1 - max_loss``
        (ties: the higher score), or ``None``."""
        if not 0 <= max_loss < 1:
            raise ValueError(f"max_loss must be a fraction in [0, 1), got {max_loss}")
        passing = [p for p in self.points if p.relative >= 1 - max_loss]
        return min(passing, key=lambda p: (p.bits_per_vector, -p.value), default=None)

    def records(self) -> list[dict]:
        """One flat dict per frontier point (:meth:`Configuration.record`)."""
        return [point.record() for point in self.points]

    def to_markdown(self) -> str:
        """The frontier table: one line per point, from the fewest bits up (with the
        codes' entropy and packed bytes where a point has them)."""
        storage = any(p.entropy_bits_per_vector is not None
                      or p.packed_bytes_per_vector is not None for p in self.points)
        lines = [
            f"Rate-score frontier of {score_name(self.column, self.metric)} (baseline "
            f"{100 * self.baseline:.2f} %): each line is a configuration that no other "
            "beats with fewer or equal bits; read a budget's best configuration from the "
            "last line within it.",
            "",
            "| bits / vector | bits / dim | experiment | parameters | score | relative |"
            + (" entropy bits | packed bytes |" if storage else ""),
            "|---:|---:|---|---|---:|---:|" + ("---:|---:|" if storage else ""),
        ]
        for point in self.points:
            line = (f"| {point.bits_per_vector} | {point.bits_per_dimension:.4g} | "
                    f"{EXPERIMENT_NAMES.get(point.experiment, point.experiment)} | "
                    f"{format_params(point.params) or '–'} | "
                    f"{100 * point.value:.2f} % | {100 * point.relative:.2f} % |")
            if storage:
                entropy, packed = point.entropy_bits_per_vector, point.packed_bytes_per_vector
                line += (f" {'–' if entropy is None else f'{entropy:.1f}'} | "
                         f"{'–' if packed is None else packed} |")
            lines.append(line)
        return "\n".join(lines) + "\n"

    def write(self, stem) -> list:
        """Write ``stem.csv``, ``stem.json`` and ``stem.md``; return their paths."""
        paths = [Path(f"{stem}{suffix}") for suffix in (".csv", ".json", ".md")]
        with open(paths[0], "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=_RECORD_FIELDS)
            writer.writeheader()
            for record in self.records():
                writer.writerow({**record, "params": json.dumps(record["params"])})
        document = {"column": self.column, "metric": self.metric, "baseline": self.baseline,
                    "points": self.records()}
        paths[1].write_text(json.dumps(document, indent=2) + "\n")
        paths[2].write_text(self.to_markdown())
        return paths


def rate_score_frontier(rows, column: str = "score") -> Frontier:
    """The configurations of ``rows`` for score ``column`` and their Pareto frontier.

    Raises
    ------
    ValueError
        No baseline row, a baseline value of 0 for ``column`` (nothing to be relative
        to), a value that is not a finite number, or a row without ``bits_per_vector``.
    """
    rows = list(rows)
    configurations = tuple(configurations_of(rows, column))
    metric = ", ".join(sorted({r.get("metric") or "" for r in rows} - {""})) or "score"
    return Frontier(column=column, metric=metric, baseline=_baseline(rows, column),
                    configurations=configurations, points=tuple(pareto_frontier(configurations)))


def best_within(rows, bits_per_vector, column: str = "score") -> Configuration | None:
    """The best configuration of ``rows`` within ``bits_per_vector`` bits, for ``column``.

    A budget of ``b`` bits per dimension is ``b * n_features`` bits per vector.

    >>> rows = [{"experiment": "baseline", "bits_per_vector": 128, "n_features": 4,
    ...          "score": 0.8},
    ...         {"experiment": "q2", "params": '{"n_levels": 2}', "bits_per_vector": 4,
    ...          "n_features": 4, "score": 0.7},
    ...         {"experiment": "q2", "params": '{"n_levels": 4}', "bits_per_vector": 8,
    ...          "n_features": 4, "score": 0.78}]
    >>> best_within(rows, 2 * 4).label
    'Q-2 (per dim.): h = 4'
    """
    return rate_score_frontier(rows, column).best_within(bits_per_vector)


def pareto_frontier(configurations) -> list[Configuration]:
    """The configurations that no other beats with fewer or equal bits and a higher value.

    One pass over the configurations sorted by bits: a configuration survives when its
    value equals the best value at its number of bits or fewer.  Equal points are all
    kept (none is higher than the other).
    """
    ordered = sorted(enumerate(configurations),
                     key=lambda item: (item[1].bits_per_vector, -item[1].value, item[0]))
    frontier, best, i = [], -math.inf, 0
    while i < len(ordered):
        bits = ordered[i][1].bits_per_vector
        group = []
        while i < len(ordered) and ordered[i][1].bits_per_vector == bits:
            group.append(ordered[i][1])
            i += 1
        best = max(best, group[0].value)  # the group is sorted by value, highest first
        frontier.extend(c for c in group if c.value == best)
    return frontier


def configurations_of(rows, column: str = "score") -> list[Configuration]:
    """The configurations of ``rows`` (baseline included) with ``column`` averaged over
    repeats; rows with no value in ``column`` are left out."""
    baseline = _baseline(rows, column)
    groups = defaultdict(list)
    for row in rows:
        value = _value(row, column)
        if value is not None:
            params = row_params(row)
            groups[row["experiment"], json.dumps(params, sort_keys=True)].append(
                (params, row, value))
    configurations = []
    for (experiment, _), group in groups.items():
        params, first, _ = group[0]
        bits = {int(_required(row, "bits_per_vector")) for _, row, _ in group}
        if len(bits) > 1:
            raise ValueError(f"the repeats of {experiment} {format_params(params)} store "
                             f"different bits_per_vector ({sorted(bits)}): they are not one "
                             f"configuration")
        values = [value for _, _, value in group]
        entropies = [_value(row, "entropy_bits_per_vector") for _, row, _ in group]
        packed = _value(first, "packed_bytes_per_vector")
        mean = math.fsum(values) / len(values)
        std = (math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
               if len(values) > 1 else 0.0)
        configurations.append(Configuration(
            experiment=experiment, params=params, bits_per_vector=bits.pop(),
            n_features=int(_required(first, "n_features")), value=mean, std=std,
            n_repeats=len(values), relative=mean / baseline,
            entropy_bits_per_vector=(None if None in entropies
                                     else math.fsum(entropies) / len(entropies)),
            packed_bytes_per_vector=None if packed is None else int(packed)))
    return configurations


def row_params(row) -> dict:
    """The parameters of a row's configuration, its repeat and seed left out.

    From the ``params`` JSON column where present; otherwise (rows of older sweeps)
    from the typed columns the experiment uses (``kept_dims`` of DR-1, ...).
    """
    params = row.get("params")
    if params in (None, ""):
        names = _LEGACY_PARAMS.get(row["experiment"], _TYPED_PARAMS)
        params = {name: row.get(name) for name in names if row.get(name) is not None}
    elif isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as error:
            raise ValueError(f"a {row['experiment']} row's params is not JSON "
                             f"({error}): {params!r}") from None
    if not isinstance(params, dict):
        raise ValueError(f"a {row['experiment']} row's params is not a JSON object: "
                         f"{params!r}")
    return {name: value for name, value in params.items() if name not in REPEAT_PARAMS}


def format_params(params: dict) -> str:
    """``{"kept_dims": 409, "n_levels": 27}`` -> ``"409 dims, h = 27"``."""
    return ", ".join(_PARAM_FORMATS.get(name, f"{name}={{}}").format(value)
                     for name, value in params.items())


def score_name(column: str, metric: str | None = None) -> str:
    """What a score column is called: the SVM's metric for ``score``, else its name."""
    if column == "score":
        return metric_name(metric if metric != "score" else None)
    return {"knn_accuracy": "k-NN accuracy"}.get(column, column)


def _baseline(rows, column):
    if column == "score":
        return baseline_score(rows)
    values = [_value(row, column) for row in rows if row["experiment"] == "baseline"]
    values = [value for value in values if value is not None]
    if not values:
        raise ValueError(f"no baseline row has a {column!r} value: nothing to be "
                         f"relative to")
    mean = math.fsum(values) / len(values)
    if not mean > 0:
        raise ValueError(f"the baseline's {column!r} is {mean}: no relative score")
    return mean


def _value(row, column):
    """The row's value in ``column`` as a float, None where it has none."""
    value = row.get(column)
    if value is None or value == "":
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"a {row['experiment']} row's {column!r} is not a number: "
                         f"{value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"a {row['experiment']} row's {column!r} is {value}")
    return value


def _required(row, column):
    if row.get(column) is None:
        raise ValueError(f"a {row['experiment']} row has no {column}")
    return row[column]


def _checked_budget(bits_per_vector):
    budget = float(bits_per_vector)
    if not budget >= 0 or math.isinf(budget):
        raise ValueError(f"the bit budget must be a finite number >= 0, got {bits_per_vector}")
    return budget
