"""Linear SVM training per stressed configuration: the batched solver against sklearn.

A Q-2 sweep (h = 2 .. N levels per dimension) over a synthetic problem the size of VOC
2007 (5,011 train / 4,952 test images, 4,096-d ReLU features, 20 one-vs-rest labels with
"difficult" entries) is trained twice, configuration by configuration, in the same run:
by :func:`dnnstress.classify.fit_linear_svms` (all 20 labels at once, ``--batch``
configurations per call, each batch warm-started from the previous configuration) and by
scikit-learn's ``LinearSVC`` (LIBLINEAR, one model per label, defaults C = 1, tol = 1e-4)
and, where ``liblinear-official`` is installed, by LIBLINEAR itself with its dual solver
(``-s 1 -B 1``: the same objective), its ``problem()`` conversion timed apart.
All are scored with the VOC 2007 11-point mAP on the test split; the table shows the
seconds per configuration, the speed-up and both scores, then what the paper's grid of
about 600 trainings would cost.  ``--scale`` shrinks samples and dimensions for a quick run.

``--features FILE`` (a features file, e.g. the demo's features.npz) instead trains every
configuration of the demo's grid (``--every K``: every K-th) of those features, as the
sweep does (L2-normalised, one-vs-rest over the classes, warm-started from the
baseline's weights), with ours and with LIBLINEAR's dual (``-s 1 -B 1``, its own
one-vs-rest, ``problem()`` from a CSR matrix timed apart), one after the other per
configuration.  Both objectives are shown relative to the best known (the lower of the
two, or of ``LinearSVC(tol=1e-5)`` with ``--reference``).  LIBLINEAR's default stop
(``-e 0.1``) leaves its objective further from the optimum than ours on every
configuration of the demo's features, so where it is nevertheless faster it is trained
again at ``-e`` 0.03, 0.01, 0.003, ... until every label's objective is no higher than
ours, and the speed-up at equal accuracy ("speedup =") is read from that run
("liblinear s =", "-e ="); elsewhere it is the speed-up shown, a lower bound.
"""

from __future__ import annotations

import importlib
import time

import numpy as np

from dnnstress._array import to_numpy
from dnnstress.benchmarks._common import (available_devices, best_time, print_table,
                                          synchronize)
from dnnstress.classify import fit_linear_svms, l2_normalize
from dnnstress.metrics import mean_average_precision
from dnnstress.stress import UniformQuantizer

VOC2007 = {"n_train": 5011, "n_test": 4952, "n_features": 4096, "n_labels": 20}
PAPER_GRID_TRAININGS = 600  # DR-1 x 10 seeds, DR-2, Q-1, Q-2, FC 9 x 29: about 600 fits
# LIBLINEAR's stops tried, after its default 0.1, to match our objective.
_TIGHTER_EPS = (0.03, 0.01, 0.003, 0.001, 3e-4, 1e-4)


def add_arguments(parser) -> None:
    parser.add_argument("--scale", type=float, default=1.0,
                        help="shrink samples and dimensions by this factor (default 1: "
                             "VOC 2007 size)")
    parser.add_argument("--max-levels", type=int, default=7,
                        help="Q-2 sweep h = 2 .. this (default 7: six configurations)")
    parser.add_argument("--batch", type=int, default=2,
                        help="configurations trained per batched call (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--features", metavar="FILE",
                        help="train the demo grid's configurations of this features file "
                             "against LIBLINEAR instead of the synthetic Q-2 sweep")
    parser.add_argument("--every", type=int, default=1, metavar="K",
                        help="with --features: every K-th configuration (default 1: all)")
    parser.add_argument("--reference", action="store_true",
                        help="with --features: also fit LinearSVC(tol=1e-5) as the "
                             "objectives' reference (slow)")


