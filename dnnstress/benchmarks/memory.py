"""Peak memory of a sweep and of DR-2's PCA fit, as a multiple of the data they hold.

Each case runs in a fresh Python process that first loads everything it imports, then
reads its data from a ``.npy``/``.npz`` file written beforehand (so data generation
leaves no high-water mark behind); the figure is that process's peak resident set size
above its size before the data was read, divided by the data's size.  Cases:

* ``sweep``: ``run_sweep`` on Fashion-MNIST-sized float32 features (60,000 train and
  10,000 test vectors of 4,096 dims by default, 10 classes), baseline plus one Q-2 and
  one DR-1 configuration: how many copies of the training matrix a sweep holds
  (goal <= 4).
* ``pca``: DR-2's PCA fit as a sweep makes it, on 5,011 x 50,176 float32 (VOC 2007
  images at GoogLeNet's layer size): ``PCADrop(k).fit`` with k the largest count of
  DR-2's default grid there (2,508; the sweep fits the directions its configurations
  keep), the features plus the float64 basis it returns (goal < 4 GB in all).

``--rows``, ``--dims`` and ``--scale`` shrink the problems (the test suite runs both
cases at a few MB).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from dnnstress.benchmarks._common import print_table

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from dnnstress.features import FeatureSet
from dnnstress.stress import PCADrop
from dnnstress.sweep import Grid, run_sweep

def rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()

case, path, out, n_components = sys.argv[1:5]
before = rss_bytes()
start = time.perf_counter()
if case == "sweep":
    data = FeatureSet.load(path)
    data_bytes = data.train_x.nbytes + data.test_x.nbytes
    del data
    run_sweep(path, out, experiments="baseline,q2,dr1", progress=False,
              grid=Grid(levels=(8,), dr_steps=(10,), repeats=1))
else:
    X = np.load(path)
    data_bytes = X.nbytes
    PCADrop(int(n_components)).fit(X)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
print(json.dumps({"data_bytes": data_bytes, "peak_bytes": peak - before, "seconds": seconds}))
"""


def add_arguments(parser) -> None:
    parser.add_argument("--case", choices=("sweep", "pca", "all"), default="all")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="shrink both problems' sample counts by this factor (default 1)")
    parser.add_argument("--dims", type=int, default=None,
                        help="feature dimensions of the sweep case (default 4096)")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> dict:
    if not 0 < args.scale <= 1:
        raise ValueError(f"--scale must be in (0, 1], got {args.scale}")
    cases = ("sweep", "pca") if args.case == "all" else (args.case,)
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            path, shape, n_components = _write_problem(case, Path(tmp), args, rng)
            rows.append({"case": case, "shape": shape,
                         **_measure(case, path, Path(tmp) / f"{case}-out", n_components)})
    print_table(rows, ["case", "shape", "data MB", "peak MB", "x data", "s"])
    return {"cases": rows}


def _write_problem(case: str, folder: Path, args, rng) -> tuple[Path, str, int]:
    """The case's data file, its description, and the PCA case's component count."""
    if case == "sweep":
        from dnnstress.features import FeatureSet

        d = args.dims or 4096
        n_train, n_test = (max(50, round(args.scale * n)) for n in (60000, 10000))
        features = FeatureSet(_relu_features(rng, n_train, d), rng.integers(0, 10, n_train),
                              _relu_features(rng, n_test, d), rng.integers(0, 10, n_test))
        path = folder / "features.npz"
        features.save(path)
        return path, f"train {n_train}x{d}, test {n_test}x{d} float32", 0
    n, d = max(20, round(args.scale * 5011)), max(40, round(args.scale * 50176))
    path = folder / "pca.npy"
    np.save(path, _relu_features(rng, n, d))
    k = _dr2_fit_size(n, d)
    return path, f"{n}x{d} float32, PCADrop({k})", k


def _dr2_fit_size(n: int, d: int) -> int:
    """The directions a sweep's shared PCA computes for DR-2's default grid on ``n`` x
    ``d`` training features: its largest feasible count."""
    from dnnstress.sweep.plan import plan

    with warnings.catch_warnings():  # the counts beyond the directions, left out
        warnings.simplefilter("ignore", UserWarning)
        units = plan(["dr2"], None, d, n)
    return max(spec.params["kept_dims"] for unit in units if unit.shared is not None
               for spec in unit.specs)


def _relu_features(rng, n: int, d: int) -> np.ndarray:
    """Non-negative float32 features, 60 % zeros, written in blocks to bound memory."""
    X = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 4096):
        block = rng.standard_normal((min(4096, n - start), d), dtype=np.float32) - 0.25
        X[start:start + block.shape[0]] = np.maximum(block, 0)
    return X


def _measure(case: str, path: Path, out: Path, n_components: int) -> dict:
    result = subprocess.run([sys.executable, "-c", _CHILD, case, str(path), str(out),
                             str(n_components)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the {case} memory case failed: {result.stderr.strip()[-2000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    return {"data MB": measured["data_bytes"] / 1e6, "peak MB": measured["peak_bytes"] / 1e6,
            "x data": measured["peak_bytes"] / measured["data_bytes"],
            "s": measured["seconds"]}

