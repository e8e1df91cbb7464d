"""Q-1/Q-2 throughput (reconstruct, encode, pack, decode, unpack) against memory-copy
bandwidth, and against faiss's scalar quantizers where faiss is installed.

A quantizer reads each value once and writes one value, code or a few bits, so the
bandwidth of a plain copy of the same matrix, timed in the same run, is the ceiling.
Throughput counts bytes read plus bytes written, as the copy does.  Like is compared with
like: an operation writing into a given ``out=`` array against a copy into an existing
array, one returning a new array against a copy to a new array (which also pays the
allocation and the page faults of fresh memory).  Every operation, the copies included,
is timed once per round and the rounds interleave them, so that a neighbour's burst of
load hits all of them alike; each keeps its best round.

The elementwise stressors of issue 9 are timed the same way, as transforms into a new
array: binary (sign) quantization, the float format casts, and Q-2 on a calibrated
(quantile) range, whose fit (on a sample of the rows) is not timed.

The peers, on the same matrix: faiss ``ScalarQuantizer`` SQ8 (256 levels per dimension:
Q-2 with h = 256) encoding and decoding, and SQ4 (16 levels, 4 bits) decoding, against
Q-2 ``encode``/``decode`` at h = 256 and ``unpack`` at h = 16.  The array-API reference
formula (``dnnstress.stress._uniform``) and a first-draft numpy Q-2 are timed on the CPU
as the naive baselines the compiled kernels are measured against.
"""

from __future__ import annotations

import numpy as np

from dnnstress.benchmarks._common import (available_devices, best_time, copy_bandwidth,
                                          print_table)
from dnnstress.stress import BinaryQuantizer, FloatCast, UniformQuantizer, _uniform
from dnnstress.stress.floatcast import FORMATS


def add_arguments(parser):
    parser.add_argument("--rows", type=int, default=16384, help="vectors (default 16384)")
    parser.add_argument("--dims", type=int, default=4096, help="dimensions (default 4096)")
    parser.add_argument("--levels", type=int, default=27, help="h, values per dimension")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved timing rounds, best of each kept (default 5)")


def run(args) -> dict:
    results = {"rows": args.rows, "dims": args.dims, "levels": args.levels,
               "rounds": args.rounds, "devices": {}}
    rows = []
    for device in available_devices(args.device):
        X = _features(args.rows, args.dims, device)
        copies, operations = _measure(X, args.levels, device, args.rounds)
        entry = {"copy_gb_s": copies, "operations": []}
        for target, rate in copies.items():
            rows.append({"device": device, "operation": f"memory copy into {target} array",
                         "output": target, "GB/s": rate, "% of copy": 100.0})
        for name, target, seconds, moved in operations:
            rate = moved / seconds / 1e9
            entry["operations"].append({"name": name, "output": target, "seconds": seconds,
                                        "gb_s": rate, "fraction_of_copy": rate / copies[target]})
            rows.append({"device": device, "operation": name, "output": target,
                         "ms": 1e3 * seconds, "GB/s": rate,
                         "% of copy": 100 * rate / copies[target]})
        results["devices"][device] = entry
    print(f"float32 matrix {args.rows} x {args.dims} ({args.rows * args.dims * 4 / 1e6:.0f} MB),"
          f" h = {args.levels} unless named; GB/s counts bytes read + written; % of the copy"
          f" into the same kind of output; best of {args.rounds} interleaved rounds")
    print_table(rows, ["device", "operation", "output", "ms", "GB/s", "% of copy"])
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


def _measure(X, h, device, rounds):
    """Copy bandwidths {output kind: GB/s} and (operation, output kind, seconds per call,
    bytes moved per call) of each operation, best of ``rounds`` interleaved rounds."""
    xp = np if device == "cpu" else __import__("cupy")
    cases = _cases(X, h, xp) + (_faiss_cases(X) if device == "cpu" else [])
    copies = {"existing": 0.0, "new": 0.0}
    best = [float("inf")] * len(cases)
    for _ in range(max(1, rounds)):
        for target in copies:
            copies[target] = max(copies[target], copy_bandwidth(X, target == "existing"))
        for k, (_, _, fn, _) in enumerate(cases):
            best[k] = min(best[k], best_time(fn, xp=xp, repeats=1))
    operations = [(name, target, seconds, moved)
                  for (name, target, _, moved), seconds in zip(cases, best)]
    if device == "cpu":
        operations += _naive_baselines(X, h)
    return copies, operations


