"""Shared timing helpers for the benchmarks: best-of-N timing, device sync, copy bandwidth."""

from __future__ import annotations

import functools
import time

import numpy as np

from dnnstress._array import array_namespace


def synchronize(xp) -> None:
    """Wait for queued GPU work so that wall time measures the work, not its launch."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def best_time(fn, *, xp=np, repeats: int = 5, min_time: float = 0.2) -> float:
    """Best wall time of ``fn()`` in seconds, over ``repeats`` rounds of at least ``min_time``.

    Best-of-N rejects interference from other processes; each round loops until it lasts
    ``min_time`` so that short calls are not dominated by timer resolution.
    """
    fn()  # warm-up: JIT, kernel compilation, page faults
    synchronize(xp)
    best = float("inf")
    for _ in range(repeats):
        calls = 0
        start = time.perf_counter()
        while True:
            fn()
            calls += 1
            synchronize(xp)
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        best = min(best, elapsed / calls)
    return best


def copy_bandwidth(x, into_existing: bool = True) -> float:
    """Memory-copy bandwidth in GB/s (bytes read + bytes written) for an array like ``x``.

    This is the hardware limit a streaming stressor can approach: it reads its input once
    and writes its output once, exactly like a copy.  ``into_existing`` copies into an
    array allocated beforehand (the limit of a kernel given ``out=``); False copies into
    a new array each time, paying the allocation and the first-touch page faults that
    any function returning a new result pays too.
    """
    xp = array_namespace(x)
    if into_existing:
        out = xp.empty_like(x)
        seconds = best_time(lambda: xp.copyto(out, x), xp=xp)
    elif xp is np:
        # numpy copies on one core; the kernels compared with this touch their fresh
        # output on every core, so the fair ceiling is a parallel copy.
        seconds = best_time(lambda: _parallel_copy(x, np.empty_like(x)))
    else:
        seconds = best_time(lambda: x.copy(), xp=xp)
    return 2 * x.nbytes / seconds / 1e9


@functools.lru_cache(maxsize=1)
def _parallel_row_copy():
    """A numba kernel copying the rows of a 2-D array on every core."""
    import numba

    @numba.njit(parallel=True)
    def copy_rows(source, target):
        n, d = source.shape
        for i in numba.prange(n):
            for j in range(d):
                target[i, j] = source[i, j]

    return copy_rows


def _parallel_copy(source, target):
    _parallel_row_copy()(source, target)


def available_devices(requested: str) -> list[str]:
    """``cpu`` and, where CuPy sees a GPU, ``cuda``; filtered by ``--device``."""
    devices = ["cpu"]
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() > 0:
            devices.append("cuda")
    except Exception:  # no CuPy or no driver: CPU only
        pass
    if requested == "all":
        return devices
    if requested not in devices:
        raise RuntimeError(f"--device {requested} requested but no such device is available")
    return [requested]


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Print ``rows`` as an aligned text table with the given column order."""
    if not rows:
        print("(nothing measured)")
        return
    cells = [[_fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)
