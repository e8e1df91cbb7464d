"""The authors' published result tables, read into the row form of our own sweeps.

Carvalho et al. released every curve of the paper as CSV with their MATLAB code
(github.com/MicaelCarvalho/DNNsUnderStress, MIT licence).  The package ships them
unchanged in ``dnnstress/data/authors/`` (:data:`SHIPPED_DIR`, with their licence and a
``SOURCE.md`` naming their origin and each file's SHA-256); an explicit folder or
``$DNNSTRESS_AUTHORS_RESULTS`` replaces them.  This module turns each table into rows
with the columns of a sweep's ``DIR/results.csv``, so that Table 3, the figures and the
tests treat the paper's numbers and ours with the same code.

File names read ``(EXP) MODEL [DATASET].csv``; ``MULTILAYER (EXP) ...`` files hold the
same curves for other VGG-M layers.  Scores are published in percent; rows hold fractions.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from dnnstress.stress.accounting import FLOAT32_BITS, bits_per_vector, compression_rate

ENV_VAR = "DNNSTRESS_AUTHORS_RESULTS"
SHIPPED_DIR = Path(__file__).resolve().parent / "data" / "authors"

# Feature dimensionality of each model's published layer (reference README, "Feature
# extraction"); VGG-M-128 is the 128-d VGG-M variant of the supplementary Q-B table.
N_FEATURES = {"VGG-M": 4096, "VGG-M-128": 128, "GoogLeNet": 50176, "BossaNova": 63440}

# Dimensionality of the other VGG-M layers of the MULTILAYER tables: fc6/fc7 and their
# ReLUs are 4096-d, fc8 and softmax 1000-d (reference README); layer 15 (pool5 of a 224 px
# input, 6 x 6 x 512) only appears in the Q tables, where n does not change the results.
VGG_M_LAYER_FEATURES = {15: 18432, 16: 4096, 17: 4096, 18: 4096, 19: 4096, 20: 1000, 21: 1000}

# The layer each model's main (non-MULTILAYER) tables were computed on (paper, Sec. 3).
PAPER_LAYER = {"VGG-M": 19, "VGG-M-128": 19, "GoogLeNet": 151}

# Table 2 of the paper, as fractions: the fallback baseline for a model without a
# full-dimensional DR point or a 0-bit Q-B point in its tables.
TABLE2_BASELINES = {
    ("VGG-M", "VOC 2007"): 0.7695,
    ("GoogLeNet", "VOC 2007"): 0.8058,
    ("BossaNova", "VOC 2007"): 0.5102,
    ("VGG-M", "MIT-67"): 0.6335,
    ("VGG-M", "Food-101"): 0.4622,
}

_EXPERIMENTS = {"DR-1": "dr1", "DR-2": "dr2", "Q-1": "q1", "Q-2": "q2", "FC": "fc", "Q-B": "qb"}
_MODEL_ALIASES = {"GOOG": "GoogLeNet"}
_METRICS = {"mAP": "map_voc07_11pt", "Acc": "accuracy"}
_FILE_NAME = re.compile(r"^(?P<multilayer>MULTILAYER )?\((?P<experiment>[^)]+)\) "
                        r"(?P<model>\S+) \[(?P<dataset>[^\]]+)\]\.csv$")


def default_authors_dir() -> Path:
    """``$DNNSTRESS_AUTHORS_RESULTS`` if set, else the copy shipped with the package."""
    return Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else SHIPPED_DIR


def resolve_authors_dir(path=None) -> Path:
    """``path`` if given, else :func:`default_authors_dir`; an error if it is no folder."""
    directory = Path(path) if path is not None else default_authors_dir()
    if not directory.is_dir():
        raise FileNotFoundError(f"authors' results folder does not exist: {directory}")
    return directory


def list_tables(path=None) -> list[dict]:
    """One entry per CSV: ``experiment``, ``model``, ``dataset``, ``multilayer``, ``path``."""
    tables = []
    for file in sorted(resolve_authors_dir(path).glob("*.csv")):
        match = _FILE_NAME.match(file.name)
        if match is None or match["experiment"] not in _EXPERIMENTS:
            continue
        tables.append({
            "experiment": _EXPERIMENTS[match["experiment"]],
            "model": _MODEL_ALIASES.get(match["model"], match["model"]),
            "dataset": match["dataset"],
            "multilayer": bool(match["multilayer"]),
            "path": file,
        })
    return tables


def load_authors_rows(model: str = "VGG-M", dataset: str = "VOC 2007", *, layer=None,
                      path=None) -> list[dict]:
    """Every published point of one model, data set and layer, as result rows.

    Parameters
    ----------
    model : str
        ``"VGG-M"``, ``"GoogLeNet"``, ``"BossaNova"`` or ``"VGG-M-128"``.
    dataset : str
        ``"VOC 2007"``, ``"MIT-67"`` or ``"Food-101"``.
    layer : int, optional
        The network layer; default the paper's (19 for VGG-M).  Other VGG-M layers come
        from the MULTILAYER tables.
    path : str or Path, optional
        The CSV folder; default :func:`default_authors_dir`.

    Returns
    -------
    list of dict
        A ``baseline`` row first, then one row per published point, with the columns of
        ``results.csv`` (``score`` as a fraction, ``relative_score`` against the baseline)
        plus ``score_std`` (DR-1's standard deviation over its 10 repeats), ``model``,
        ``dataset``, ``layer`` and ``source="paper"``.

    Notes
    -----
    The baseline is the run's own unstressed score: the full-dimensional DR point
    (DR-1 and DR-2 agree on it), else Q-B at 0 erased bits, else Table 2 (rounded to two
    decimals).  The unrounded value matters: Table 3's DR-1 2 % cell for VGG-M (25 %)
    only follows from 76.952192, not from Table 2's 76.95 (see ``tests/test_table3.py``).
    """
    tables = [t for t in list_tables(path) if t["model"] == model and t["dataset"] == dataset]
    if not tables:
        raise ValueError(f"no authors' tables for model {model!r} on {dataset!r}")
    main_layer = PAPER_LAYER.get(model)
    want = main_layer if layer is None else layer
    points, seen = [], set()
    # Main tables first, so that a MULTILAYER duplicate of the paper's layer is skipped.
    for table in sorted(tables, key=lambda t: t["multilayer"]):
        for point in _read_table(table, main_layer):
            if point["layer"] != want:
                continue
            key = (point["experiment"], point["kept_dims"], point["n_levels"],
                   point["erased_bits"])
            if key not in seen:
                seen.add(key)
                points.append(point)
    if not points:
        raise ValueError(f"no authors' points for {model!r} on {dataset!r} at layer {want}")
    n_features = _n_features(model, want)
    baseline = _baseline(points, n_features, model, dataset)
    rows = [_row("baseline", n_features, baseline, points[0]["metric"], model, dataset, want)]
    for point in points:
        rows.append(_complete(point, n_features, baseline))
    return rows


def _read_table(table, main_layer):
    with open(table["path"], newline="") as handle:
        reader = csv.DictReader(handle)
        score_column = next(c for c in reader.fieldnames if c in _METRICS)
        for record in reader:
            yield {
                "experiment": table["experiment"],
                "layer": int(record["Layer"]) if "Layer" in record else main_layer,
                "kept_dims": _int_or_none(record.get("Dimensions")),
                "n_levels": _int_or_none(record.get("Values")),
                "erased_bits": _int_or_none(record.get("Removed Bits")),
                "score": float(record[score_column]) / 100.0,
                "score_std": (float(record["SD " + score_column]) / 100.0
                              if "SD " + score_column in record else None),
                "metric": _METRICS[score_column],
                "model": table["model"],
                "dataset": table["dataset"],
            }


def _n_features(model, layer):
    if model == "VGG-M" and layer in VGG_M_LAYER_FEATURES:
        return VGG_M_LAYER_FEATURES[layer]
    if model in N_FEATURES:
        return N_FEATURES[model]
    raise ValueError(f"unknown feature dimensionality for model {model!r}, layer {layer}")


def _baseline(points, n_features, model, dataset):
    for experiment, key, value in (("dr1", "kept_dims", n_features),
                                   ("dr2", "kept_dims", n_features),
                                   ("qb", "erased_bits", 0)):
        for point in points:
            if point["experiment"] == experiment and point[key] == value:
                return point["score"]
    if (model, dataset) in TABLE2_BASELINES:
        return TABLE2_BASELINES[model, dataset]
    raise ValueError(f"no baseline for {model!r} on {dataset!r}: no full-dimensional DR "
                     "point, no 0-bit Q-B point and no Table 2 entry")


def _complete(point, n_features, baseline):
    """Fill the derived columns of ``results.csv`` for one published point."""
    experiment = point["experiment"]
    kept = point["kept_dims"] if point["kept_dims"] is not None else n_features
    bits = bits_per_vector(kept, point["n_levels"],
                           point["erased_bits"] if experiment == "qb" else None)
    row = _row(experiment, n_features, point["score"], point["metric"], point["model"],
               point["dataset"], point["layer"])
    row.update(kept_dims=kept, n_levels=point["n_levels"], erased_bits=point["erased_bits"],
               kept_fraction=kept / n_features, bits_per_vector=bits,
               compression_rate=compression_rate(n_features, bits),
               relative_score=point["score"] / baseline, score_std=point["score_std"])
    return row


def _row(experiment, n_features, score, metric, model, dataset, layer):
    return {
        "experiment": experiment, "kept_dims": n_features, "n_levels": None,
        "erased_bits": None, "repeat": None, "seed": None, "n_features": n_features,
        "kept_fraction": 1.0, "bits_per_vector": n_features * FLOAT32_BITS,
        "compression_rate": 0.0, "score": score, "metric": metric, "relative_score": 1.0,
        "wall_time_s": None, "score_std": None, "model": model, "dataset": dataset,
        "layer": layer, "source": "paper",
    }


def _int_or_none(text):
    return int(text) if text not in (None, "") else None



def find_authors_rows(model, dataset, layer=None, *, path=None) -> list[dict] | None:
    """The authors' rows for a setup named our way, or None where they published none.

    Names match ignoring case and punctuation ("vgg-m" is "VGG-M", "voc2007" is "VOC
    2007", "mit67" is "MIT-67"); a layer matches by its number ("19", "L19", 19), and no
    layer means the paper's.  A campaign's figures overlay what this finds.
    """
    names = _published_names(model, dataset, path)
    number = re.search(r"\d+", str(layer)) if layer is not None else None
    if names is None or (layer is not None and number is None):
        return None
    try:
        return load_authors_rows(*names, layer=number and int(number[0]), path=path)
    except ValueError:  # none at that layer
        return None


def published_layers(model, dataset, *, path=None) -> list[int]:
    """The layers the authors published points of for a setup named our way (sorted)."""
    names = _published_names(model, dataset, path)
    if names is None:
        return []
    tables = [t for t in list_tables(path) if (t["model"], t["dataset"]) == names]
    return sorted({point["layer"] for table in tables
                   for point in _read_table(table, PAPER_LAYER.get(names[0]))})


def _published_names(model, dataset, path):
    """The authors' (model, dataset) spelling of ours, or None where they have none."""
    def simple(name):
        return re.sub(r"[^a-z0-9]", "", str(name).lower())
    for table in list_tables(path):
        if (model is not None and dataset is not None and simple(table["model"]) ==
                simple(model) and simple(table["dataset"]) == simple(dataset)):
            return table["model"], table["dataset"]
    return None
