"""Run a sweep: stress, normalise, train a linear SVM, score, append the row.

Pipeline of every configuration (paper Sec. 3; reference README "Order and classifier"):
fit the stressor on the training features only, transform train and test, L2-normalise
the rows, train a one-vs-rest linear SVM with C = 1 and score the test split (accuracy
for single-label data, mean average precision for multi-label data).
"""

from __future__ import annotations

import hashlib
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dnnstress import __version__
from dnnstress.classify import fit_linear_svms, l2_normalize, one_vs_rest_targets
from dnnstress.devices import DEVICES, check_device
from dnnstress.features import FeatureSet
from dnnstress.metrics import score_predictions
from dnnstress.stress import compression_rate
from dnnstress.sweep.grid import EXPERIMENTS, Grid, parse_experiments
from dnnstress.sweep.plan import plan
from dnnstress.sweep.store import ResultsStore, row_key

NORMALIZE = ("after", "both")
AP_METHODS = ("voc07", "area")


def run_sweep(features, out_dir, *, experiments=EXPERIMENTS, grid: Grid | None = None,
              device: str = "cpu", normalize: str = "after", progress: bool = True,
              C: float = 1.0, ap_method: str = "voc07") -> Path:
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
    experiments : str or iterable of str
        Any of ``baseline, dr1, dr2, q1, q2, fc, qb`` (comma-separated string accepted).
    grid : Grid, optional
        Levels, steps, erased bits, repeats and seeds; the paper's grid by default.
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

    Returns
    -------
    Path
        ``out_dir/results.csv``.
    """
    sweep = Sweep(features, out_dir, experiments=experiments, grid=grid, device=device,
                  normalize=normalize, progress=progress, C=C, ap_method=ap_method)
    return sweep.run().results_path


class Sweep:
    """One sweep run; :func:`run_sweep` in object form, for callers that want counts.

    Parameters are those of :func:`run_sweep`.  After :meth:`run`, ``written`` and
    ``skipped`` count the rows computed now and those already present, ``seconds`` is
    the wall time of the run.
    """

    def __init__(self, features, out_dir, *, experiments=EXPERIMENTS, grid=None,
                 device="cpu", normalize="after", progress=True, C=1.0,
                 ap_method="voc07"):
        grid = Grid() if grid is None else grid
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
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
        self.experiments = ("baseline",) + tuple(
            e for e in parse_experiments(experiments) if e != "baseline")
        self.grid, self.device, self.normalize = grid, device, normalize
        self.progress, self.C, self.ap_method = progress, C, ap_method
        self.store = ResultsStore(out_dir, self._identity(), n_features=features.n_features)
        self.results_path = self.store.results_path
        self.written = self.skipped = 0
        self.seconds = 0.0

    def _identity(self) -> dict:
        """What every row depends on; a resumed sweep must match it exactly."""
        return {"features_sha256": fingerprint(self.features),
                "normalize": self.normalize,
                "classifier": {"name": "LinearSVM", "loss": "squared_hinge", "C": self.C},
                "ap_method": self.ap_method,
                "base_seed": self.grid.base_seed}

    def _run_info(self) -> dict:
        fs = self.features
        return {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "dnnstress_version": __version__, "features_file": self.features_file,
                "features_metadata": fs.metadata, "n_train": int(fs.train_x.shape[0]),
                "n_test": int(fs.test_x.shape[0]), "n_features": fs.n_features,
                "multilabel": fs.is_multilabel, "experiments": list(self.experiments),
                "grid": self.grid.as_dict(), "device": self.device,
                "normalize": self.normalize}

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
        units = plan(self.experiments, self.grid, fs.n_features, fs.train_x.shape[0])
        pending = {spec.key for unit in units for spec in unit.specs} - done
        total = sum(len(unit.specs) for unit in units)
        self.skipped = total - len(pending)
        if pending:
            # Recorded only when rows are computed: a rerun that finds everything done
            # leaves sweep.json as it was.
            self.store.start_run(self._run_info())
            pipeline = _Pipeline(fs, self.device, self.normalize, self.C, self.ap_method)
            baseline = _baseline_score(existing)
            # The baseline fit anchors every warm start; refit it when resuming.
            pending_or_anchor = pending | {units[0].specs[0].key}
            with _progress_bar(total, self.skipped, self.progress) as bar:
                for unit in units:
                    for row in _unit_rows(unit, pipeline, pending_or_anchor):
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


def _unit_rows(unit, pipeline, pending):
    """Result rows (without ``relative_score``) of the pending configurations of a unit.

    ``wall_time_s`` of a row covers its stress, solve and scoring; the unit's shared fit
    counts towards its first row.
    """
    n = pipeline.n_features
    tick = time.perf_counter()
    for stressed in unit.stress(pipeline.train_x, pipeline.test_x, pending):
        spec, bits = stressed.spec, stressed.bits_per_vector
        score, metric = pipeline.train_and_score(stressed)
        now = time.perf_counter()
        yield {"experiment": spec.experiment, "kept_dims": spec.kept_dims,
               "n_levels": spec.n_levels, "erased_bits": spec.erased_bits,
               "repeat": spec.repeat, "seed": spec.seed, "n_features": n,
               "kept_fraction": spec.kept_dims / n, "bits_per_vector": bits,
               "compression_rate": compression_rate(n, bits), "score": score,
               "metric": metric, "wall_time_s": now - tick}
        tick = now


class _Pipeline:
    """The features on the sweep's device, and the normalise-train-score steps."""

    def __init__(self, features: FeatureSet, device: str, normalize: str, C: float,
                 ap_method: str):
        xp = _namespace(device)
        self.train_x, self.test_x = xp.asarray(features.train_x), xp.asarray(features.test_x)
        if normalize == "both":
            self.train_x, self.test_x = l2_normalize(self.train_x), l2_normalize(self.test_x)
        self.targets, self.classes, _ = one_vs_rest_targets(
            features.train_y, features.train_x.shape[0], xp)
        self.test_y = features.test_y
        self.n_features = features.n_features
        self.C, self.ap_method = C, ap_method
        self.anchor = None

    def train_and_score(self, stressed):
        """Score of one stressed configuration; the baseline's fit becomes the anchor
        that warm-starts every other configuration (dnnstress.sweep.plan)."""
        warm_start = None
        if self.anchor is not None:
            coef, intercept = self.anchor
            warm_start = (stressed.warm_start(coef), intercept)
        coef, intercept, _ = fit_linear_svms(
            l2_normalize(stressed.train_x)[None], self.targets, C=self.C,
            warm_start=warm_start)
        coef, intercept = coef[0], intercept[0]
        if stressed.spec.experiment == "baseline":
            self.anchor = coef, intercept
        decision = l2_normalize(stressed.test_x) @ coef.T + intercept
        score, metric = score_predictions(decision, self.test_y, self.classes,
                                          method=self.ap_method)
        return float(score), metric


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
