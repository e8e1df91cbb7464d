"""The whole sweep path per configuration (stress, L2, SVM, score) against a plain sklearn loop.

A synthetic problem the size of VOC 2007 (5,011 train / 4,952 test, 4,096-d ReLU features,
20 labels; ``make_voc_like`` of the SVM benchmark; ``--scale`` shrinks samples and
dimensions) is swept over one or two configurations of every experiment by
:func:`dnnstress.sweep.run_sweep` (into a temporary folder, rows read back from
``results.csv``, so the timing is exactly what a user's sweep pays: stressor fit and
transform, normalisation, the warm-started solver, mAP and the row write).  In the same
run the same configurations go through a plain loop: the same stressors, then
scikit-learn's ``LinearSVC`` (LIBLINEAR, one model per label) and the same mAP.  The table
shows seconds per configuration and both scores; the summary extrapolates each
experiment's mean to the paper's full grid (about 570 trainings).
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from dnnstress.benchmarks._common import available_devices, print_table
from dnnstress.benchmarks.svm import VOC2007, make_voc_like
from dnnstress.classify import l2_normalize
from dnnstress.features import FeatureSet
from dnnstress.metrics import mean_average_precision
from dnnstress.stress import (Identity, MantissaErasure, PCADrop, RandomDrop,
                              UniformQuantizer, dr_schedule, fc_schedule, make_fc)
from dnnstress.sweep import Grid, read_results, run_sweep
from dnnstress.sweep.plan import plan

# One or two configurations per experiment: cheap and expensive ends of each curve.
BENCH_GRID = Grid(levels=(2, 16), fc_levels=(8,), dr_steps=(2, 20), fc_steps=(1,),
                  erased_bits=(50,), repeats=1)


def add_arguments(parser) -> None:
    parser.add_argument("--scale", type=float, default=0.5,
                        help="shrink samples and dimensions by this factor (default "
                             "%(default)s; 1 is VOC 2007 size)")
    parser.add_argument("--no-sklearn", action="store_true",
                        help="skip the scikit-learn loop (it dominates the run time)")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> dict:
    if not 0 < args.scale <= 1:
        raise ValueError(f"--scale must be in (0, 1], got {args.scale}")
    sizes = {k: max(int(round(v * args.scale)), 8) for k, v in VOC2007.items()
             if k != "n_labels"}
    features = FeatureSet(*make_voc_like(**sizes, n_labels=20, seed=args.seed))
    print(f"synthetic VOC-like features: {sizes['n_train']} train / {sizes['n_test']} "
          f"test, {sizes['n_features']}-d, 20 labels")
    result = {"sizes": sizes, "devices": {}}
    sklearn = None if args.no_sklearn else _sklearn_loop(features)
    for device in available_devices(args.device):
        _warm_up(device)
        with tempfile.TemporaryDirectory() as out:
            run_sweep(features, out, grid=BENCH_GRID, device=device, progress=False)
            ours = {_key(row): row for row in read_results(out)}
        rows = []
        for key, row in ours.items():
            entry = {"device": device, "config": _label(row), "ours s": row["wall_time_s"],
                     "mAP ours": 100 * row["score"]}
            if sklearn:
                seconds, score = sklearn[key]
                entry.update({"sklearn s": seconds, "speedup": seconds / row["wall_time_s"],
                              "mAP sklearn": 100 * score})
            rows.append(entry)
        print_table(rows, ["device", "config", "ours s", "sklearn s", "speedup",
                           "mAP ours", "mAP sklearn"])
        estimate = _grid_estimate(ours, sklearn, sizes["n_features"], sizes["n_train"])
        _print_estimate(device, estimate)
        result["devices"][device] = {"configs": rows, "paper_grid": estimate}
    return result


def _warm_up(device):
    """A tiny sweep first, so that JIT and kernel compilation are not timed."""
    tiny = FeatureSet(*make_voc_like(40, 20, 16, n_labels=3))
    with tempfile.TemporaryDirectory() as out:
        run_sweep(tiny, out, grid=BENCH_GRID, device=device, progress=False)


def _sklearn_loop(features: FeatureSet) -> dict:
    """Seconds and mAP of every benchmark configuration through stressor + LinearSVC."""
    from sklearn.svm import LinearSVC

    results = {}
    for key, stressor in _configs(features.n_features):
        start = time.perf_counter()
        stressor.fit(features.train_x)
        train = l2_normalize(stressor.transform(features.train_x))
        test = l2_normalize(stressor.transform(features.test_x))
        Y = features.train_y
        scores = np.empty(features.test_y.shape)
        for label in range(Y.shape[1]):
            keep = Y[:, label] != 0
            model = LinearSVC(C=1.0).fit(train[keep], Y[keep, label])
            scores[:, label] = model.decision_function(test)
        score = mean_average_precision(scores, features.test_y)
        results[key] = (time.perf_counter() - start, score)
    return results


def _configs(n):
    """(row key, unfitted stressor) of every configuration of BENCH_GRID."""
    g = BENCH_GRID
    yield ("baseline", n, None, None, None), Identity()
    for k in (dr_schedule(n)[i - 1] for i in g.dr_steps):
        yield ("dr1", k, None, None, 0), RandomDrop(k, random_state=g.base_seed)
        yield ("dr2", k, None, None, None), PCADrop(k)
    for experiment, per_dimension in (("q1", False), ("q2", True)):
        for h in g.levels:
            yield (experiment, n, h, None, None), UniformQuantizer(h, per_dimension)
    for k in (fc_schedule(n)[j - 1] for j in g.fc_steps):
        for h in g.fc_levels:
            yield ("fc", k, h, None, None), make_fc(k, h)
    for bits in g.erased_bits:
        yield ("qb", n, None, bits, None), MantissaErasure(bits)


def _grid_estimate(ours, sklearn, n_features, n_train) -> dict:
    """Hours for the paper's full grid: each experiment's mean seconds per configuration
    times its number of configurations."""
    counts = {}
    for unit in plan(("baseline", "dr1", "dr2", "q1", "q2", "fc", "qb"), Grid(),
                     n_features, n_train):
        for spec in unit.specs:
            counts[spec.experiment] = counts.get(spec.experiment, 0) + 1

    def hours(timings):
        per_experiment = {}
        for key, seconds in timings:
            per_experiment.setdefault(key[0], []).append(seconds)
        return sum(counts[e] * np.mean(s) for e, s in per_experiment.items()) / 3600

    estimate = {"trainings": sum(counts.values()),
                "ours_h": hours((k, r["wall_time_s"]) for k, r in ours.items())}
    if sklearn:
        estimate["sklearn_h"] = hours((k, s) for k, (s, _) in sklearn.items())
    return estimate


def _print_estimate(device, estimate):
    text = (f"{device}: paper grid of {estimate['trainings']} trainings: "
            f"{estimate['ours_h']:.2f} h")
    if "sklearn_h" in estimate:
        text += (f" against {estimate['sklearn_h']:.2f} h with a plain LinearSVC loop "
                 f"({estimate['sklearn_h'] / estimate['ours_h']:.1f}x)")
    print(text)


def _key(row):
    return (row["experiment"], row["kept_dims"], row["n_levels"], row["erased_bits"],
            row["repeat"])


def _label(row):
    parts = [row["experiment"], f"k={row['kept_dims']}"]
    if row["n_levels"] is not None:
        parts.append(f"h={row['n_levels']}")
    if row["erased_bits"] is not None:
        parts.append(f"b={row['erased_bits']}")
    return " ".join(parts)