def run(args) -> dict:
    if args.features is not None:
        return run_grid(args)
    if not 0 < args.scale <= 1:
        raise ValueError(f"--scale must be in (0, 1], got {args.scale}")
    if args.max_levels < 2 or args.batch < 1:
        raise ValueError("--max-levels must be >= 2 and --batch >= 1")
    sizes = {k: max(int(round(v * args.scale)), 2) for k, v in VOC2007.items()
             if k != "n_labels"}
    X_train, Y_train, X_test, Y_test = make_voc_like(**sizes, n_labels=20, seed=args.seed)
    levels = list(range(2, args.max_levels + 1))
    print(f"synthetic VOC-like problem: {sizes['n_train']} train / {sizes['n_test']} test, "
          f"{sizes['n_features']}-d, 20 labels; Q-2 h = {levels[0]}..{levels[-1]}, "
          "then L2 normalisation")
    configs = [_q2_then_normalize(X_train, X_test, h) for h in levels]
    devices = available_devices(args.device)
    ours = {device: [] for device in devices}
    sklearn_rows, liblinear_rows, warm = [], [], {device: None for device in devices}
    # Batch by batch, ours then sklearn on the same configurations: both see the same
    # machine load, which matters on a shared 2-core machine.
    for first in range(0, len(configs), args.batch):
        chunk = configs[first:first + args.batch]
        for device in devices:
            results, warm[device] = _time_ours(chunk, Y_train, Y_test, warm[device], device)
            ours[device] += results
        sklearn_rows += [_time_sklearn(*config, Y_train, Y_test) for config in chunk]
        liblinear_rows += [_time_liblinear(*config, Y_train, Y_test) for config in chunk]
    rows, summary = [], {}
    for device in devices:
        for h, (s_ours, map_ours), (s_sk, map_sk), lib in zip(
                levels, ours[device], sklearn_rows, liblinear_rows):
            rows.append({"device": device, "h": h, "ours s": s_ours, "sklearn s": s_sk,
                         "speedup": s_sk / s_ours, "liblinear s": lib["train_s"],
                         "problem() s": lib["problem_s"], "mAP ours": 100 * map_ours,
                         "mAP sklearn": 100 * map_sk, "mAP liblinear": 100 * lib["map"]})
        summary[device] = _summarise(ours[device], sklearn_rows)
    print_table(rows, ["device", "h", "ours s", "sklearn s", "speedup", "liblinear s",
                       "problem() s", "mAP ours", "mAP sklearn", "mAP liblinear"])
    if liblinear_rows[0]["map"] != liblinear_rows[0]["map"]:  # NaN: not installed
        print("LIBLINEAR columns empty: pip install liblinear-official to fill them")
    normalize = _time_l2_normalize(X_train)
    print(f"l2_normalize {X_train.shape[0]} x {X_train.shape[1]}: {normalize['seconds']:.4f} "
          f"s, {normalize['copy_ratio']:.2f}x a copy")

    for device, s in summary.items():
        print(f"{device}: {s['ours_s_per_config']:.2f} s/config against sklearn "
              f"{s['sklearn_s_per_config']:.2f} s ({s['speedup']:.1f}x); largest mAP "
              f"difference {s['max_map_difference_points']:.2f} points; paper grid of "
              f"{PAPER_GRID_TRAININGS} trainings: {s['grid_hours_ours']:.2f} h against "
              f"{s['grid_hours_sklearn']:.2f} h")
    return {"sizes": sizes, "levels": levels, "batch": args.batch, "rows": rows,
            "summary": summary, "l2_normalize": normalize}


