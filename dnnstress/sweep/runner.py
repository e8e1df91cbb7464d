"""Run a sweep: stress, normalise, train a linear SVM, score, append the row.

Pipeline of every configuration (paper Sec. 3; reference README "Order and classifier"):
fit the stressor on the training features only, transform train and test, L2-normalise
the rows, train a one-vs-rest linear SVM with C = 1 and score the test split (accuracy
for single-label data, mean average precision for multi-label data).

Where rows are computed is the *executor*'s business: a callable
``executor(units, pipeline, pending, batch)`` that yields the result rows of the pending
configurations of ``units`` (in any order).  The default, :func:`run_locally`, runs them
in this process, in order, batching configurations across units.  Another executor (a
distributed one) may run each unit elsewhere with :func:`unit_rows`, a top-level
function of picklable arguments: units hold only declarations, and the pipeline holds
the features and the baseline's fit (``pipeline.anchor``, set before any executor runs).
"""

from __future__ import annotations

import hashlib
import itertools
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dnnstress import __version__
from dnnstress.classify import (at_least_float32, check_solver, fit_linear_svms, l2_normalize,
                                one_vs_rest_targets)
from dnnstress.devices import check_device
from dnnstress.features import FeatureSet
from dnnstress.metrics import score_predictions
from dnnstress.stress import compression_rate
from dnnstress.sweep.experiments import TYPED_PARAMS, param_grids, resolve
from dnnstress.sweep.grid import EXPERIMENTS, Grid, PerWidth
from dnnstress.sweep.plan import plan
from dnnstress.sweep.scores import NeighbourScorer, Scores, svm_metric
from dnnstress.sweep.store import PARAMS_COLUMN, ResultsStore, row_key

NORMALIZE = ("after", "both")
_SOLVER_NAMES = {"ours": "LinearSVM", "cuml": "cuml.svm.LinearSVC"}
AP_METHODS = ("voc07", "area")


def run_sweep(features, out_dir, *, experiments=EXPERIMENTS, grid: Grid | None = None,
              device: str = "cpu", normalize: str = "after", progress: bool = True,
              C: float = 1.0, ap_method: str = "voc07", solver: str = "ours",
              batch="auto", params=None, scores=("svm",), scheduler: str | None = None,
              workers: int | None = None) -> Path:
    """Run the stress experiments on ``features``; return the path of ``results.csv``.

    Every finished configuration is appended to ``out_dir/results.csv`` at once, and a
    rerun into the same folder skips the rows already there, so an interrupted sweep
    resumes where it stopped.  The baseline (identity) row is always computed: it is the
    denominator of every ``relative_score``.

    Parameters
    ----------
    features : FeatureSet or path
        The features, or the ``.npz`` file holding them.
    out_dir : path
        Folder of ``results.csv`` and ``sweep.json``; created if missing.
    experiments : str or iterable of str or Experiment
        Registered experiment names (comma-separated string accepted; default the
        paper's ``baseline, dr1, dr2, q1, q2, fc, qb``; see
        :func:`~dnnstress.sweep.registered_experiments`), or
        :class:`~dnnstress.sweep.Experiment` objects, registered or not.
    grid : Grid, optional
        The paper experiments' levels, steps, erased bits, repeats, and the sweep's base
        seed; the paper's grid by default.
    params : dict, optional
        Parameter grids over the defaults (and over ``grid``), per experiment:
        ``{"binary": {"threshold": ("zero", "mean")}, "q2": {"n_levels": (4, 16)}}``.
    device : {"cpu", "cuda"}
        Where stressors and the solver run; with "cuda" the features are moved to the
        GPU once (needs CuPy and a CUDA device).
    normalize : {"after", "both"}
        "after": stress, then L2-normalise (the paper).  "both": also normalise before
        the stress (the authors' 2016 extraction code).
    progress : bool
        Show a progress bar on standard error (only when it is a terminal).
    C : float
        SVM loss weight (the paper's LIBLINEAR default, C = 1).
    ap_method : {"voc07", "area"}
        Average precision of multi-label data: VOC 2007 11-point or area under PR.
    solver : {"ours", "cuml"}
        The SVM solver (:func:`dnnstress.classify.fit_linear_svms`): ours (on the CPU
        dual coordinate descent then Newton-CG, on the GPU batched Newton-CG), or
        cuML's LinearSVC for comparison (needs cuML).
    batch : int or "auto"
        Configurations trained together in one solver call, zero-padded to the widest
        (rows do not depend on it, to solver tolerance).  "auto": 8 on "cuda", where one
        call over B configurations saves launches and syncs, 1 on "cpu", where BLAS is
        busy with one already and padding would only add work.
    scores : str or tuple of str or Scores
        What every configuration is scored by (:mod:`dnnstress.sweep.scores`): any of
        ``svm, knn, retrieval``, the first being the row's ``score``, the others extra
        columns; a :class:`~dnnstress.sweep.scores.Scores` sets their k.  A sweep
        without ``svm`` trains no SVM.
    scheduler : str, optional
        Run the units on the Dask cluster of this scheduler address
        (:mod:`dnnstress.distributed`; needs the ``[distributed]`` extra).
    workers : int, optional
        Run the units on a new local Dask cluster of this many worker processes.

    Returns
    -------
    Path
        ``out_dir/results.csv``.
    """
    sweep = Sweep(features, out_dir, experiments=experiments, grid=grid, device=device,
                  normalize=normalize, progress=progress, C=C, ap_method=ap_method,
                  solver=solver, batch=batch, params=params, scores=scores,
                  scheduler=scheduler,
                  workers=workers)
    return sweep.run().results_path


