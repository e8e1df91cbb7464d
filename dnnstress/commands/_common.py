"""The options every subcommand spells the same way, and where its output goes.

- ``--out DIR`` is always a folder (created if missing; a file there is an error): a
  command writes several files (results, metadata, tables, figures), and a features
  file keeps the fixed name ``features.npz`` inside it.
- ``--seed N``: every random choice of the command (subsets, DR-1 draws, synthetic data).
- ``--threads N``: the CPU threads of BLAS (threadpoolctl) and numba, and of onnxruntime
  where a network runs.
- ``--quiet``: no progress bars and no summaries; errors, warnings and the JSON asked
  for remain.
- ``--json FILE``: the result as JSON (starting with :func:`dnnstress.runinfo.run_info`);
  ``--json -`` writes only JSON to standard output, the human text goes to standard error.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

from dnnstress._files import write_atomically
from dnnstress.runinfo import run_info


def add_out_argument(parser, *, what: str, default: str | None = None) -> None:
    """``--out DIR``: the folder ``what`` goes to (required unless ``default``)."""
    where = f" (default ./{default})" if default else ""
    parser.add_argument("--out", metavar="DIR", default=default, required=default is None,
                        help=f"folder for {what}{where}; created if missing, rerunning "
                             f"into it resumes")


def output_folder(path, option: str = "--out", create: bool = True) -> Path:
    """``path`` as a folder (made if ``create``), or a one-line ValueError if a file is
    where it or one of its parents should be."""
    folder = Path(path).expanduser()
    for place in (folder, *folder.parents):
        if place.exists():
            if not place.is_dir():
                raise ValueError(f"{option} {path}: {place} is a file, not a folder "
                                 f"({option} always names a folder)")
            break
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def add_seed_argument(parser, *, default: int = 0, what: str) -> None:
    parser.add_argument("--seed", type=int, default=default,
                        help=f"seed of {what} (default {default})")


def add_threads_argument(parser, *, onnxruntime: bool = False) -> None:
    """``--threads N``, applied by ``dnnstress.cli.main`` to BLAS and numba; a command
    that runs a network also passes it to onnxruntime (``onnxruntime=True`` says so)."""
    libraries = "BLAS, numba and onnxruntime" if onnxruntime else "BLAS and numba"
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                        help=f"CPU threads for {libraries} (default: all cores)")


def add_quiet_argument(parser) -> None:
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars and no summaries (errors still print)")
    # Progress bars only, as before --quiet existed: kept so that existing scripts run.
    parser.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)


def show_progress(args) -> bool:
    """Whether progress bars are wanted (they also need a terminal to appear)."""
    return not (args.quiet or args.no_progress)


def add_json_argument(parser, *, what: str) -> None:
    parser.add_argument("--json", metavar="FILE", type=_json_target,
                        help=f"also write {what} as JSON to FILE, with the dnnstress "
                             f"version, date, machine and parameters; '-' writes only JSON "
                             f"to standard output (the human text goes to standard error)")


def _json_target(text: str) -> str:
    """``--json``'s FILE, checked before the command runs (not after a long sweep)."""
    if text != "-":
        path = Path(text).expanduser()
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder; name a file")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: the folder {path.parent} does not exist")
    return text


@contextlib.contextmanager
def human_output(args):
    """Send what the command prints for people to stdout, stderr (``--json -``) or nowhere
    (``--quiet``), so that standard output holds only JSON when JSON was asked there."""
    if getattr(args, "quiet", False):
        target = io.StringIO()
    elif getattr(args, "json", None) == "-":
        target = sys.stderr
    else:
        yield
        return
    with contextlib.redirect_stdout(target):
        yield


def write_json(args, command: str, params: dict, result: dict) -> None:
    """``run_info(command, params)`` merged with ``result``, to ``args.json`` if given."""
    if not args.json:
        return
    text = json.dumps({**run_info(command, params), **result}, indent=2) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomically(args.json, lambda tmp: tmp.write_text(text))


def params_of(args, *, leave_out=()) -> dict:
    """The command line's options as ``run_info`` parameters (no internals, no callables)."""
    internal = {"func", "command", "topic", "action", "bench_module", "json", *leave_out}
    return {key: value for key, value in vars(args).items()
            if key not in internal and not callable(value)}


@contextlib.contextmanager
def thread_limits(threads: int | None):
    """Limit BLAS (threadpoolctl) and numba to ``threads`` CPU threads inside the block."""
    if threads is None:
        yield
        return
    import numba
    from threadpoolctl import threadpool_limits

    available = numba.config.NUMBA_NUM_THREADS
    if threads > available:
        raise ValueError(f"--threads {threads}: numba has only {available} threads here "
                         f"(NUMBA_NUM_THREADS)")
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        numba.set_num_threads(previous)


def add_cluster_arguments(parser) -> None:
    """``--scheduler ADDRESS | --workers N``: run the units on a Dask cluster."""
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="run on the dask.distributed cluster of this scheduler "
                              '(tcp://host:8786; needs pip install "dnnstress[distributed]")')
    cluster.add_argument("--workers", type=_positive_int, metavar="N",
                         help="run on a local Dask cluster of N worker processes")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value
