"""Q-1/Q-2 throughput (reconstruct, encode, pack) against memory-copy bandwidth.

A quantizer reads each value once and writes one value, code or a few bits, so the
bandwidth of a plain copy of the same matrix, timed in the same run, is the ceiling.
Throughput counts bytes read plus bytes written, as the copy does.  Like is compared with
like: an operation writing into a given ``out=`` array against a copy into an existing
array, one returning a new array against a copy to a new array (which also pays the
allocation and the page faults of fresh memory).  The array-API reference formula
(``dnnstress.stress._uniform``) and a first-draft numpy Q-2 are timed on the CPU as the
naive baselines the compiled kernels are measured against.
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
        copies = {"existing": copy_bandwidth(X), "new": copy_bandwidth(X, into_existing=False)}
        entry = {"copy_gb_s": copies, "operations": []}
        for target, rate in copies.items():
            rows.append({"device": device, "operation": f"memory copy into {target} array",
                         "output": target, "GB/s": rate, "% of copy": 100.0})
        for name, target, seconds, moved in _measure(X, args.levels, device):
            rate = moved / seconds / 1e9
            entry["operations"].append({"name": name, "output": target, "seconds": seconds,
                                        "gb_s": rate, "fraction_of_copy": rate / copies[target]})
            rows.append({"device": device, "operation": name, "output": target, "GB/s": rate,
                         "% of copy": 100 * rate / copies[target]})
        results["devices"][device] = entry
    print(f"float32 matrix {args.rows} x {args.dims} ({args.rows * args.dims * 4 / 1e6:.0f} MB),"
          f" h = {args.levels}; GB/s counts bytes read + written; % of the copy into the "
          f"same kind of output")
    print_table(rows, ["device", "operation", "output", "GB/s", "% of copy"])
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
    """(operation, output kind, seconds per call, bytes moved per call) for each one."""
    xp = np if device == "cpu" else __import__("cupy")
    for per_dimension, label in ((False, "Q-1"), (True, "Q-2")):
        q = UniformQuantizer(h, per_dimension=per_dimension).fit(X)
        values, codes = xp.empty_like(X), q.encode(X)
        packed = q.pack(X)
        yield (f"{label} reconstruct", "existing",
               best_time(lambda: q.transform(X, out=values), xp=xp), 2 * X.nbytes)
        yield (f"{label} reconstruct", "new", best_time(lambda: q.transform(X), xp=xp),
               2 * X.nbytes)
        yield (f"{label} encode", "existing", best_time(lambda: q.encode(X, out=codes), xp=xp),
               X.nbytes + codes.nbytes)
        yield (f"{label} pack (encode + bits)", "new", best_time(lambda: q.pack(X), xp=xp),
               X.nbytes + packed.nbytes)
        if device == "cpu" and per_dimension:
            # The baselines the compiled kernel is measured against, on a slice (they
            # are slow), per byte: the array-API twin, and a first-draft numpy Q-2.
            part = X[: max(1, X.shape[0] // 8)]
            yield ("Q-2 reconstruct, array-API twin", "new", best_time(
                lambda: _uniform.reconstruct(part, q.data_min_, q.step_, h), repeats=2),
                2 * part.nbytes)
            yield ("Q-2 reconstruct, naive float64 numpy", "new", best_time(
                lambda: _naive_q2(part, q.data_min_, q.step_, h), repeats=2),
                2 * part.nbytes)
