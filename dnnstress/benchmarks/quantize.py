"""Q-1/Q-2 throughput (reconstruct, encode, pack) against memory-copy bandwidth.

A quantizer reads each value once and writes one value, code or a few bits, so the
bandwidth of a plain copy of the same matrix, timed in the same run, is the ceiling.
Throughput counts bytes read plus bytes written, as the copy does.  The array-API
reference formula (``dnnstress.stress._uniform``) is timed on the CPU as the naive
baseline the compiled kernels are measured against.
"""

from __future__ import annotations

import numpy as np

from dnnstress.benchmarks._common import (available_devices, best_time, copy_bandwidth,
                                          print_table)
from dnnstress.stress import UniformQuantizer, _uniform


def add_arguments(parser):
    parser.add_argument("--rows", type=int, default=16384, help="vectors (default 16384)")
    parser.add_argument("--dims", type=int, default=4096, help="dimensions (default 4096)")
    parser.add_argument("--levels", type=int, default=27, help="h, values per dimension")


def run(args) -> dict:
    results = {"rows": args.rows, "dims": args.dims, "levels": args.levels, "devices": {}}
    rows = []
    for device in available_devices(args.device):
        X = _features(args.rows, args.dims, device)
        copy = copy_bandwidth(X)
        entry = {"copy_gb_s": copy, "operations": []}
        rows.append({"device": device, "operation": "memory copy", "GB/s": copy,
                     "% of copy": 100.0})
        for name, seconds, moved in _measure(X, args.levels, device):
            rate = moved / seconds / 1e9
            entry["operations"].append({"name": name, "seconds": seconds, "gb_s": rate,
                                        "fraction_of_copy": rate / copy})
            rows.append({"device": device, "operation": name, "GB/s": rate,
                         "% of copy": 100 * rate / copy})
        results["devices"][device] = entry
    print(f"float32 matrix {args.rows} x {args.dims} ({args.rows * args.dims * 4 / 1e6:.0f} MB),"
          f" h = {args.levels}; GB/s counts bytes read + written")
    print_table(rows, ["device", "operation", "GB/s", "% of copy"])
    return results


def _naive_q2(X, lo, step, h):
    """Q-2 as one would first write it: float64 temporaries, one numpy pass per step.

    A timing baseline only: ``floor`` sends a value on a bin edge to the upper centre,
    where the specification (``_uniform``) takes the lower one.
    """
    codes = np.clip(np.floor((X.astype(np.float64) - lo) / np.where(step > 0, step, 1)), 0, h - 1)
    return (lo + (codes + 0.5) * step).astype(X.dtype)


def _features(n_rows, n_dims, device):
    rng = np.random.default_rng(0)
    X = np.maximum(rng.standard_normal((n_rows, n_dims), dtype=np.float32), 0)  # ReLU-like
    if device == "cuda":
        import cupy
        return cupy.asarray(X)
    return X


def _measure(X, h, device):
    """(operation, seconds per call, bytes moved per call) for each timed operation."""
    xp = np if device == "cpu" else __import__("cupy")
    for per_dimension, label in ((False, "Q-1"), (True, "Q-2")):
        q = UniformQuantizer(h, per_dimension=per_dimension).fit(X)
        codes = q.encode(X)
        packed = q.pack(X)
        yield (f"{label} reconstruct", best_time(lambda: q.transform(X), xp=xp), 2 * X.nbytes)
        yield (f"{label} encode", best_time(lambda: q.encode(X), xp=xp),
               X.nbytes + codes.nbytes)
        yield (f"{label} pack", best_time(lambda: q.pack(X), xp=xp),
               X.nbytes + packed.nbytes)
        if device == "cpu" and per_dimension:
            # The baselines the compiled kernel is measured against, on a slice (they
            # are slow), per byte: the array-API twin, and a first-draft numpy Q-2.
            part = X[: max(1, X.shape[0] // 8)]
            yield ("Q-2 reconstruct, array-API twin", best_time(
                lambda: _uniform.reconstruct(part, q.data_min_, q.step_, h), repeats=2),
                2 * part.nbytes)
            yield ("Q-2 reconstruct, naive float64 numpy", best_time(
                lambda: _naive_q2(part, q.data_min_, q.step_, h), repeats=2),
                2 * part.nbytes)
