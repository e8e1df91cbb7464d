"""The report of a sweep: Table 3, the paper's figures, the headline compression and
the rate-score frontier.

:func:`write_report` reads ``DIR/results.csv`` (and ``DIR/sweep.json`` if present) and
writes, next to them, ``table3.md``, ``table3.csv`` and one PNG per figure whose
experiments the sweep ran (Table 3 and those figures need the paper's experiments), and
for each score column of the sweep a rate-score figure ``rate_score_COLUMN.png`` and its
frontier table ``frontier_COLUMN.csv/.json/.md`` (:mod:`dnnstress.frontier`), whatever
the experiments.  The authors' published curves (VGG-M on VOC 2007, the paper's base
setup, shipped with the package) are drawn dashed beside ours.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import asdict
from pathlib import Path

from dnnstress import authors as authors_results
from dnnstress.datasets import dataset_info
from dnnstress.figures import fig2_dimensionality, fig4_quantization, \
    fig5_feature_compression, fig_qb, fig_rate_score, paper_label, save_figure
from dnnstress.frontier import rate_score_frontier
from dnnstress.stress.accounting import bits_for_levels
from dnnstress.sweep import EXPERIMENTS, read_results
from dnnstress.sweep.experiments import TYPED_PARAMS, get_experiment
from dnnstress.sweep.store import row_key
from dnnstress.table3 import EXPERIMENT_NAMES, LOSSES, baseline_score, qb_bits_kept, \
    table3, table3_cell

HEADLINE_LOSS = 0.01  # the paper's headline: 98.4 % compression for 0.88 % of the score
PAPER_SETUP = ("VGG-M", "VOC 2007")
# The budgets the summary names the frontier's best configuration for (bits per dimension).
BUDGETS = (1, 2, 4)
_TABLE3_EXPERIMENTS = ("dr1", "dr2", "q1", "q2", "qb", "fc")

# figure file -> (function, experiments it needs at least one of)
_FIGURES = {
    "fig2_dr.png": (fig2_dimensionality, ("dr1", "dr2")),
    "fig4_q.png": (fig4_quantization, ("q1", "q2")),
    "fig5_fc.png": (fig5_feature_compression, ("fc",)),
    "fig_qb.png": (fig_qb, ("qb",)),
}


def write_report(directory, *, authors=None, losses=LOSSES) -> dict:
    """Write Table 3 and the figures of the sweep in ``directory``; return its summary.

    Parameters
    ----------
    directory : str or Path
        A sweep folder holding ``results.csv`` (``dnnstress sweep --out DIR``).
    authors : str, Path, None or False
        The authors' CSV folder for the dashed "paper" curves.  ``None`` uses
        :func:`dnnstress.authors.default_authors_dir` (the copy shipped with the
        package); ``False`` draws none; a path must exist.
    losses : sequence of float
        The loss columns of Table 3, as fractions.

    Returns
    -------
    dict
        ``baseline_score``, ``metric``, ``n_features``, ``headline`` (one line, the best
        compression within 1 % of the score), ``best`` (per experiment, its Table 3 cell
        within 1 %, as dicts: the headline picks among them), ``table3`` (its records;
        empty, and the headline None, without the paper's experiments), ``frontiers``
        (per score column, the frontier's records), ``best_within`` (per score column,
        the best configuration within 1, 2 and 4 bits per dimension), ``files`` (paths
        written), ``paper`` (the overlay's label or None), ``setup``
        (:func:`setup_text`, the figures' subtitle), ``metadata`` (sweep.json) and
        ``duplicates`` (rows left out, see Warns).

    Warns
    -----
    UserWarning
        When ``results.csv`` repeats a row key (experiment, parameters, repeat): only the
        first of each is used, so that no point weighs twice in a mean; when a score
        column other than ``score`` has no values or a baseline of 0 (no frontier).
    """
    directory = Path(directory)
    if not (directory / "results.csv").is_file():
        raise FileNotFoundError(f"no results.csv in {directory}: run `dnnstress sweep "
                                f"FEATURES.npz --out {directory}` first")
    rows, duplicates = report_rows(directory)
    if duplicates:
        warnings.warn(f"{directory / 'results.csv'}: {duplicates} duplicated row(s) left "
                      f"out (same experiment, parameters and repeat as an earlier row; the "
                      f"first is used)", stacklevel=2)
    baseline = baseline_score(rows)
    metadata = _read_metadata(directory)
    setup = setup_text(metadata)
    paper = _paper_rows(authors)
    in_setting = paper_setting_rows(rows)
    present = {row["experiment"] for row in in_setting}
    files, table, best = [], None, {}
    if present.intersection(_TABLE3_EXPERIMENTS):
        table = table3(in_setting, losses=losses, baseline=baseline)
        files += [directory / "table3.md", directory / "table3.csv"]
        table.write_markdown(files[0])
        table.write_csv(files[1])
        best = {experiment: table3_cell(in_setting, experiment, HEADLINE_LOSS, baseline)
                for experiment in table.experiments}
    for name, (make_figure, experiments) in _FIGURES.items():
        if present.intersection(experiments):
            figure = make_figure(in_setting, paper=_overlay(paper, experiments), setup=setup)
            files.append(save_figure(figure, directory / name))
    frontiers, frontier_files = _write_frontiers(directory, rows, score_columns(metadata),
                                                 setup)
    files += frontier_files
    n_features = int(rows[0]["n_features"])
    return {
        "directory": str(directory),
        "baseline_score": baseline,
        "metric": table.metric if table else _metric(rows),
        "n_features": n_features,
        "headline": headline(best, HEADLINE_LOSS) if best else None,
        "best": {e: (asdict(cell) if cell else None) for e, cell in best.items()},
        "table3": table.records() if table else [],
        "table3_markdown": table.to_markdown() if table else None,
        "frontiers": {column: frontier.records() for column, frontier in frontiers.items()},
        "best_within": {column: _best_within(frontier, n_features)
                        for column, frontier in frontiers.items()},
        "files": [str(path) for path in files],
        "paper": None if paper is None else paper_label(paper),
        "setup": setup,
        "metadata": metadata,
        "duplicates": duplicates,
    }


def paper_setting_rows(rows) -> list[dict]:
    """The rows that Table 3 and the paper's figures read: every row except those of a
    paper experiment run outside the paper's setting, i.e. with a parameter beyond its
    own (kept dims, levels, erased bits, repeat, seed) away from the registry default.
    Q-2 over a quantile range, say, is on the rate-score frontier but not in Fig. 4."""
    return [row for row in rows if not _outside_paper_setting(row)]


def _outside_paper_setting(row) -> bool:
    name = row["experiment"]
    if name not in EXPERIMENTS or not isinstance(row.get("params"), dict):
        return False
    defaults = get_experiment(name).defaults()
    return any(value != defaults.get(param, value) for param, value in row["params"].items()
               if param not in TYPED_PARAMS)


def score_columns(metadata) -> list[str]:
    """The score columns a sweep recorded: those its runs list in sweep.json under
    ``score_columns`` (in order, each once), ``["score"]`` where none says."""
    runs = metadata.get("runs") if isinstance(metadata, dict) else None
    columns = [column for run in runs or () if isinstance(run, dict)
               for column in run.get("score_columns") or ()]
    return list(dict.fromkeys(columns)) or ["score"]


def _write_frontiers(directory, rows, columns, setup):
    """Each column's frontier table and rate-score figure; a column with no values or no
    baseline value is left out with a warning (``score`` must have both)."""
    frontiers, files = {}, []
    for column in columns:
        try:
            frontier = rate_score_frontier(rows, column)
        except ValueError as error:
            if column == "score":
                raise
            warnings.warn(f"{directory}: no rate-score frontier of {column!r}: {error}",
                          stacklevel=3)
            continue
        slug = _slug(column)
        files += frontier.write(directory / f"frontier_{slug}")
        if any(c.bits_per_vector > 0 for c in frontier.configurations):
            files.append(save_figure(fig_rate_score(frontier, setup=setup),
                                     directory / f"rate_score_{slug}.png"))
        frontiers[column] = frontier
    return frontiers, files


def _best_within(frontier, n_features):
    """``{"1": record, "2": ..., "4": ...}``: the best configuration within each budget of
    :data:`BUDGETS` bits per dimension (None where nothing fits)."""
    best = {}
    for budget in BUDGETS:
        point = frontier.best_within(budget * n_features)
        best[str(budget)] = None if point is None else point.record()
    return best


def _slug(column):
    """A file-name-safe form of a column name: "recall@10" -> "recall_at_10"."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", column.replace("@", "_at_")).strip("_") or "score"


def _metric(rows):
    return ", ".join(sorted({row.get("metric") or "" for row in rows} - {""})) or "score"


def format_summary(summary: dict) -> str:
    """The terminal summary of a report: Table 3 (whose caption states the baseline, said
    once), the headline and the frontier's best configurations within 1, 2 and 4 bits
    per dimension."""
    lines = [] if summary["table3_markdown"] is None else [
        summary["table3_markdown"].rstrip(), summary["headline"]]
    best = summary["best_within"].get("score")
    if best:
        lines.append("Best within " + "; ".join(
            f"{budget} bit{'s' if budget != '1' else ''}/dim: " + (
                "none" if point is None else
                f"{point['label']} ({100 * point['relative_score']:.1f} % of the score)")
            for budget, point in best.items()))
    if summary["paper"] and summary["table3_markdown"] is not None:
        lines.append(f"Dashed curves: {summary['paper']}")
    return "\n".join(lines)


def headline(best: dict, max_loss: float = HEADLINE_LOSS) -> str:
    """One line on the best compression within ``max_loss``: FC's if run, else the best.

    ``best`` maps each experiment to its Table 3 cell for ``max_loss``
    (:func:`dnnstress.table3.table3_cell`) or ``None``.

    >>> from dnnstress.table3 import Cell
    >>> cell = Cell("fc", 0.01, 0.98440, "", 0.7628, 0.99125, 0.98440, 4096, 409, 27)
    >>> headline({"fc": cell})
    'FC: 98.4 % compression (409 of 4096 dims x 5 bits) for 0.88 % of the score lost'
    """
    name = "fc" if "fc" in best else max(
        best, key=lambda e: -1.0 if best[e] is None else best[e].compression_rate)
    cell = best[name]
    short = EXPERIMENT_NAMES.get(name, name).split(" ")[0]
    if cell is None:
        return f"{short}: no configuration keeps the score within {100 * max_loss:g} %"
    loss = 1 - cell.relative_score
    if loss > 0:
        outcome = f"for {100 * loss:.2f} % of the score lost"
    elif -loss >= 5e-5:
        outcome = f"with no score lost (score +{100 * -loss:.2f} %)"
    else:
        outcome = "with no score lost"
    return (f"{short}: {100 * cell.compression_rate:.1f} % compression "
            f"({_configuration(cell)}) {outcome}")


def _configuration(cell) -> str:
    n = cell.n_features
    if cell.experiment == "qb":
        return f"{qb_bits_kept(cell.erased_bits)} of {qb_bits_kept(0)} bits per value"
    kept = cell.kept_dims if cell.kept_dims is not None else n
    if cell.n_levels is None:
        return f"{kept} of {n} dims"
    bits = f"{bits_for_levels(cell.n_levels)} bits"
    if kept == n:
        return f"h = {cell.n_levels}, {bits} per dim"
    return f"{kept} of {n} dims x {bits}"


def setup_text(metadata) -> str | None:
    """"network, layer L, data set" of the features a sweep ran on, from its sweep.json.

    Read from the last run's ``features_metadata`` (what ``dnnstress extract`` recorded);
    ``None`` when the sweep does not say (features made by hand).

    >>> setup_text({"runs": [{"features_metadata": {"model": "efficientnet-lite0",
    ...     "layer": "pooled", "dataset": "fashion-mnist"}}]})
    'efficientnet-lite0, layer pooled, Fashion-MNIST'
    """
    runs = metadata.get("runs") if isinstance(metadata, dict) else None
    features = runs[-1].get("features_metadata") if runs and isinstance(runs[-1], dict) \
        else None
    if not isinstance(features, dict):
        return None
    parts = [str(features["model"])] if features.get("model") else []
    if features.get("layer"):
        parts.append(f"layer {features['layer']}")
    if features.get("dataset"):
        parts.append(_dataset_title(str(features["dataset"])))
    return ", ".join(parts) or None


def _dataset_title(name):
    """The registry's name for a data set ("Fashion-MNIST" for "fashion-mnist")."""
    try:
        return dataset_info(name).description.split(",")[0]
    except ValueError:
        return name


def report_rows(directory):
    """The rows a report of ``directory`` uses, and how many it left out: the first row of
    each key (:func:`dnnstress.sweep.store.row_key`) of ``results.csv``."""
    return _unique_rows(read_results(directory, allow_duplicates=True))


def _unique_rows(rows):
    seen, unique = set(), []
    for row in rows:
        key = row_key(row)
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique, len(rows) - len(unique)


def _read_metadata(directory: Path):
    path = directory / "sweep.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def _paper_rows(authors):
    """The authors' VGG-M / VOC 2007 rows, or None where no overlay is wanted or found."""
    if authors is False:
        return None
    return authors_results.load_authors_rows(*PAPER_SETUP, path=authors or None)


def _overlay(paper, experiments):
    if paper is None or not any(row["experiment"] in experiments for row in paper):
        return None
    return paper