class Sweep:
    """One sweep run; :func:`run_sweep` in object form, for callers that want counts.

    Parameters are those of :func:`run_sweep`, and ``executor`` (where rows are
    computed; :func:`run_locally` by default, see the module docstring; ``scheduler``
    or ``workers`` make it a :class:`dnnstress.distributed.DaskExecutor`).  After
    :meth:`run`, ``written`` and
    ``skipped`` count the rows computed now and those already present, ``seconds`` is
    the wall time of the run.
    """

    def __init__(self, features, out_dir, *, experiments=EXPERIMENTS, grid=None,
                 device="cpu", normalize="after", progress=True, C=1.0,
                 ap_method="voc07", solver="ours", batch="auto", params=None,
                 scores=("svm",), executor=None, scheduler=None, workers=None):
        grid = Grid() if grid is None else grid
        # Before anything is written: a missing cuML is a clear error.
        self.solver, self.batch = check_solver(solver), _batch_size(batch, device)
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
        if ap_method not in AP_METHODS:
            raise ValueError(f"ap_method must be one of {AP_METHODS}, got {ap_method!r}")
        if not isinstance(grid, Grid):
            raise TypeError(f"grid must be a dnnstress.sweep.Grid, got {type(grid).__name__}")
        # Before anything is read or written: a broken GPU must not leave a half-made
        # folder, and CUDA's own message must reach the user.
        check_device(device)
        self.features_file = None
        if not isinstance(features, FeatureSet):
            self.features_file = str(Path(features).resolve())
            features = FeatureSet.load(features)
        self.features = features
        self.scores = Scores.of(scores)
        self.scores.check(features.train_x.shape[0], features.is_multilabel)
        self.score_columns = self.scores.columns(svm_metric(features.is_multilabel,
                                                            ap_method))
        # Unknown names, a missing faiss or bad params: refused before anything is written.
        self._experiments = resolve(experiments)
        self.experiments = tuple(e.name for e in self._experiments)
        self.params = params
        self._grids = param_grids(self._experiments, grid, params)
        self.executor = _executor(executor, scheduler, workers)
        self.grid, self.device, self.normalize = grid, device, normalize
        self.progress, self.C, self.ap_method = progress, C, ap_method
        self.store = ResultsStore(out_dir, self._identity(), n_features=features.n_features,
                                  extra_columns=self.score_columns,
                                  identity_defaults={"scores": Scores().as_dict()})
        self.results_path = self.store.results_path
        self.written = self.skipped = 0
        self.seconds = 0.0

    def _identity(self) -> dict:
        """What every row depends on; a resumed sweep must match it exactly."""
        return {"features_sha256": fingerprint(self.features),
                "normalize": self.normalize,
                # Rows of another solver agree only to its tolerance: never mixed.  The
                # default keeps the name older sweep.json files recorded.
                "classifier": {"name": _SOLVER_NAMES[self.solver], "loss": "squared_hinge",
                               "C": self.C},
                "ap_method": self.ap_method,
                "base_seed": self.grid.base_seed,
                "scores": self.scores.as_dict()}

    def _run_info(self) -> dict:
        fs = self.features
        return {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "dnnstress_version": __version__, "features_file": self.features_file,
                "features_metadata": fs.metadata, "n_train": int(fs.train_x.shape[0]),
                "n_test": int(fs.test_x.shape[0]), "n_features": fs.n_features,
                "multilabel": fs.is_multilabel, "experiments": list(self.experiments),
                "grid": self.grid.as_dict(), "params": self._resolved_grids(),
                "device": self.device,
                "normalize": self.normalize,
                "score_columns": ["score", *self.score_columns]}

    def _resolved_grids(self) -> dict:
        """Each experiment's parameter values on these features, as JSON lists (a list of
        grids where the sweep unites several)."""
        n = self.features.n_features
        resolved = {name: [{param: list(v.values(n) if isinstance(v, PerWidth) else v)
                            for param, v in grid.items()} for grid in grids]
                    for name, grids in self._grids.items()}
        return {name: grids[0] if len(grids) == 1 else grids
                for name, grids in resolved.items()}

    def run(self) -> Sweep:
        """Compute every pending row, appending each to ``results.csv``; returns self.

        Raises ``RuntimeError`` when another sweep is writing to the same folder.
        """
        with self.store:  # the folder's lock, released however the run ends
            return self._run_locked()

    def _run_locked(self) -> Sweep:
        start = time.perf_counter()
        existing = self.store.open()
        done = {row_key(row) for row in existing}
        fs = self.features
        units = plan(self._experiments, self.grid, fs.n_features, fs.train_x.shape[0],
                     params=self.params)
        pending = {spec.key for unit in units for spec in unit.specs} - done
        total = sum(len(unit.specs) for unit in units)
        self.skipped = total - len(pending)
        if pending:
            # Recorded only when rows are computed: a rerun that finds everything done
            # leaves sweep.json as it was.
            self.store.start_run(self._run_info())
            pipeline = _Pipeline(fs, self.device, self.normalize, self.C, self.ap_method,
                                 self.solver, self.scores)
            baseline = _baseline_score(existing)
            # The baseline fit anchors every warm start: computed first, here (again
            # when resuming), before the executor runs the other units.
            anchor = unit_rows(units[0], pipeline, {units[0].specs[0].key}, 1)
            rows = itertools.chain(anchor, self.executor(units[1:], pipeline, pending,
                                                         self.batch))
            with _progress_bar(total, self.skipped, self.progress) as bar:
                for row in rows:
                    if row["experiment"] == "baseline":
                        baseline = row["score"]
                    if row_key(row) not in pending:
                        continue
                    row["relative_score"] = row["score"] / baseline if baseline else None
                    self.store.append(row)
                    self.written += 1
                    bar.update(1)
        self.seconds = time.perf_counter() - start
        return self


