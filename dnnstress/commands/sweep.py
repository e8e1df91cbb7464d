"""``dnnstress sweep FEATURES.npz --out DIR``: run the stress experiments on a features file."""

from __future__ import annotations

import argparse

from dnnstress.sweep import EXPERIMENTS, Grid, parse_experiments, parse_int_list
from dnnstress.sweep.runner import AP_METHODS, DEVICES, NORMALIZE, Sweep


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "sweep", help="stress a features file and score a linear SVM on every configuration",
        description="Run the paper's stress experiments (DR-1, DR-2, Q-1, Q-2, FC, Q-B) on a "
                    "features file. Each result row is appended to DIR/results.csv as soon "
                    "as it is known; rerunning with the same --out resumes an interrupted "
                    "sweep. Integer lists accept values and ranges, e.g. 2-8,16.")
    parser.add_argument("features", metavar="FEATURES.npz", help="features file")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for results.csv and sweep.json")
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS), type=experiments_argument,
                        help="comma-separated subset of %(default)s (the baseline always runs)")
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--normalize", choices=NORMALIZE, default="after",
                        help="'after': stress then L2-normalise (the paper); 'both': "
                             "normalise before the stress too (the authors' 2016 code)")
    defaults = Grid()
    parser.add_argument("--levels", type=_int_list, metavar="LIST",
                        help="quantization levels h of Q-1, Q-2 and FC (default 1-30; "
                             "FC 2-30)")
    parser.add_argument("--fc-levels", type=_int_list, metavar="LIST",
                        help="levels h of FC only (overrides --levels for FC)")
    parser.add_argument("--dr-steps", type=_int_list, metavar="LIST",
                        help="DR steps i in 1-20 (step i keeps floor(n * 0.05 i) dims; "
                             "default all)")
    parser.add_argument("--fc-steps", type=_int_list, metavar="LIST",
                        help="FC steps j in 1-9 (floor(n * j / 10) dims; default all)")
    parser.add_argument("--erased-bits", type=_int_list, metavar="LIST",
                        help="Q-B erased bits (default 0,5,...,50,51-64)")
    parser.add_argument("--repeats", type=int, default=defaults.repeats,
                        help="DR-1 repetitions (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.base_seed,
                        help="seed of DR-1's first repeat; repeat r uses seed + r "
                             "(default %(default)s)")
    parser.add_argument("--ap-method", choices=AP_METHODS, default="voc07",
                        help="average precision of multi-label data: VOC 2007 11-point "
                             "interpolated or area under the PR curve (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return parse_int_list(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def experiments_argument(text: str) -> tuple[str, ...]:
    """argparse type of ``--experiments``: a checked comma-separated list."""
    try:
        return parse_experiments(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def grid_from_args(args: argparse.Namespace) -> Grid:
    """The Grid the command line asks for (unset options keep the paper's values)."""
    defaults = Grid()
    levels = args.levels or defaults.levels
    fc_levels = args.fc_levels or (args.levels or defaults.fc_levels)
    return Grid(levels=levels, fc_levels=fc_levels,
                dr_steps=args.dr_steps or defaults.dr_steps,
                fc_steps=args.fc_steps or defaults.fc_steps,
                erased_bits=args.erased_bits or defaults.erased_bits,
                repeats=args.repeats, base_seed=args.seed)


def run(args) -> int:
    sweep = Sweep(args.features, args.out, experiments=args.experiments,
                  grid=grid_from_args(args), device=args.device, normalize=args.normalize,
                  progress=not args.no_progress, ap_method=args.ap_method).run()
    print(f"{sweep.written} row(s) written, {sweep.skipped} already present, "
          f"{sweep.seconds:.1f} s -> {sweep.results_path}")
    return 0
