"""Run a sweep's plan units on a Dask cluster (``dask.distributed``, the optional
``[distributed]`` extra).

:class:`DaskExecutor` is an executor of :mod:`dnnstress.sweep.runner`: called with the
units, the pipeline, the pending keys and the batch size, it yields result rows.  The
pipeline (features on the sweep's device, and the baseline's fit, which the runner
computes first) is one task whose result every unit's task depends on: a worker
fetches it once, and, unlike scattered data, the scheduler can compute it again if a
worker holding it dies (a scattered copy lost with its worker cancelled the units that
needed it, seen once in CI); each unit with
pending configurations is one task, :func:`dnnstress.sweep.runner.unit_rows` on a
worker; the rows of each finished unit come back to this process as it finishes
(``as_completed``), where the runner alone appends them to ``results.csv``: one writer,
and a unit's rows arrive once.  A worker that dies has its unit run again on another
(the scheduler's own retry, up to ``distributed.scheduler.allowed-failures`` times).

``scheduler`` connects to a running cluster (``tcp://host:8786``); ``workers=N`` starts a
``LocalCluster`` of N processes with one task thread each, and BLAS, OpenMP and numba
limited to ``cores // N`` threads per worker so that N workers do not oversubscribe the
cores.  Workers of a cluster of your own are configured where they are started.
"""

from __future__ import annotations

import contextlib
import os

INSTALL = 'pip install "dnnstress[distributed]"'
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "NUMBA_NUM_THREADS")


def check_distributed():
    """The ``distributed`` module, or a one-line RuntimeError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise RuntimeError(f"--scheduler and --workers need dask.distributed, which is not "
                           f"installed: {INSTALL}") from None
    return distributed


class DaskExecutor:
    """Runs plan units as Dask tasks; a sweep executor (module docstring).

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler.
    workers : int, optional
        Start a ``LocalCluster`` of this many worker processes instead.

    Exactly one of the two is given.  Each call connects for its own duration unless the
    executor is used as a context manager, which keeps one connection (and one local
    cluster) for every sweep run inside it, as a campaign does.
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None):
        if (scheduler is None) == (workers is None):
            raise ValueError("give a scheduler address or a number of workers, not "
                             f"{'both' if scheduler is not None else 'neither'}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 1):
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        if scheduler is not None and not (isinstance(scheduler, str) and scheduler.strip()):
            raise ValueError(f"scheduler must be an address such as tcp://host:8786, got "
                             f"{scheduler!r}")
        check_distributed()  # before any work: a missing dask says how to install it
        self.scheduler, self.workers = scheduler, workers
        self.client = None
        self._stack = None

    def __enter__(self) -> DaskExecutor:
        stack = contextlib.ExitStack()
        self.client = stack.enter_context(_client(self.scheduler, self.workers))
        self._stack = stack
        return self

    def __exit__(self, *exc_info) -> None:
        stack, self._stack, self.client = self._stack, None, None
        stack.close()

    def __call__(self, units, pipeline, pending, batch):
        if self.client is not None:
            yield from _run_units(self.client, units, pipeline, pending, batch)
            return
        with self:
            yield from _run_units(self.client, units, pipeline, pending, batch)


@contextlib.contextmanager
def _client(scheduler, workers):
    distributed = check_distributed()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler)  # distributed.comm.timeouts.connect
        except OSError as error:
            raise RuntimeError(f"cannot reach the Dask scheduler at {scheduler}: "
                               f"{error}") from None
        with client:
            yield client
        return
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True,
        dashboard_address=":0",  # any free port: never "8787 is already in use"
        env=dict.fromkeys(_THREAD_VARIABLES, threads))
    with cluster, distributed.Client(cluster) as client:
        yield client


def _run_units(client, units, pipeline, pending, batch):
    """Rows of every unit with pending configurations, unit by unit as they finish."""
    distributed = check_distributed()
    work = [(unit, pending & {spec.key for spec in unit.specs}) for unit in units]
    work = [(unit, keys) for unit, keys in work if keys]
    if not work:
        return
    shared = client.submit(_same, pipeline, pure=False)
    futures = [client.submit(_unit_rows, unit, shared, keys, batch, pure=False)
               for unit, keys in work]
    try:
        for future in distributed.as_completed(futures):
            yield from future.result()  # a unit's error is raised here, as it would be locally
            future.release()
    finally:
        client.cancel([*futures, shared])


def _same(value):
    """``value`` itself: a task's result, which the scheduler can recompute if lost."""
    return value


def _unit_rows(unit, pipeline, pending, batch) -> list[dict]:
    """One task: the unit's rows, as a list (a generator cannot travel back)."""
    from dnnstress.sweep.runner import unit_rows

    return list(unit_rows(unit, pipeline, pending, batch))