def run_grid(args) -> dict:
    """Ours against LIBLINEAR's dual on the demo grid of a features file (--features)."""
    from dnnstress.commands.demo import DEMO_GRID
    from dnnstress.features import FeatureSet
    from dnnstress.sweep import EXPERIMENTS
    from dnnstress.sweep.plan import plan

    if args.every < 1:
        raise ValueError(f"--every must be >= 1, got {args.every}")
    features = FeatureSet.load(args.features)
    classes = np.unique(features.train_y)
    Y = np.where(features.train_y[:, None] == classes, 1, -1).astype(np.int8)
    n, d = features.train_x.shape
    units = plan(EXPERIMENTS, DEMO_GRID, d, n)
    _compile_solver()
    pending = {spec.key for unit in units for spec in unit.specs}
    print(f"{args.features}: {n} x {d}, {classes.size} classes; demo grid, {len(pending)} "
          f"configurations, every {args.every}")
    rows, anchor, count = [], None, 0
    for unit in units:
        for stressed in unit.stress(features.train_x, features.test_x, pending):
            count += 1
            baseline = stressed.spec.experiment == "baseline"
            if not baseline and (count - 1) % args.every:
                continue
            X = l2_normalize(stressed.train_x)
            warm = None if anchor is None else (stressed.warm_start(anchor[0]), anchor[1])
            row = {"experiment": stressed.spec.experiment,
                   "params": ",".join(f"{k}={v}" for k, v in stressed.spec.params.items()),
                   "d": X.shape[1]}
            start = time.perf_counter()
            W, b, info = fit_linear_svms(X[None], Y, warm_start=warm)
            row["ours s"] = time.perf_counter() - start
            row["epochs"] = int(info["n_epochs"].max())
            row["newton"] = int(info["n_iter"].max())
            if baseline:
                anchor = W[0], b[0]
            found = {"ours": objectives(X, Y, W[0], b[0])}
            lib = _liblinear_ovr(X, Y)
            if lib is not None:
                row["liblinear s"], row["problem() s"] = lib["train_s"], lib["problem_s"]
                row["speedup"] = lib["train_s"] / row["ours s"]
                found["liblinear"] = objectives(X, Y, lib["W"], lib["b"])
                equal = lib if row["speedup"] >= 1 else _liblinear_as_accurate(
                    X, Y, found["ours"], lib)
                row["liblinear s ="], row["-e ="] = equal["train_s"], equal["eps"]
                row["speedup ="] = equal["train_s"] / row["ours s"]
            if args.reference:
                found["reference"] = objectives(X, Y, *_linear_svc_ovr(X, Y))
            best = np.min(np.stack(list(found.values())), axis=0)
            for name, value in found.items():
                row[f"{name} obj gap"] = float(np.max((value - best) / best))
            rows.append(row)
    columns = ["experiment", "params", "d", "ours s", "epochs", "newton", "liblinear s",
               "problem() s", "speedup", "liblinear s =", "-e =", "speedup =",
               "ours obj gap", "liblinear obj gap"]
    print_table(rows, columns + (["reference obj gap"] if args.reference else []))
    summary = {"configurations": len(rows),
               "ours_s_total": sum(row["ours s"] for row in rows)}
    if "speedup" in rows[0]:
        speedups = [row["speedup"] for row in rows]
        summary.update({"liblinear_s_total": sum(row["liblinear s"] for row in rows),
                        "min_speedup": min(speedups),
                        "median_speedup": float(np.median(speedups)),
                        "ours_faster": sum(s > 1 for s in speedups),
                        "ours_faster_at_equal_accuracy": sum(row["speedup ="] > 1
                                                             for row in rows)})
    summary["max_ours_obj_gap"] = max(row["ours obj gap"] for row in rows)
    print(", ".join(f"{key} {value:.4g}" for key, value in summary.items()))
    ratios = [_time_l2_normalize(features.train_x)["copy_ratio"] for _ in range(5)]
    print(f"l2_normalize {n} x {d}, five rounds: " + ", ".join(f"{r:.2f}" for r in ratios)
          + "x a copy")
    return {"features": str(args.features), "every": args.every, "rows": rows,
            "summary": summary, "l2_normalize_copy_ratios": ratios}


def _compile_solver():
    """Fit tiny problems of every kind the grid meets (float32 and float64, dense and
    sparse rows) so that numba's compilation, once per process where its cache is
    cold, is not timed as the first such configuration's training."""
    rng = np.random.default_rng(0)
    Y = np.where(rng.random((40, 2)) < 0.5, 1, -1).astype(np.int8)
    dense = rng.random((40, 20)) + 0.1
    sparse = np.zeros((40, 20))
    sparse[np.arange(40), np.arange(40) % 20] = 1.0  # 5 % non-zero: CSR rows
    for X in (dense, sparse):
        for dtype in (np.float32, np.float64):
            fit_linear_svms(X.astype(dtype)[None], Y)


