#!/usr/bin/env python3
"""GPU check: the GPU tests, then the CUDA kernels' throughput against copy bandwidth.

Run from the repository root on a machine with a CUDA GPU and CuPy (no install needed):

    PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --json gpu_check.json

Steps, each a check function in CHECKS (later work appends sweep timings there):
``pytest -m gpu`` (pass / fail / skip counts), then device copy bandwidth, Q-1 and Q-2
reconstruction, encoding, packing and unpacking of a ~1 GiB float32 feature matrix, each
as GB/s (bytes read + bytes written) and as a percentage of the copy bandwidth, the
ceiling of a kernel that reads its input once and writes its output once.  Every timed
kernel's output is poisoned beforehand and compared after with its numpy twin on a
sample of rows, so a fast wrong kernel fails the check.

Exits 1 if a GPU test or a twin comparison fails; without a GPU it prints
"no GPU: nothing to check" and exits 0.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a checkout run without installing, as on a lent GPU machine

from dnnstress import _cuda  # noqa: E402
from dnnstress.benchmarks._common import print_table  # noqa: E402
from dnnstress.stress import _packing, _uniform, bits_for_levels  # noqa: E402

N_LEVELS = 16  # 4 bits per value: a typical FC / Q-2 setting
N_COLS = 1280  # EfficientNet-Lite0 feature dimension (the embedded default network)
SAMPLE_ROWS = 256  # rows compared with the numpy twin, at each end of the matrix
COLUMNS = ["check", "shape", "ms", "GB/s", "% copy", "status"]


def main(argv=None) -> int:
    args = _parse(argv)
    cupy = _cupy_with_device()
    report = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "device": None, "rows": []}
    if cupy is None:
        print("no GPU: nothing to check (CuPy with a CUDA device is needed)")
        _write_json(args.json, report)
        return 0
    report["device"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    report["cupy"] = cupy.__version__
    print(f"device: {report['device']}, CuPy {cupy.__version__}", flush=True)
    bench = Bench(cupy, args)
    for check in CHECKS:
        if check is check_gpu_tests and args.no_tests:
            continue
        try:
            report["rows"] += check(bench)
        except Exception as error:  # noqa: BLE001 (one broken check must not hide the rest)
            report["rows"].append({"check": check.__name__, "status": f"error: {error!r}"})
        print(f"{check.__name__}: done", flush=True)
    print()
    print(f"{report['device']}, {report['date']}")
    print_table(report["rows"], COLUMNS)
    _write_json(args.json, report)
    return 0 if all(row.get("status") == "ok" for row in report["rows"]) else 1


class Bench:
    """The device, the timing method and the data the checks share (made once)."""

    def __init__(self, cupy, args):
        self.cupy = cupy
        self.repeats = args.repeats
        n_rows = max(SAMPLE_ROWS * 2, int(args.size_gib * 2**30) // (4 * N_COLS))
        rng = cupy.random.default_rng(0)
        self.X = rng.standard_normal((n_rows, N_COLS), dtype=cupy.float32)
        self.X *= rng.uniform(0.5, 2.0, size=N_COLS, dtype=cupy.float32)
        self.X += rng.uniform(-1.0, 1.0, size=N_COLS, dtype=cupy.float32)
        # Fit on a subset, so that the full matrix also has values outside the range.
        fit = self.X[: n_rows // 4]
        self.lo_q2 = fit.min(axis=0).astype(cupy.float64)
        self.step_q2 = (fit.max(axis=0).astype(cupy.float64) - self.lo_q2) / N_LEVELS
        self.lo_q1 = cupy.full(N_COLS, float(fit.min()), dtype=cupy.float64)
        self.step_q1 = cupy.full(N_COLS, (float(fit.max()) - float(fit.min())) / N_LEVELS)
        self.copy_gbps = None

    @property
    def shape(self) -> str:
        return "x".join(map(str, self.X.shape)) + " float32"

    def seconds(self, fn) -> float:
        """Median time of ``fn()`` over ``repeats`` runs, by CUDA events, after warm-up."""
        cupy = self.cupy
        for _ in range(2):
            fn()
        times = []
        for _ in range(self.repeats):
            start, stop = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
        return float(np.median(times))

    def row(self, check: str, seconds: float, n_bytes: int, status: str = "ok") -> dict:
        gbps = n_bytes / seconds / 1e9
        row = {"check": check, "shape": self.shape, "ms": seconds * 1e3, "GB/s": gbps,
               "status": status}
        if self.copy_gbps:
            row["% copy"] = 100 * gbps / self.copy_gbps
        return row

    def sample(self, a) -> np.ndarray:
        """The first and last SAMPLE_ROWS rows, on the host."""
        return np.concatenate([a[:SAMPLE_ROWS].get(), a[-SAMPLE_ROWS:].get()])


def check_gpu_tests(bench: Bench) -> list[dict]:
    """``pytest -m gpu`` in a fresh process: every kernel against its numpy twin.

    A test module that cannot be imported there (a package missing from the GPU
    machine's image) counts as failed, while the other modules still run.
    """
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
             "--continue-on-collection-errors", f"--junitxml={junit}"],
            check=False, cwd=REPO, env=env, capture_output=True, text=True,
            timeout=600)
        counts = _junit_counts(junit) if junit.exists() else {}
    if result.returncode != 0:
        print(result.stdout[-6000:], result.stderr[-2000:], sep="\n")
    ok = result.returncode == 0 and counts.get("passed", 0) > 0
    summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no result"
    return [{"check": "pytest -m gpu", "shape": summary,
             "status": "ok" if ok else f"FAIL (exit {result.returncode})"}]


def check_copy_bandwidth(bench: Bench) -> list[dict]:
    """Device-to-device copy: the ceiling of any one-read-one-write kernel."""
    out = bench.cupy.empty_like(bench.X)
    seconds = bench.seconds(lambda: bench.cupy.copyto(out, bench.X))
    bench.copy_gbps = 2 * bench.X.nbytes / seconds / 1e9
    ok = bool((out[:SAMPLE_ROWS] == bench.X[:SAMPLE_ROWS]).all())
    return [bench.row("copy", seconds, 2 * bench.X.nbytes, "ok" if ok else "FAIL")]


def check_reconstruct(bench: Bench) -> list[dict]:
    """Q-1 (one global range) and Q-2 (a range per dimension) reconstruction."""
    rows = []
    for name, lo, step in (("Q-1 reconstruct", bench.lo_q1, bench.step_q1),
                           ("Q-2 reconstruct", bench.lo_q2, bench.step_q2)):
        out = bench.cupy.full(bench.X.shape, bench.cupy.nan, dtype=bench.X.dtype)
        seconds = bench.seconds(
            functools.partial(_cuda.reconstruct, bench.X, lo, step, N_LEVELS, out=out))
        expected = _uniform.reconstruct(bench.sample(bench.X), lo.get(), step.get(), N_LEVELS)
        ok = np.array_equal(bench.sample(out), expected)
        rows.append(bench.row(name, seconds, 2 * bench.X.nbytes, "ok" if ok else "FAIL"))
    return rows


def check_encode(bench: Bench) -> list[dict]:
    """Q-2 integer codes (uint8): read 4 bytes, write 1 per value."""
    codes = bench.cupy.full(bench.X.shape, 255, dtype=bench.cupy.uint8)
    lo, step = bench.lo_q2, bench.step_q2
    seconds = bench.seconds(lambda: _cuda.encode(bench.X, lo, step, N_LEVELS, out=codes))
    expected = _uniform.encode(bench.sample(bench.X), lo.get(),
                               _uniform.safe_step(step.get()), N_LEVELS)
    ok = np.array_equal(bench.sample(codes), expected)
    return [bench.row("Q-2 encode", seconds, bench.X.nbytes + codes.nbytes,
                      "ok" if ok else "FAIL")]


def check_pack(bench: Bench) -> list[dict]:
    """Bit packing of the Q-2 codes (4 bits each) and its inverse."""
    bits = bits_for_levels(N_LEVELS)
    codes = _cuda.encode(bench.X, bench.lo_q2, bench.step_q2, N_LEVELS)
    seconds = bench.seconds(lambda: _cuda.pack(codes, bits, check_range=False))
    packed = _cuda.pack(codes, bits)
    ok = np.array_equal(bench.sample(packed), _packing.pack_codes(bench.sample(codes), bits))
    rows = [bench.row(f"pack {bits}-bit", seconds, codes.nbytes + packed.nbytes,
                      "ok" if ok else "FAIL")]
    seconds = bench.seconds(lambda: _cuda.unpack(packed, bits, N_COLS))
    ok = bool((_cuda.unpack(packed, bits, N_COLS) == codes).all())
    rows.append(bench.row(f"unpack {bits}-bit", seconds, codes.nbytes + packed.nbytes,
                          "ok" if ok else "FAIL"))
    return rows


def check_sweep(bench: Bench) -> list[dict]:
    """A Q-2 sweep (h = 2..30, 29 trainings plus the baseline) on a synthetic VOC
    2007-sized problem, end to end on the GPU: seconds per configuration and the
    paper's whole grid (about 600 trainings) extrapolated from it; the goal is < 60 s.
    """
    import tempfile

    from dnnstress.benchmarks.svm import VOC2007, make_voc_like
    from dnnstress.features import FeatureSet
    from dnnstress.sweep import Grid, Sweep

    train_x, train_y, test_x, test_y = make_voc_like(
        VOC2007["n_train"], VOC2007["n_test"], VOC2007["n_features"], VOC2007["n_labels"])
    features = FeatureSet(train_x, train_y, test_x, test_y)
    with tempfile.TemporaryDirectory() as out:
        sweep = Sweep(features, out, experiments="q2", grid=Grid(levels=tuple(range(2, 31))),
                      device="cuda", progress=False).run()
    per_config = sweep.seconds / sweep.written
    shape = f"{VOC2007['n_train']}x{VOC2007['n_features']}, 20 labels"
    return [{"check": f"Q-2 sweep, {sweep.written} trainings", "shape": shape,
             "ms": 1e3 * per_config, "status": "ok"},
            {"check": "paper grid (600 trainings), estimate", "shape": shape,
             "ms": 600e3 * per_config,
             "status": "ok" if 600 * per_config < 60 else "slower than 60 s"}]


CHECKS = [check_gpu_tests, check_copy_bandwidth, check_reconstruct, check_encode, check_pack,
          check_sweep]


def _cupy_with_device():
    try:
        import cupy
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except (ImportError, RuntimeError):  # no CuPy, no driver (CUDARuntimeError): no GPU
        return None


def _junit_counts(path: Path) -> dict[str, int]:
    suite = ElementTree.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failed, errors, skipped = (int(suite.get(k, 0)) for k in
                                      ("tests", "failures", "errors", "skipped"))
    return {"passed": total - failed - errors - skipped, "failed": failed + errors,
            "skipped": skipped}


def _write_json(path, report) -> None:
    if path:
        Path(path).write_text(json.dumps(report, indent=2) + "\n")


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--size-gib", type=float, default=1.0,
                        help="size of the float32 feature matrix (default 1 GiB)")
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed runs per kernel; the median is reported (default 10)")
    parser.add_argument("--no-tests", action="store_true", help="skip pytest -m gpu")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