def _cases(X, h, xp):
    """(operation, output kind, function, bytes moved) of dnnstress's own operations."""
    cases = []
    for per_dimension, label in ((False, "Q-1"), (True, "Q-2")):
        q = UniformQuantizer(h, per_dimension=per_dimension).fit(X)
        values, codes, packed = xp.empty_like(X), q.encode(X), q.pack(X)
        cases += [
            (f"{label} reconstruct", "existing", lambda q=q, v=values: q.transform(X, out=v),
             2 * X.nbytes),
            (f"{label} reconstruct", "new", lambda q=q: q.transform(X), 2 * X.nbytes),
            (f"{label} encode", "existing", lambda q=q, c=codes: q.encode(X, out=c),
             X.nbytes + codes.nbytes),
            (f"{label} pack (encode + bits)", "new", lambda q=q: q.pack(X),
             X.nbytes + packed.nbytes),
        ]
    sample = X[:: max(1, X.shape[0] // 2048)]
    elementwise = [("binary (sign, median) transform", BinaryQuantizer("median").fit(sample)),
                   ("Q-2 reconstruct, quantile range 0.001", UniformQuantizer(
                       h, per_dimension=True, range="quantile", quantile=0.001).fit(sample))]
    elementwise += [(f"{name} cast", FloatCast(name).fit(sample)) for name in FORMATS]
    cases += [(name, "new", lambda s=stressor: s.transform(X), 2 * X.nbytes)
              for name, stressor in elementwise]
    sq8, sq4 = (UniformQuantizer(levels, per_dimension=True).fit(X) for levels in (256, 16))
    codes8, packed4, values = sq8.encode(X), sq4.pack(X), xp.empty_like(X)
    return cases + [
        ("Q-2 encode, h = 256", "new", lambda: sq8.encode(X), X.nbytes + codes8.nbytes),
        ("Q-2 decode(codes), h = 256", "new", lambda: sq8.decode(codes8),
         codes8.nbytes + X.nbytes),
        ("Q-2 decode(codes), h = 256", "existing", lambda: sq8.decode(codes8, out=values),
         codes8.nbytes + X.nbytes),
        ("Q-2 unpack, h = 16 (4 bits)", "new", lambda: sq4.unpack(packed4),
         packed4.nbytes + X.nbytes),
        ("Q-2 unpack, h = 16 (4 bits)", "existing", lambda: sq4.unpack(packed4, out=values),
         packed4.nbytes + X.nbytes),
    ]


def _faiss_cases(X):
    """faiss SQ8 encode and decode, SQ4 decode, on as many threads as our kernels; the
    decodes both into a new array (faiss's Python ``decode``) and into an existing one
    (its C++ ``decode``, given the output's pointer)."""
    try:
        import faiss
    except ImportError:  # an optional peer: the benchmark runs without it
        return []
    import numba

    faiss.omp_set_num_threads(numba.get_num_threads())
    cases, values = [], np.empty_like(X)
    for qtype, label, ops in ((faiss.ScalarQuantizer.QT_8bit, "SQ8", ("encode", "decode")),
                              (faiss.ScalarQuantizer.QT_4bit, "SQ4", ("decode",))):
        sq = faiss.ScalarQuantizer(X.shape[1], qtype)
        sq.train(X)
        codes = sq.compute_codes(X)
        if "encode" in ops:
            cases.append((f"faiss {label} encode", "new", lambda sq=sq: sq.compute_codes(X),
                          X.nbytes + codes.nbytes))
        cases += [
            (f"faiss {label} decode", "new", lambda sq=sq, c=codes: sq.decode(c),
             codes.nbytes + X.nbytes),
            (f"faiss {label} decode", "existing", lambda sq=sq, c=codes: sq.decode_c(
                faiss.swig_ptr(c), faiss.swig_ptr(values), len(c)), codes.nbytes + X.nbytes),
        ]
    return cases


def _naive_baselines(X, h):
    """The baselines the compiled kernel is measured against, on a slice (they are slow),
    per byte: the array-API twin, and a first-draft numpy Q-2."""
    q = UniformQuantizer(h, per_dimension=True).fit(X)
    part = X[: max(1, X.shape[0] // 8)]
    return [
        ("Q-2 reconstruct, array-API twin", "new", best_time(
            lambda: _uniform.reconstruct(part, q.data_min_, q.step_, h), repeats=2),
         2 * part.nbytes),
        ("Q-2 reconstruct, naive float64 numpy", "new", best_time(
            lambda: _naive_q2(part, q.data_min_, q.step_, h), repeats=2), 2 * part.nbytes),
    ]