def objectives(X, Y, W, b):
    """LIBLINEAR's primal objective of every label's model (w, b), in float64."""
    X = X.astype(np.float64)
    margins = X @ W.T.astype(np.float64) + b.astype(np.float64)
    violations = np.maximum(0.0, 1.0 - Y * margins) * (Y != 0)
    return (0.5 * ((W.astype(np.float64) ** 2).sum(axis=1) + b.astype(np.float64) ** 2)
            + (violations ** 2).sum(axis=0))


def _liblinear_ovr(X, Y, eps=0.1):
    """LIBLINEAR ``-s 1 -B 1 -e eps`` on one-vs-rest targets Y (n, L) without 0 entries:
    its own multi-class training (one-vs-rest, label after label).  None if not
    installed."""
    try:
        from liblinear.liblinearutil import parameter, problem, train
    except ImportError:
        return None
    import scipy.sparse

    labels = np.argmax(Y, axis=1).astype(np.float64)
    start = time.perf_counter()
    data = problem(labels, scipy.sparse.csr_matrix(X.astype(np.float64)))
    middle = time.perf_counter()
    model = train(data, parameter(f"-s 1 -B 1 -c 1 -q -e {eps:g}"))
    train_s = time.perf_counter() - middle
    order = model.get_labels()
    W, b = np.empty((Y.shape[1], X.shape[1])), np.empty(Y.shape[1])
    for index, label in enumerate(order):
        w, bias = model.get_decfun(index)
        W[int(label)], b[int(label)] = w, bias
    return {"W": W, "b": b, "train_s": train_s, "problem_s": middle - start, "eps": eps}


def _liblinear_as_accurate(X, Y, target, default):
    """The loosest LIBLINEAR run whose every label's objective is at most ``target``
    (ours): ``default`` (its ``-e 0.1`` run) if it is, else one at the loosest ``-e``
    of :data:`_TIGHTER_EPS` that is; the tightest if none is, whose time is then a
    lower bound on LIBLINEAR's at equal accuracy."""
    found = default
    for eps in _TIGHTER_EPS:
        if (objectives(X, Y, found["W"], found["b"]) <= target).all():
            break
        found = _liblinear_ovr(X, Y, eps)
    return found


def _linear_svc_ovr(X, Y):
    """``LinearSVC(tol=1e-5)`` per label: the tests' reference solution."""
    from sklearn.svm import LinearSVC

    W, b = np.empty((Y.shape[1], X.shape[1])), np.empty(Y.shape[1])
    for label in range(Y.shape[1]):
        svc = LinearSVC(C=1.0, tol=1e-5, max_iter=100_000).fit(X, Y[:, label])
        W[label], b[label] = svc.coef_[0], svc.intercept_[0]
    return W, b


def make_voc_like(n_train, n_test, n_features, n_labels=20, seed=0):
    """Synthetic VOC-like features and labels: float32 (n, d) and int8 (n, L) in {1,-1,0}.

    Labels are drawn with VOC-like imbalance (from 40 % to 3 % of the images, at least one
    label per image); the features are ReLU outputs (about 70 % zeros) of a random linear
    map of a 256-d latent code made of the image's label prototypes plus noise, so that a
    linear SVM reaches a realistic, well-above-chance mAP.  2 % of the positives are marked
    "difficult" (0).
    """
    rng = np.random.default_rng(seed)
    n, latent_dim = n_train + n_test, 256
    present = rng.random((n, n_labels)) < np.geomspace(0.4, 0.03, n_labels)
    empty = ~present.any(axis=1)
    present[empty, rng.integers(0, n_labels, int(empty.sum()))] = True
    latent = (present @ rng.standard_normal((n_labels, latent_dim)) * 0.2
              + rng.standard_normal((n, latent_dim)))
    mixing = rng.standard_normal((latent_dim, n_features)) / np.sqrt(latent_dim)
    gain = np.exp(rng.normal(0.0, 0.5, n_features))  # units of unequal scale, as fc7's
    X = latent @ mixing * gain + 0.7 * rng.standard_normal((n, n_features)) - 0.8
    X = np.maximum(X, 0).astype(np.float32)
    Y = np.where(present, 1, -1).astype(np.int8)
    Y[present & (rng.random(present.shape) < 0.02)] = 0
    return X[:n_train], Y[:n_train], X[n_train:], Y[n_train:]


