"""A campaign of 4 small sweeps on 2 local Dask workers against one process, same run.

Four synthetic single-label features files (1,000 train / 500 test vectors of 256 dims,
10 classes by default; ``--scale`` shrinks them) are swept over DR-1, DR-2, Q-1, Q-2 and
Q-B on a small grid by :func:`dnnstress.campaign.run_campaign`: once in this process
(BLAS on every core), once on a ``LocalCluster`` of 2 worker processes and once on a
cluster of 1 worker (each with cores / workers BLAS threads), the clusters started
and warmed up by one untimed run of the campaign (imports, numba JIT in every worker)
before the clock runs (their start-up is reported on its own).  Goal on 2 cores: the 2-
worker campaign takes at most 0.6 of the single-process time.  The scheduling overhead
per unit is the 1-worker campaign's wall time less the time its rows record
(``wall_time_s``: stress, solve, score), divided by the units run on the cluster:
scattering the features, sending units, returning rows, and the campaign's own reading
and writing (shown for the single process too, as the part that is not scheduling).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from dnnstress.benchmarks._common import print_table
from dnnstress.features import FeatureSet
from dnnstress.sweep import Grid
from dnnstress.sweep.experiments import resolve
from dnnstress.sweep.plan import plan

EXPERIMENTS = ["dr1", "dr2", "q1", "q2", "qb"]
GRID = {"levels": [2, 4, 8, 16], "dr_steps": [2, 5, 10, 20], "erased_bits": [30, 50, 55],
        "repeats": 3}
SWEEPS = 4


def add_arguments(parser) -> None:
    parser.add_argument("--scale", type=float, default=1.0,
                        help="shrink samples and dimensions by this factor (default 1)")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> dict:
    from dnnstress.campaign import Campaign
    from dnnstress.distributed import DaskExecutor, check_distributed

    check_distributed()
    if not 0 < args.scale <= 1:
        raise ValueError(f"--scale must be in (0, 1], got {args.scale}")
    sizes = {"n_train": max(int(1000 * args.scale), 40), "n_test": max(int(500 * args.scale), 20),
             "d": max(int(256 * args.scale), 16)}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        files = [_features(**sizes, seed=args.seed + k).save(folder / f"f{k}.npz")
                 for k in range(SWEEPS)]
        campaign = Campaign.load({"name": "bench", "features": [{"file": str(f)} for f in files],
                                  "experiments": [{"name": "grid", "experiments": EXPERIMENTS,
                                                   "grid": GRID}]})
        units = SWEEPS * (len(plan(resolve(EXPERIMENTS), Grid(**_tuples(GRID)), sizes["d"],
                                   sizes["n_train"])) - 1)  # the baseline runs locally
        print(f"{SWEEPS} sweeps of {sizes['n_train']} train / {sizes['n_test']} test, "
              f"{sizes['d']}-d features, {units} units on the cluster")
        _timed(campaign, folder / "warm-up")  # imports, JIT
        single = _timed(campaign, folder / "single")
        idle = {"single": (single - _row_seconds(folder / "single")) / units}
        rows = [{"run": "1 process", "wall s": single, "vs 1 process": 1.0}]
        result = {"sizes": sizes, "units": units, "single_s": single}
        for workers in (2, 1):
            start = time.perf_counter()
            with DaskExecutor(workers=workers) as cluster:
                started = time.perf_counter() - start
                address = cluster.client.scheduler.address
                # Each worker imports and JIT-compiles the kernels on its first units.
                _timed(campaign, folder / f"warm-up{workers}", scheduler=address)
                wall = _timed(campaign, folder / f"dask{workers}", scheduler=address)
            idle[workers] = (wall - _row_seconds(folder / f"dask{workers}")) / units
            rows.append({"run": f"{workers} worker(s)", "wall s": wall,
                         "vs 1 process": wall / single, "cluster start s": started})
            result[f"workers_{workers}"] = {"wall_s": wall, "ratio": wall / single,
                                            "cluster_start_s": started}
    print_table(rows, ["run", "wall s", "vs 1 process", "cluster start s"])
    overhead = idle[1]
    result["overhead_per_unit_ms"] = 1000 * overhead
    result["not_computing_per_unit_ms_single"] = 1000 * idle["single"]
    print(f"2 workers: {result['workers_2']['ratio']:.2f} of the single-process time "
          f"(goal <= 0.6); time outside the rows' work per unit: {1000 * overhead:.1f} ms "
          f"on 1 worker, {1000 * idle['single']:.1f} ms in one process")
    return result


def _timed(campaign, out, **options) -> float:
    start = time.perf_counter()
    campaign.run(out, progress=False, **options)
    return time.perf_counter() - start


def _row_seconds(out: Path) -> float:
    """The work the rows of every sweep under ``out`` record (``wall_time_s``)."""
    from dnnstress.sweep import read_results

    return sum(row["wall_time_s"] for results in out.glob("*/results.csv")
               for row in read_results(results))


def _features(n_train, n_test, d, seed, n_classes=10):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d))

    def split(n):
        y = np.arange(n) % n_classes
        return np.maximum(centres[y] + rng.normal(size=(n, d)), 0).astype(np.float32), y
    return FeatureSet(*split(n_train), *split(n_test))


def _tuples(grid: dict) -> dict:
    return {key: tuple(value) if isinstance(value, list) else value
            for key, value in grid.items()}
