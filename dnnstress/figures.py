"""The paper's figures from result rows: Fig. 2 (DR), Fig. 4 (Q), Fig. 5 (FC) and Q-B;
the rate-score frontier of a sweep; and, across the sweeps of a campaign, Fig. 3 (DR per
data set) and the score per layer (the authors' multi-layer tables).

Every curve but the per-layer one shows the score relative to the run's own baseline, in
percent, so that our runs and the authors' (``paper=`` rows from :mod:`dnnstress.authors`,
drawn dashed) compare even on different data sets or models; scores per layer are absolute,
as the layers' baselines differ.  Figures are built on :class:`matplotlib.figure.Figure`
directly, without pyplot: no global state and no interactive backend, PNG goes through Agg.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from dnnstress.frontier import configurations_of, format_params, score_name
from dnnstress.stress.accounting import bits_for_levels
from dnnstress.table3 import EXPERIMENT_NAMES, baseline_score, best_compression, \
    metric_name, nominal_kept_fraction, qb_bits_kept

# Fig. 5 marks the best compression within 1, 2 and 3 % loss, in the order of Table 3's
# columns.  (The paper's own marks are 3, 1 and 0.5 %: tests/test_table3.py checks them.)
FC_MARKS = ((0.01, "o"), (0.02, "s"), (0.03, "X"))
# Fig. 4 leaves out h = 1 by default: everything maps to one value, the score is chance,
# and its point squashes the curves of every useful h into the top of the axis.
FIG4_MIN_LEVELS = 2

_COLORS = {"dr1": "tab:blue", "dr2": "tab:orange", "q1": "tab:blue", "q2": "tab:orange",
           "qb": "tab:green"}
# The rate-score figure: one marker and colour per experiment, the paper's first.
_PAPER_ORDER = ("baseline", "dr1", "dr2", "q1", "q2", "fc", "qb")
_MARKERS = ("*", "o", "s", "^", "v", "D", "P", "X", "<", ">", "h", "p", "d")
# The score per layer draws at most this many configurations of each experiment.
LAYER_CURVES = 6


def save_figure(figure: Figure, path, dpi: int = 130) -> Path:
    """Write ``figure`` as PNG (or the format of ``path``'s suffix) and return the path."""
    path = Path(path)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def fig2_dimensionality(rows, paper=None, *, setup=None) -> Figure:
    """Fig. 2: relative score vs share of dimensions kept, DR-1 (mean +- std) and DR-2.

    ``setup`` (network, layer and data set, one line) goes under the title.
    """
    return _curves(rows, paper, ("dr1", "dr2"), _kept_percent,
                   xlabel="dimensions kept (% of the original)",
                   title=_title("Dimensionality reduction (DR)", setup))


def fig4_quantization(rows, paper=None, *, setup=None,
                      min_levels=FIG4_MIN_LEVELS) -> Figure:
    """Fig. 4: relative score vs number of values h >= ``min_levels``, Q-1 and Q-2."""
    return _curves(rows, paper, ("q1", "q2"), lambda p: p["n_levels"],
                   xlabel="number of values h", title=_title("Quantization (Q)", setup),
                   x_min=min_levels)


def fig_qb(rows, paper=None, *, setup=None) -> Figure:
    """Supplementary Q-B: relative score vs bits kept per value after the erasure."""
    total = qb_bits_kept(0)
    return _curves(rows, paper, ("qb",), lambda p: qb_bits_kept(p["erased_bits"]),
                   xlabel=f"bits kept per value (of {total}; the lowest bits erased)",
                   title=_title("Bit erasure (Q-B)", setup))


def fig5_feature_compression(rows, paper=None, marks=FC_MARKS, *, setup=None) -> Figure:
    """Fig. 5: FC heat map of the relative score over kept dimensions x values h.

    Each cell sits at its true kept share and h, so a grid with uneven steps (FC steps
    1, 2, 5, 9) is not drawn as if even.  ``marks`` pairs a loss with a marker: the best
    compression within that loss is marked and labelled with its compression rate.  With
    ``paper`` rows, the authors' map is drawn beside ours on the same colour scale.
    """
    panels = [(rows, _title("this run", setup))]
    if paper is not None:
        panels.append((paper, paper_label(paper)))
    grids = [_fc_grid(panel_rows) for panel_rows, _ in panels]
    # Below 90 % the map only says "bad"; clipping there keeps the flat top readable.
    high = max(100.0, max(np.nanmax(grid[2]) for grid in grids))
    low = min(np.nanmin(grid[2]) for grid in grids)
    norm = Normalize(vmin=min(max(low, 90.0), high - 1.0), vmax=high)
    figure = Figure(figsize=(6.5 * len(panels) + 1.0, 5.8), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (panel_rows, label), (dims, levels, grid) in zip(axes, panels, grids):
        n = int(panel_rows[0]["n_features"])
        shares = [100 * k / n for k in dims]
        mesh = ax.pcolormesh(_cell_edges(levels), _cell_edges(shares), grid,
                             cmap="viridis", norm=norm)
        ax.set_xticks(levels, [str(h) for h in levels], fontsize=7)
        ax.set_yticks(shares, [f"{k} ({share:.0f} %)" for k, share in zip(dims, shares)])
        ax.set_xlabel("number of values h (Q-2)")
        ax.set_ylabel("dimensions kept (DR-2)")
        ax.set_title(f"Feature compression (FC), {label}\n"
                     f"baseline {_baseline_text(panel_rows)}")
        _mark_best(ax, panel_rows, marks)
        # Below the map: the marks sit in the bottom rows, where a legend would hide them.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, frameon=False)
    figure.colorbar(mesh, ax=list(axes), label="score relative to baseline (%)",
                    extend="min")
    return figure


def fig_rate_score(frontier, *, setup=None) -> Figure:
    """Rate-score figure: every configuration's relative score vs its bits per vector.

    ``frontier`` is a :class:`dnnstress.frontier.Frontier`; its Pareto frontier is drawn
    as a staircase (the best score within each budget), repeats as error bars of one std.
    The x axis is logarithmic, so configurations of 0 bits (h = 1) are left out, and
    said so.  The top axis reads the same budget in bits per (original) dimension.
    """
    drawn = [c for c in frontier.configurations if c.bits_per_vector > 0]
    if not drawn:
        raise ValueError(f"no configuration of {frontier.column!r} has a storage above 0 "
                         f"bits: nothing to plot")
    name = score_name(frontier.column, frontier.metric)
    figure = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = figure.subplots()
    for i, experiment in enumerate(_ordered(c.experiment for c in drawn)):
        points = [c for c in drawn if c.experiment == experiment]
        std = [100 * c.std / frontier.baseline for c in points]
        ax.errorbar([c.bits_per_vector for c in points], [100 * c.relative for c in points],
                    yerr=std if any(std) else None, fmt=_MARKERS[i % len(_MARKERS)],
                    color=f"C{i % 10}", markersize=5, alpha=0.8, linestyle="none",
                    label=EXPERIMENT_NAMES.get(experiment, experiment))
    front = [p for p in frontier.points if p.bits_per_vector > 0]
    ax.step([p.bits_per_vector for p in front], [100 * p.relative for p in front],
            where="post", color="black", linewidth=1.2, label="Pareto frontier")
    ax.axhline(100.0, color="grey", linestyle="--", linewidth=1.0,
               label=f"baseline ({100 * frontier.baseline:.2f} % {name})")
    ax.set_xscale("log")
    n = drawn[0].n_features
    top = ax.secondary_xaxis("top", functions=(lambda b: b / n, lambda d: d * n))
    top.set_xlabel("bits per dimension")
    left_out = len(frontier.configurations) - len(drawn)
    ax.set_xlabel("bits per vector (log scale)" + (
        f"; {left_out} configuration(s) of 0 bits not drawn" if left_out else ""))
    ax.set_ylabel(f"{name} relative to baseline (%)")
    ax.set_title(_title(f"Rate-score frontier, {name}", setup))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return figure


def fig3_datasets(runs, *, setup=None) -> Figure:
    """Fig. 3: DR-1 and DR-2 relative score vs share of dimensions kept, per data set.

    ``runs`` is a sequence of ``(label, rows, paper)``: one curve per data set (its
    ``label``), and the authors' curve for it, dashed and labelled "authors", where
    ``paper`` (their rows, or None) has the experiment.  One panel per experiment.
    """
    experiments = [e for e in ("dr1", "dr2")
                   if any(r["experiment"] == e for _, rows, _ in runs for r in rows)]
    if not experiments:
        raise ValueError("no dr1 or dr2 rows in any sweep: nothing to plot")
    figure = Figure(figsize=(6.5 * len(experiments), 4.8), layout="constrained")
    for ax, experiment in zip(figure.subplots(1, len(experiments), squeeze=False)[0],
                              experiments):
        for i, (label, rows, paper) in enumerate(runs):
            for source, style, marker, name in ((rows, "-", "o", label),
                                                (paper, "--", None, f"{label}, authors")):
                if source and any(r["experiment"] == experiment for r in source):
                    _plot_series(ax, source, experiment, _kept_percent, linestyle=style,
                                 marker=marker, label=name, color=f"C{i % 10}")
        ax.axhline(100.0, color="black", linestyle=":", linewidth=1.0, label="baseline")
        ax.set_xlabel("dimensions kept (% of the original)")
        ax.set_ylabel("score relative to baseline (%)")
        ax.set_title(_title(EXPERIMENT_NAMES[experiment] + " per data set", setup))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return figure


def fig_layers(layers, paper=None, *, setup=None, max_curves=LAYER_CURVES) -> Figure:
    """Score vs layer, one panel per stressor, as the authors' multi-layer tables.

    ``layers`` is a sequence of ``(layer, rows)`` of one network and data set, in the
    network's order; ``paper`` the same for the authors' rows (dashed, "authors"), or
    None.  Each panel draws up to ``max_curves`` configurations that every layer ran,
    spread over their storage from the cheapest to the dearest; DR's kept dimensions
    are matched by their share, as the layers differ in width.  Scores are absolute
    (percent), with the unstressed score of each layer in black.
    """
    layer_names = _layer_order([layer for layer, _ in layers]
                               + [layer for layer, _ in paper or ()])
    ours = {str(layer): _layer_points(rows) for layer, rows in layers}
    theirs = {str(layer): _layer_points(rows) for layer, rows in paper or ()}
    experiments = _ordered({e for points in ours.values() for e, _ in points} - {"baseline"})
    if len(ours) < 2 or not experiments:
        raise ValueError("the score per layer needs stressed rows of at least 2 layers")
    metric = next((r.get("metric") for _, rows in layers for r in rows if r.get("metric")),
                  None)
    columns = min(2, len(experiments))
    panel_rows = -(-len(experiments) // columns)
    figure = Figure(figsize=(6.0 * columns, 4.2 * panel_rows), layout="constrained")
    axes = figure.subplots(panel_rows, columns, squeeze=False).ravel()
    x_of = {name: i for i, name in enumerate(layer_names)}
    for ax, experiment in zip(axes, experiments):
        shared = set.intersection(*({key for e, key in points if e == experiment}
                                    for points in ours.values()))
        for i, key in enumerate(_spread_keys(shared, ours, experiment, max_curves)):
            for points, style, marker, suffix in ((ours, "-", "o", ""),
                                                  (theirs, "--", None, ", authors")):
                x, y = _layer_curve(points, (experiment, key), x_of)
                if x:
                    ax.plot(x, y, linestyle=style, marker=marker, markersize=4,
                            color=f"C{i % 10}", label=format_params(dict(key)) + suffix)
        x, y = _layer_curve(ours, ("baseline", ()), x_of)
        ax.plot(x, y, color="black", marker="s", markersize=4, label="unstressed")
        ax.set_xticks(range(len(layer_names)), layer_names)
        ax.set_xlabel("layer")
        ax.set_ylabel(f"{metric_name(metric)} (%)")
        ax.set_title(EXPERIMENT_NAMES.get(experiment, experiment))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(experiments):]:
        ax.set_visible(False)
    figure.suptitle(_title("Score per layer", setup))
    return figure


def _ordered(experiments):
    """Distinct experiment names, the paper's in its order first, then the others sorted."""
    names = set(experiments)
    return [e for e in _PAPER_ORDER if e in names] + sorted(names - set(_PAPER_ORDER))


def _layer_order(layers):
    """Distinct layer names, numerically sorted when all are numbers, else as given."""
    names = list(dict.fromkeys(str(layer) for layer in layers))
    if all(name.isdigit() for name in names):
        return sorted(names, key=int)
    return names


def _layer_points(rows):
    """``{(experiment, key): (score, bits)}`` of one layer's configurations, the key being
    the parameters with the kept dimensions as a share (comparable across layers)."""
    points = {}
    for config in configurations_of(rows):
        params = dict(config.params)
        if "kept_dims" in params:
            share = 100 * nominal_kept_fraction(int(params.pop("kept_dims")), config.n_features)
            params = {"kept_share": round(share, 1), **params}
        points[config.experiment, tuple(params.items())] = (config.value,
                                                            config.bits_per_dimension)
    return points


def _spread_keys(keys, points, experiment, count):
    """At most ``count`` of ``keys``, spread log-evenly over their mean storage (more of the
    cheap ones, where scores change)."""
    def bits(key):
        return np.mean([layer[experiment, key][1] for layer in points.values()])
    ordered = sorted(keys, key=lambda key: (bits(key), str(key)))
    if len(ordered) <= count:
        return ordered
    picks = np.unique(np.round(np.geomspace(1, len(ordered), count)).astype(int) - 1)
    return [ordered[i] for i in picks]


def _layer_curve(points, key, x_of):
    layers = [layer for layer in points if key in points[layer]]
    layers.sort(key=lambda layer: x_of[layer])
    return [x_of[layer] for layer in layers], [100 * points[layer][key][0] for layer in layers]


def _curves(rows, paper, experiments, x_of, *, xlabel, title, x_min=None):
    if x_min is not None:
        rows = _from_x(rows, experiments, x_of, x_min)
        paper = None if paper is None else _from_x(paper, experiments, x_of, x_min)
    present = [e for e in experiments if any(r["experiment"] == e for r in rows)]
    if not present:
        raise ValueError(f"no rows for {', '.join(experiments)}: nothing to plot")
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = figure.subplots()
    for experiment in present:
        _plot_series(ax, rows, experiment, x_of, linestyle="-", marker="o",
                     label=EXPERIMENT_NAMES[experiment])
    if paper is not None:
        for experiment in present:
            if any(r["experiment"] == experiment for r in paper):
                _plot_series(ax, paper, experiment, x_of, linestyle="--", marker=None,
                             label=f"{EXPERIMENT_NAMES[experiment]}, {paper_label(paper)}")
    ax.axhline(100.0, color="black", linestyle="--", linewidth=1.0,
               label=f"baseline ({_baseline_text(rows)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("score relative to baseline (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def _from_x(rows, experiments, x_of, x_min):
    """``rows`` without the points of ``experiments`` whose x is below ``x_min``."""
    return [r for r in rows if r["experiment"] not in experiments or x_of(r) >= x_min]


def _plot_series(ax, rows, experiment, x_of, *, linestyle, marker, label, color=None):
    """One curve: mean relative score per point, shaded +- one std where repeats exist."""
    x, mean, std = _series(rows, experiment, x_of)
    color = color or _COLORS.get(experiment)
    ax.plot(x, mean, linestyle=linestyle, marker=marker, markersize=3, color=color,
            label=label)
    if np.any(std > 0):
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


def _series(rows, experiment, x_of):
    """x, mean and std (percent of baseline) of ``experiment``'s points, sorted by x.

    The std is over repeats (ddof=1, as MATLAB's ``std`` the authors used), or the
    published ``score_std`` for the authors' already-averaged rows.
    """
    baseline = baseline_score(rows)
    groups = defaultdict(list)
    for row in rows:
        if row["experiment"] == experiment:
            groups[x_of(row)].append(row)
    x = sorted(groups)
    mean = np.array([np.mean([r["score"] for r in groups[k]]) for k in x]) / baseline
    std = np.array([_spread(groups[k]) for k in x]) / baseline
    return np.asarray(x, dtype=float), 100 * mean, 100 * std


def _spread(group):
    if len(group) > 1:
        return float(np.std([r["score"] for r in group], ddof=1))
    return group[0].get("score_std") or 0.0


def _kept_percent(row):
    return 100 * nominal_kept_fraction(int(row["kept_dims"]), int(row["n_features"]))


def _fc_grid(rows):
    """(kept dims, values h, relative score in % with NaN where no point was run)."""
    baseline = baseline_score(rows)
    fc = [r for r in rows if r["experiment"] == "fc"]
    if not fc:
        raise ValueError("no 'fc' rows: nothing to plot")
    dims = sorted({int(r["kept_dims"]) for r in fc})
    levels = sorted({int(r["n_levels"]) for r in fc})
    sums = np.zeros((len(dims), len(levels)))
    counts = np.zeros_like(sums)
    for r in fc:
        i, j = dims.index(int(r["kept_dims"])), levels.index(int(r["n_levels"]))
        sums[i, j] += r["score"]
        counts[i, j] += 1
    with np.errstate(invalid="ignore"):
        grid = np.where(counts > 0, 100 * sums / np.maximum(counts, 1) / baseline, np.nan)
    return dims, levels, grid


def _cell_edges(centres):
    """Edges of cells centred on sorted ``centres``: midpoints, the ends mirrored."""
    centres = np.asarray(centres, dtype=float)
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middles = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middles[0]], middles,
                           [2 * centres[-1] - middles[-1]]])


def _mark_best(ax, rows, marks):
    """Mark the best compression within each loss; losses sharing a point share a mark."""
    n = int(rows[0]["n_features"])
    chosen = {}
    for loss, marker in marks:
        cell = best_compression(rows, "fc", loss)
        if cell is not None:
            chosen.setdefault((cell.kept_dims, cell.n_levels), (cell, marker, []))[2].append(loss)
    for cell, marker, losses in chosen.values():
        x, y = cell.n_levels, 100 * cell.kept_dims / n
        within = _percent_list(losses)
        ax.plot(x, y, marker=marker, markersize=11, markeredgecolor="white",
                markerfacecolor="red", linestyle="none",
                label=f"{within} loss: {100 * cell.compression_rate:.1f} % "
                      f"compression ({cell.kept_dims} dims x "
                      f"{bits_for_levels(cell.n_levels)} bits, "
                      f"{100 * cell.relative_score:.1f} % of score)")
        ax.annotate(f"{100 * cell.compression_rate:.1f} %", (x, y), xytext=(6, 6),
                    textcoords="offset points", fontsize=8, weight="bold",
                    bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.8})


def _percent_list(losses):
    """"≤ 1 %" for one loss, "≤ 1, 2 and 3 %" for several."""
    numbers = [f"{100 * loss:g}" for loss in losses]
    if len(numbers) > 1:
        numbers = [", ".join(numbers[:-1]) + " and " + numbers[-1]]
    return f"≤ {numbers[0]} %"


def _title(name, setup):
    return name if not setup else f"{name}: {setup}"


def paper_label(rows) -> str:
    """The legend name of the authors' rows: "paper (VGG-M, layer 19, VOC 2007)"."""
    first = rows[0]
    parts = [str(first[key]) if key != "layer" else f"layer {first[key]}"
             for key in ("model", "layer", "dataset") if first.get(key) is not None]
    return f"paper ({', '.join(parts)})" if parts else "paper"


def _baseline_text(rows):
    metric = next((r.get("metric") for r in rows if r.get("metric")), None)
    return f"{100 * baseline_score(rows):.2f} % {metric_name(metric)}"
