"""The report of a campaign: every sweep's own report, the cross-sweep figures and one table.

A campaign folder (``dnnstress campaign``) holds ``campaign.json`` =
``{"campaign": NAME, "sweeps": [{"name", "dir", "features_file", "model", "layer",
"dataset", "experiments", "status"}, ...]}`` and one sweep folder per entry (``dir``,
relative to the campaign folder or absolute).  :func:`write_campaign_report` writes each
sweep's report in its folder (:func:`dnnstress.report.write_report`) and, in the campaign
folder:

- ``fig3_dr_MODEL_LAYER.png``: the paper's Fig. 3, DR relative score per data set, for
  each network and layer whose sweeps ran DR;
- ``layers_MODEL_DATASET.png``: the score per layer of each stressor, for each network
  and data set swept at two layers or more (as the authors' MULTILAYER tables);
- ``campaign_table.csv/.json/.md``: one row per sweep and experiment.

The authors' curves are overlaid wherever their setup matches by name
(:func:`dnnstress.authors.find_authors_rows`).
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from collections import defaultdict
from pathlib import Path

from dnnstress.authors import find_authors_rows, published_layers
from dnnstress.figures import fig3_datasets, fig_layers, save_figure
from dnnstress.frontier import format_params, rate_score_frontier
from dnnstress.report import BUDGETS, HEADLINE_LOSS, report_rows, write_report
from dnnstress.table3 import EXPERIMENT_NAMES, LOSSES

CAMPAIGN_NAME = "campaign.json"
TABLE_FIELDS = ("sweep", "model", "layer", "dataset", "status", "experiment", "n_features",
                "metric", "baseline_score", "n_configurations", "best_relative_score",
                "bits_per_dim_within_1pct", "params_within_1pct",
                *(f"relative_at_{b}_bits_per_dim" for b in BUDGETS))


def is_campaign(directory) -> bool:
    """Whether ``directory`` is a campaign folder (it holds ``campaign.json``)."""
    return (Path(directory) / CAMPAIGN_NAME).is_file()


def read_campaign(directory) -> dict:
    """``campaign.json``, checked, with each sweep's ``dir`` resolved to a Path."""
    path = Path(directory) / CAMPAIGN_NAME
    try:
        campaign = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    sweeps = campaign.get("sweeps") if isinstance(campaign, dict) else None
    if not isinstance(sweeps, list):
        raise ValueError(f"{path} is not a campaign (a JSON object with a list 'sweeps')")
    for i, sweep in enumerate(sweeps):
        if not isinstance(sweep, dict) or not isinstance(sweep.get("dir"), str):
            raise ValueError(f"{path}: sweep {i} has no 'dir' (the folder of its results)")
        sweep["dir"] = Path(directory) / sweep["dir"]  # an absolute dir stays as it is
        sweep.setdefault("name", sweep["dir"].name)
    return campaign


def write_campaign_report(directory, *, authors=None, losses=LOSSES) -> dict:
    """Report every sweep of the campaign in ``directory``, then across them.

    ``authors`` is as for :func:`dnnstress.report.write_report` (``False``: no overlay).
    A sweep without results yet, or whose results cannot be read, is left out with a
    warning naming it; the others are reported.

    Returns
    -------
    dict
        ``campaign`` (its name), ``sweeps`` (per reported sweep its summary),
        ``skipped`` (name -> why), ``table`` (the combined table's records),
        ``table_markdown`` and ``files`` (the campaign folder's files).
    """
    directory = Path(directory)
    campaign = read_campaign(directory)
    reported, skipped = [], {}
    for sweep in campaign["sweeps"]:
        try:
            summary = write_report(sweep["dir"], authors=authors, losses=losses)
            rows, _ = report_rows(sweep["dir"])
        except (FileNotFoundError, ValueError) as error:
            skipped[sweep["name"]] = str(error)
            warnings.warn(f"sweep {sweep['name']} left out of the campaign report: {error}",
                          stacklevel=2)
            continue
        reported.append((sweep, rows, summary))
    if not reported:
        raise ValueError(f"no sweep of {directory / CAMPAIGN_NAME} has results to report")
    overlay = authors is not False
    files = _figure3(directory, reported, authors, overlay)
    files += _layer_figures(directory, reported, authors, overlay)
    table = [record for sweep, rows, _ in reported for record in _table_records(sweep, rows)]
    markdown = _table_markdown(campaign.get("campaign"), table)
    files += _write_table(directory / "campaign_table", table, markdown)
    return {"campaign": campaign.get("campaign"),
            "sweeps": {sweep["name"]: summary for sweep, _, summary in reported},
            "skipped": skipped, "table": table, "table_markdown": markdown,
            "files": [str(path) for path in files]}


def format_campaign_summary(summary: dict) -> str:
    """The terminal summary of a campaign report: the combined table and what was left out."""
    lines = [summary["table_markdown"].rstrip()]
    lines += [f"Left out: {name} ({why})" for name, why in summary["skipped"].items()]
    return "\n".join(lines)