def _executor(executor, scheduler, workers):
    """The executor asked for: given, on a Dask cluster, or :func:`run_locally`."""
    if scheduler is None and workers is None:
        return run_locally if executor is None else executor
    if executor is not None:
        raise ValueError("give an executor or scheduler/workers, not both")
    from dnnstress.distributed import DaskExecutor  # optional extra: imported on use

    return DaskExecutor(scheduler, workers)


def _batch_size(batch, device):
    """Configurations per solver call: ``batch``, or the device's choice for "auto"."""
    if batch == "auto":
        return 8 if device == "cuda" else 1
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer or 'auto', got {batch!r}")
    return batch


def unit_rows(unit, pipeline, pending, batch):
    """Result rows (without ``relative_score``) of the pending configurations of one
    unit, in order, trained ``batch`` at a time: the work an executor hands out."""
    return run_locally([unit], pipeline, pending, batch)


def run_locally(units, pipeline, pending, batch):
    """The default executor: result rows (without ``relative_score``) of the pending
    configurations of ``units``, in order, in this process.

    Configurations are trained ``batch`` at a time, across units; the baseline alone,
    since its solution warm-starts all the others.  ``wall_time_s`` of a row covers its
    stress and its share of the batch's solve and scoring; a unit's shared fit counts
    towards its first row.
    """
    waiting = []
    for unit in units:
        tick = time.perf_counter()
        for stressed in unit.stress(pipeline.train_x, pipeline.test_x, pending):
            waiting.append((stressed, time.perf_counter() - tick))
            if pipeline.anchor is None or len(waiting) == batch:
                yield from _trained_rows(waiting, pipeline)
                waiting = []
            tick = time.perf_counter()
    yield from _trained_rows(waiting, pipeline)


