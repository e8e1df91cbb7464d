"""``dnnstress sweep FEATURES.npz --out DIR``: run the stress experiments on a features file."""

from __future__ import annotations

import argparse
from pathlib import Path

from dnnstress.commands._common import (add_cluster_arguments, add_json_argument,
                                        add_out_argument, add_quiet_argument,
                                        add_seed_argument,
                                        add_threads_argument, human_output, output_folder,
                                        _positive_int, params_of, show_progress,
                                        write_json)
from dnnstress.classify import SOLVERS
from dnnstress.sweep import (EXPERIMENTS, Grid, PerWidth, describe, get_experiment,
                             parse_experiments, parse_int_list, registered_experiments)
from dnnstress.devices import DEVICES
from dnnstress.sweep.runner import AP_METHODS, NORMALIZE, Sweep
from dnnstress.sweep.scores import Scores


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "sweep", help="stress a features file and score a linear SVM on every configuration",
        description="Run stress experiments on a features file: the paper's (DR-1, DR-2, "
                    "Q-1, Q-2, FC, Q-B) by default, or any registered ones "
                    "(--list-experiments). Each result row is appended to DIR/results.csv "
                    "as soon as it is known; rerunning with the same --out resumes an "
                    "interrupted sweep. Integer lists accept values and ranges, e.g. 2-8,16.")
    parser.add_argument("features", metavar="FEATURES.npz", help="features file")
    add_out_argument(parser, what="results.csv and sweep.json")
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS), type=experiments_argument,
                        help="comma-separated registered experiments (default the paper's "
                             "%(default)s; the baseline always runs)")
    parser.add_argument("--param", action="append", default=[], type=param_argument,
                        metavar="EXPERIMENT.NAME=VALUES",
                        help="an experiment's parameter values over its defaults, e.g. "
                             "binary.threshold=zero,mean or rq2.n_levels=2-16 (repeatable)")
    parser.add_argument("--list-experiments", action=_ListExperiments, nargs=0,
                        help="list the registered experiments, their parameters and "
                             "default values, and exit")
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
                        help="DR steps i in 1-20 (default all): step i keeps "
                             "floor(n * s) dims, s being 0.05 added i times in floating "
                             "point as in the authors' code, so 1280 dims keep 511 at "
                             "step 8, not 512")
    parser.add_argument("--fc-steps", type=_int_list, metavar="LIST",
                        help="FC steps j in 1-9 (floor(n * j / 10) dims; default all)")
    parser.add_argument("--erased-bits", type=_int_list, metavar="LIST",
                        help="Q-B erased bits (default 0,5,...,50,51-64)")
    parser.add_argument("--repeats", type=int, default=defaults.repeats,
                        help="DR-1 repetitions (default %(default)s)")
    add_seed_argument(parser, default=defaults.base_seed,
                      what="DR-1's first repeat; repeat r uses seed + r")
    parser.add_argument("--ap-method", choices=AP_METHODS, default="voc07",
                        help="average precision of multi-label data: VOC 2007 11-point "
                             "interpolated or area under the PR curve (default %(default)s)")
    parser.add_argument("--solver", choices=SOLVERS, default="ours",
                        help="SVM solver: ours (on the CPU dual coordinate descent, then "
                             "Newton-CG for what it leaves; batched Newton-CG on the GPU), "
                             "or cuML's LinearSVC (needs cuML; for comparison) (default "
                             "%(default)s)")
    parser.add_argument("--batch", type=_batch_argument, default="auto",
                        help="configurations trained per solver call, or 'auto' (8 on "
                             "cuda, 1 on cpu) (default %(default)s)")
    parser.add_argument("--scores", type=scores_argument, default=("svm",),
                        metavar="LIST",
                        help="comma-separated scores of every configuration, the first "
                             "filling the score column: svm (the paper), knn (k-NN "
                             "accuracy, k = 10), retrieval (recall@1/10/100 against the "
                             "unstressed neighbours, precision@10, map@10) (default svm)")
    add_cluster_arguments(parser)
    add_threads_argument(parser)
    add_quiet_argument(parser)
    add_json_argument(parser, what="a summary of the run (rows written and skipped, "
                                   "seconds, paths)")
    parser.set_defaults(func=run)
    return parser