def _q2_then_normalize(X_train, X_test, h):
    """Q-2 fitted on the training set, then L2 normalisation (the paper's order)."""
    q = UniformQuantizer(h, per_dimension=True).fit(X_train)
    return l2_normalize(q.transform(X_train)), l2_normalize(q.transform(X_test))


def _time_sklearn(X_train, X_test, Y_train, Y_test):
    """Seconds and test mAP of one configuration with one LinearSVC per label."""
    from sklearn.svm import LinearSVC

    scores = np.empty(Y_test.shape)
    start = time.perf_counter()
    for label in range(Y_train.shape[1]):
        keep = Y_train[:, label] != 0
        svc = LinearSVC(C=1.0).fit(X_train[keep], Y_train[keep, label])
        scores[:, label] = svc.decision_function(X_test)
    seconds = time.perf_counter() - start
    return seconds, mean_average_precision(scores, Y_test)


def _time_liblinear(X_train, X_test, Y_train, Y_test):
    """LIBLINEAR's dual solver (-s 1 -B 1, the same objective as ours) per label:
    seconds in ``problem()`` (conversion), seconds in ``train``, and the test mAP.
    NaN everywhere when liblinear-official is not installed."""
    try:
        from liblinear.liblinearutil import parameter, problem, train
    except ImportError:
        return {"problem_s": float("nan"), "train_s": float("nan"), "map": float("nan")}
    scores = np.empty(Y_test.shape)
    problem_s = train_s = 0.0
    for label in range(Y_train.shape[1]):
        keep = Y_train[:, label] != 0
        start = time.perf_counter()
        data = problem(Y_train[keep, label].astype(np.float64),
                       np.ascontiguousarray(X_train[keep], dtype=np.float64))
        middle = time.perf_counter()
        model = train(data, parameter("-s 1 -B 1 -c 1 -q"))
        train_s += time.perf_counter() - middle
        problem_s += middle - start
        w, b = model.get_decfun()
        sign = 1.0 if model.get_labels()[0] == 1 else -1.0
        scores[:, label] = sign * (X_test @ np.asarray(w) + b)
    return {"problem_s": problem_s, "train_s": train_s,
            "map": mean_average_precision(scores, Y_test)}


def _time_l2_normalize(X):
    """Best time of l2_normalize on ``X`` and its ratio to a plain copy of ``X``."""
    seconds = best_time(lambda: l2_normalize(X))
    copy = best_time(lambda: X.copy())
    return {"seconds": seconds, "copy_seconds": copy, "copy_ratio": seconds / copy}


def _time_ours(chunk, Y_train, Y_test, warm, device):
    """Train a batch of configurations at once, warm-started from the previous batch.

    Returns per configuration (seconds, the batch time shared equally; test mAP), and
    the warm start for the next batch: the solution of this batch's last configuration.
    """
    xp = np if device == "cpu" else importlib.import_module("cupy")
    X = xp.stack([xp.asarray(train) for train, _ in chunk])
    Y = xp.asarray(Y_train)
    synchronize(xp)
    start = time.perf_counter()
    W, b, _ = fit_linear_svms(X, Y, warm_start=warm)
    synchronize(xp)
    seconds = (time.perf_counter() - start) / len(chunk)
    W, b = to_numpy(W), to_numpy(b)
    results = [(seconds, mean_average_precision(test @ W[k].T + b[k], Y_test))
               for k, (_, test) in enumerate(chunk)]
    return results, (xp.asarray(W[-1]), xp.asarray(b[-1]))


def _summarise(ours, sklearn_rows):
    ours_s = float(np.mean([s for s, _ in ours]))
    sk_s = float(np.mean([s for s, _ in sklearn_rows]))
    gap = max(abs(a - b) for (_, a), (_, b) in zip(ours, sklearn_rows))
    return {"ours_s_per_config": ours_s, "sklearn_s_per_config": sk_s,
            "speedup": sk_s / ours_s, "max_map_difference_points": 100 * gap,
            "grid_hours_ours": ours_s * PAPER_GRID_TRAININGS / 3600,
            "grid_hours_sklearn": sk_s * PAPER_GRID_TRAININGS / 3600}