def _trained_rows(waiting, pipeline):
    """The rows of ``waiting`` (stressed configuration, its stress seconds) pairs."""
    if not waiting:
        return
    start = time.perf_counter()
    scores = pipeline.train_and_score([stressed for stressed, _ in waiting])
    share = (time.perf_counter() - start) / len(waiting)
    for (stressed, seconds), columns in zip(waiting, scores):
        yield {**_config_columns(stressed, pipeline.n_features), **columns,
               "wall_time_s": seconds + share}


def _config_columns(stressed, n: int) -> dict:
    """The configuration's columns of a row: its typed parameters, its storage (fixed
    bits, codes' entropy, packed bytes), and all its parameters (``params``).  A
    configuration without a kept_dims parameter keeps the width of its output (the
    features' own for a quantizer)."""
    params, bits = stressed.spec.params, stressed.bits_per_vector
    kept = params.get("kept_dims", min(stressed.train_x.shape[1], n))
    return {"experiment": stressed.spec.experiment, "kept_dims": kept,
            **{name: params.get(name) for name in TYPED_PARAMS if name != "kept_dims"},
            "n_features": n, "kept_fraction": kept / n, "bits_per_vector": bits,
            "compression_rate": compression_rate(n, bits), PARAMS_COLUMN: params,
            "entropy_bits_per_vector": stressed.entropy_bits_per_vector,
            "packed_bytes_per_vector": stressed.packed_bytes_per_vector}