def _batch_argument(text: str):
    """argparse type of ``--batch``: a positive integer or "auto"."""
    return text if text == "auto" else _positive_int(text)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return parse_int_list(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def scores_argument(text: str) -> tuple[str, ...]:
    """argparse type of ``--scores``: checked score names."""
    try:
        return Scores(text).names
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def experiments_argument(text: str) -> tuple[str, ...]:
    """argparse type of ``--experiments``: a checked comma-separated list."""
    try:
        return parse_experiments(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def param_argument(text: str) -> tuple[str, str, tuple]:
    """argparse type of ``--param``: ``EXPERIMENT.NAME=VALUES`` -> (experiment, name,
    values), the values typed like the parameter's defaults (integers accept ranges)."""
    try:
        target, values = text.split("=", 1)
        experiment, name = target.split(".", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected EXPERIMENT.NAME=VALUES, "
                                         f"e.g. binary.threshold=zero,mean") from None
    try:
        defaults = get_experiment(experiment).params
        if name not in defaults:
            raise ValueError(f"unknown parameter {name!r} of experiment {experiment}; its "
                             f"parameters: {', '.join(defaults) or '(it has none)'}")
        return experiment, name, _typed_values(values, defaults[name])
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _typed_values(text: str, defaults) -> tuple:
    example = 0 if isinstance(defaults, PerWidth) else defaults[0]
    if isinstance(example, bool):
        words = {"true": True, "false": False}
        try:
            return tuple(words[v.strip().lower()] for v in text.split(","))
        except KeyError:
            raise ValueError(f"{text!r}: expected true or false values") from None
    if isinstance(example, int):
        return parse_int_list(text)
    if isinstance(example, float):
        try:
            return tuple(float(v) for v in text.split(","))
        except ValueError:
            raise ValueError(f"{text!r}: expected comma-separated numbers") from None
    return tuple(v.strip() for v in text.split(","))


def params_from_args(args: argparse.Namespace) -> dict:
    """The ``--param`` values as ``run_sweep``'s ``params`` (a later one replaces an
    earlier one of the same parameter)."""
    params = {}
    for experiment, name, values in args.param:
        params.setdefault(experiment, {})[name] = values
    return params


def list_experiments() -> str:
    """The registry as ``--list-experiments`` prints it."""
    return "\n".join(describe(get_experiment(name)) for name in registered_experiments())


class _ListExperiments(argparse.Action):
    """``--list-experiments`` prints the registry and exits, like ``--version``: no
    features file or --out needed."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(list_experiments())
        parser.exit()


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
    output_folder(args.out, create=False)  # Sweep creates it once its input checks pass
    with human_output(args):
        sweep = Sweep(args.features, args.out, experiments=args.experiments,
                      grid=grid_from_args(args), device=args.device,
                      normalize=args.normalize, progress=show_progress(args),
                      ap_method=args.ap_method, solver=args.solver,
                      batch=args.batch, params=params_from_args(args),
                      scores=args.scores, scheduler=args.scheduler, workers=args.workers).run()
        print(f"{sweep.written} row(s) written, {sweep.skipped} already present, "
              f"{sweep.seconds:.1f} s -> {sweep.results_path}")
    write_json(args, "sweep", params_of(args), sweep_summary(sweep))
    return 0


def sweep_summary(sweep: Sweep) -> dict:
    """What a finished sweep did and where its files are, as JSON values."""
    return {"rows_written": sweep.written, "rows_skipped": sweep.skipped,
            "seconds": round(sweep.seconds, 3),
            "experiments": list(sweep.experiments),
            "paths": {"out": str(Path(sweep.results_path).parent),
                      "results": str(sweep.results_path),
                      "metadata": str(sweep.store.metadata_path),
                      "features": sweep.features_file}}