def _figure3(directory, reported, authors, overlay):
    """One Fig. 3 per network and layer whose sweeps ran DR: a curve per data set."""
    groups = defaultdict(list)
    for sweep, rows, _ in reported:
        if any(r["experiment"] in ("dr1", "dr2") for r in rows):
            groups[sweep.get("model"), sweep.get("layer")].append((sweep, rows))
    files = []
    for (model, layer), members in groups.items():
        runs = [(str(sweep.get("dataset") or sweep["name"]), rows,
                 _authors(sweep.get("model"), sweep.get("dataset"), layer, authors, overlay))
                for sweep, rows in members]
        figure = fig3_datasets(runs, setup=_setup(model, layer, None))
        files.append(save_figure(figure, directory / f"fig3_dr_{_slug(model, layer)}.png"))
    return files


def _layer_figures(directory, reported, authors, overlay):
    """One score-per-layer figure per network and data set swept at two layers or more."""
    groups = defaultdict(list)
    for sweep, rows, _ in reported:
        groups[sweep.get("model"), sweep.get("dataset")].append((sweep.get("layer"), rows))
    files = []
    for (model, dataset), layers in groups.items():
        if len({str(layer) for layer, _ in layers}) < 2 or not any(
                r["experiment"] != "baseline" for _, rows in layers for r in rows):
            continue
        paper = [(layer, _authors(model, dataset, layer, authors, overlay))
                 for layer in (published_layers(model, dataset, path=authors or None)
                               if overlay else ())]
        figure = fig_layers(layers, paper or None, setup=_setup(model, None, dataset))
        files.append(save_figure(figure, directory / f"layers_{_slug(model, dataset)}.png"))
    return files


def _authors(model, dataset, layer, authors, overlay):
    return find_authors_rows(model, dataset, layer, path=authors or None) if overlay else None


def _table_records(sweep, rows):
    """One record per experiment of a sweep: its baseline and its frontier's key points."""
    records = []
    experiments = [e for e in dict.fromkeys(r["experiment"] for r in rows) if e != "baseline"]
    for experiment in experiments:
        frontier = rate_score_frontier([r for r in rows if r["experiment"] in
                                        ("baseline", experiment)])
        mine = [c for c in frontier.configurations if c.experiment == experiment]
        n = mine[0].n_features
        cheapest = _own_cheapest(mine, HEADLINE_LOSS)
        record = {"sweep": sweep["name"], "model": sweep.get("model"),
                  "layer": sweep.get("layer"), "dataset": sweep.get("dataset"),
                  "status": sweep.get("status"), "experiment": experiment, "n_features": n,
                  "metric": frontier.metric, "baseline_score": frontier.baseline,
                  "n_configurations": len(mine),
                  "best_relative_score": max(c.relative for c in mine),
                  "bits_per_dim_within_1pct": cheapest and cheapest.bits_per_dimension,
                  "params_within_1pct": cheapest and cheapest.params}
        for budget in BUDGETS:
            fitting = [c.relative for c in mine if c.bits_per_vector <= budget * n]
            record[f"relative_at_{budget}_bits_per_dim"] = max(fitting, default=None)
        records.append(record)
    return records


def _own_cheapest(configurations, max_loss):
    """The experiment's own configuration of fewest bits within ``max_loss`` (not the
    baseline, which every experiment's frontier ends with)."""
    passing = [c for c in configurations if c.relative >= 1 - max_loss]
    return min(passing, key=lambda c: (c.bits_per_vector, -c.value), default=None)


def _table_markdown(name, records):
    header = ("sweep", "model", "layer", "data set", "experiment", "baseline",
              "fewest bits/dim within 1 %", *(f"rel. at {b} bit/dim" for b in BUDGETS),
              "best rel.")
    lines = [f"Campaign {name or ''}: per sweep and experiment, the baseline score, the "
             "fewest bits per dimension keeping 99 % of it, and the best relative score "
             "within each budget.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in records:
        within = ("–" if r["bits_per_dim_within_1pct"] is None else
                  f"{r['bits_per_dim_within_1pct']:.3g} ({format_params(r['params_within_1pct'])})")
        cells = [r["sweep"], r["model"] or "–", r["layer"] or "–", r["dataset"] or "–",
                 EXPERIMENT_NAMES.get(r["experiment"], r["experiment"]),
                 f"{100 * r['baseline_score']:.2f} %", within,
                 *(_percent(r[f"relative_at_{b}_bits_per_dim"]) for b in BUDGETS),
                 _percent(r["best_relative_score"])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _write_table(stem, records, markdown):
    paths = [Path(f"{stem}{suffix}") for suffix in (".csv", ".json", ".md")]
    with open(paths[0], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_FIELDS)
        writer.writeheader()
        for record in records:
            writer.writerow({key: "" if value is None else
                             json.dumps(value) if isinstance(value, dict) else value
                             for key, value in record.items()})
    paths[1].write_text(json.dumps(records, indent=2) + "\n")
    paths[2].write_text(markdown)
    return paths


def _percent(fraction):
    return "–" if fraction is None else f"{100 * fraction:.1f} %"


def _setup(model, layer, dataset):
    parts = [str(model)] if model else []
    if layer is not None:
        parts.append(f"layer {layer}")
    if dataset:
        parts.append(str(dataset))
    return ", ".join(parts) or None


def _slug(*names):
    return "_".join(re.sub(r"[^A-Za-z0-9-]+", "-", str(n)).strip("-") or "none"
                    for n in names)