class _Pipeline:
    """The features on the sweep's device, and the normalise-train-score steps."""

    def __init__(self, features: FeatureSet, device: str, normalize: str, C: float,
                 ap_method: str, solver: str = "ours", scores: Scores = Scores()):
        xp = _namespace(device)
        self.xp = xp
        # float16 features (a common storage format) overflow float16 arithmetic in
        # stressors and solver alike: the whole pipeline runs in float32 for them.
        self.train_x, self.test_x = (at_least_float32(xp.asarray(x))
                                     for x in (features.train_x, features.test_x))
        if normalize == "both":
            self.train_x, self.test_x = l2_normalize(self.train_x), l2_normalize(self.test_x)
        self.targets, self.classes, _ = one_vs_rest_targets(
            features.train_y, features.train_x.shape[0], xp)
        self.test_y = features.test_y
        self.n_features = features.n_features
        self.C, self.ap_method, self.solver = C, ap_method, solver
        self.scores = scores
        self.svm_metric = svm_metric(features.is_multilabel, ap_method)
        self.neighbours = None
        if scores.depth():  # the unstressed neighbours: searched once for the sweep
            self.neighbours = NeighbourScorer(scores).fit(
                l2_normalize(self.train_x), l2_normalize(self.test_x), features.train_y,
                features.test_y)
        self.anchor = None

    def train_and_score(self, batch):
        """The score columns (:meth:`Scores.row_columns`) of each stressed
        configuration of ``batch``: the SVM's value, if chosen, from one solver call
        over the batch; the k-NN and retrieval values from one search each."""
        train = [l2_normalize(stressed.train_x) for stressed in batch]
        test = [l2_normalize(stressed.test_x) for stressed in batch]
        svm = (self._svm_scores(batch, train, test) if "svm" in self.scores.names
               else [None] * len(batch))
        rows = []
        for values, train_x, test_x in zip(svm, train, test):
            values = {} if values is None else {self.svm_metric: values}
            if self.neighbours is not None:
                values.update(self.neighbours.score(train_x, test_x))
            rows.append(self.scores.row_columns(values, self.svm_metric))
        return rows

    def _svm_scores(self, batch, train, test):
        """The SVM score of each configuration of ``batch``, trained in one solver
        call, zero-padded to the widest.  The baseline's fit becomes the anchor that
        warm-starts every other configuration (dnnstress.sweep.plan)."""
        warm_start = None
        if self.anchor is not None:
            coef, intercept = self.anchor
            # A configuration without a map into its space starts cold (from zero).
            cold = self.xp.zeros_like(intercept)
            warm_start = (_stack_padded([s.warm_start(coef) if s.warm_start else
                                         self.xp.zeros((coef.shape[0], t.shape[1]),
                                                       dtype=coef.dtype)
                                         for s, t in zip(batch, train)], self.xp),
                          self.xp.stack([intercept if s.warm_start else cold
                                         for s in batch]))
        coefs, intercepts, _ = fit_linear_svms(
            _stack_padded(train, self.xp), self.targets, C=self.C, warm_start=warm_start,
            solver=self.solver)
        results = []
        for k, stressed in enumerate(batch):
            coef, intercept = coefs[k, :, :train[k].shape[1]], intercepts[k]
            if stressed.spec.experiment == "baseline":
                self.anchor = coef, intercept
            decision = test[k] @ coef.T + intercept
            score, _ = score_predictions(decision, self.test_y, self.classes,
                                         method=self.ap_method)
            results.append(float(score))
        return results


def _stack_padded(arrays, xp):
    """The 2-D ``arrays`` stacked to (B, rows, widest), zero-padded on the right; the
    one array of a batch of one as a view (no copy)."""
    if len(arrays) == 1:
        return arrays[0][None]
    width = max(a.shape[1] for a in arrays)
    out = xp.zeros((len(arrays), arrays[0].shape[0], width),
                   dtype=xp.result_type(*arrays))
    for k, a in enumerate(arrays):
        out[k, :, :a.shape[1]] = a
    return out


def fingerprint(features: FeatureSet) -> str:
    """SHA-256 of the arrays (dtype, shape, bytes) of a feature set: two sets with the
    same fingerprint give the same sweep rows."""
    digest = hashlib.sha256()
    for name in ("train_x", "train_y", "test_x", "test_y"):
        array = np.ascontiguousarray(getattr(features, name))
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _baseline_score(rows) -> float | None:
    for row in rows:
        if row["experiment"] == "baseline":
            return float(row["score"])
    return None


def _namespace(device: str):
    if device == "cpu":
        return np
    import cupy  # checked by check_device when the sweep was made
    return cupy


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm
    # disable=None: tqdm turns itself off when standard error is not a terminal.
    return tqdm(total=total, initial=initial, unit="row", file=sys.stderr,
                disable=None if enabled else True, dynamic_ncols=True, smoothing=0.1)
