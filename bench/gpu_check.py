#!/usr/bin/env python3
"""GPU check: the GPU tests, then every GPU piece's speed against the device's limits.

Run from the repository root on a machine with a CUDA GPU and CuPy (no install needed):

    PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --out RESULTS_DIR

Steps, each a check function in CHECKS: ``pytest -m gpu`` (pass / fail / skip counts);
device copy bandwidth; Q-1 and Q-2 through the public API (``UniformQuantizer``
``transform``, ``encode``, ``pack``, ``unpack``) and the bare reconstruct kernel on a
~1 GiB float32 feature matrix, each as GB/s (bytes read + bytes written) and % of the
copy bandwidth; the SVM at VOC 2007 size (5011 x 4096, 20 labels) per configuration,
one configuration per call (B = 1) and batched (B = 8); a Q-2 sweep as the sweep runs
it on a GPU, with the paper's whole grid (about 600 trainings) extrapolated from it;
DR-2's PCA fit at 5011 x 4096 and at GoogLeNet's 5011 x 50176.  Every timed output is
poisoned beforehand and compared after with its numpy twin on a sample of rows, so a
fast wrong kernel fails the check.

Writes ``gpu_check.json`` into ``--out``.  Exits 1 if a GPU test or a twin comparison
fails; without a GPU it prints "no GPU: nothing to check" and exits 0.  Designed to
finish in under 8 minutes on one H200.  See bench/README.md.
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
import time
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a checkout run without installing, as on a lent GPU machine

from dnnstress import _cuda  # noqa: E402
from dnnstress._array import to_numpy  # noqa: E402
from dnnstress.devices import check_device  # noqa: E402
from dnnstress.benchmarks._common import print_table  # noqa: E402
from dnnstress.stress import UniformQuantizer, _uniform, bits_for_levels  # noqa: E402

N_LEVELS = 16  # 4 bits per value: a typical FC / Q-2 setting
N_COLS = 1280  # EfficientNet-Lite0 feature dimension (the embedded default network)
SAMPLE_ROWS = 256  # rows compared with the numpy twin, at each end of the matrix
COLUMNS = ["check", "shape", "ms", "GB/s", "% copy", "status", "goal"]


def main(argv=None) -> int:
    args = _parse(argv)
    cupy = _cupy_with_device()
    report = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "device": None, "rows": []}
    if cupy is None:
        print("no GPU: nothing to check (CuPy with a CUDA device is needed)")
        _write_json(args.out, report)
        return 0
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    report["device"] = name.decode() if isinstance(name, bytes) else name
    report["cupy"] = cupy.__version__
    print(f"device: {report['device']}, CuPy {cupy.__version__}", flush=True)
    bench = Bench(cupy, args)
    for check in CHECKS:
        if check is check_gpu_tests and args.no_tests:
            continue
        start = time.perf_counter()
        try:
            report["rows"] += check(bench)
        except Exception as error:  # noqa: BLE001 (one broken check must not hide the rest)
            report["rows"].append({"check": check.__name__, "status": f"error: {error!r}"})
        print(f"{check.__name__}: done in {time.perf_counter() - start:.0f} s", flush=True)
    print()
    print(f"{report['device']}, {report['date']}")
    print_table(report["rows"], COLUMNS)
    _write_json(args.out, report)
    return 0 if all(row.get("status") == "ok" for row in report["rows"]) else 1


class Bench:
    """The device, the timing method and the data the checks share (made once)."""

    def __init__(self, cupy, args):
        self.cupy = cupy
        self.repeats = args.repeats
        n_rows = max(SAMPLE_ROWS * 2, int(args.size_gib * 2**30) // (4 * N_COLS))
        rng = cupy.random.default_rng(0)
        self.X = rng.standard_normal((n_rows, N_COLS), dtype=cupy.float32)
        self.X *= rng.uniform(0.5, 2.0, size=N_COLS).astype(cupy.float32)
        self.X += rng.uniform(-1.0, 1.0, size=N_COLS).astype(cupy.float32)
        # Fit on a subset, so that the full matrix also has values outside the range;
        # the host twins are fitted on a host copy of the same rows.
        fit = self.X[: n_rows // 4]
        self.q1 = UniformQuantizer(N_LEVELS).fit(fit)
        self.q2 = UniformQuantizer(N_LEVELS, per_dimension=True).fit(fit)
        self.q1_host = UniformQuantizer(N_LEVELS).fit(to_numpy(fit))
        self.q2_host = UniformQuantizer(N_LEVELS, per_dimension=True).fit(to_numpy(fit))
        self.scale, self.sweep_levels = args.scale, args.sweep_levels
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

    @functools.cached_property
    def voc(self):
        """Synthetic VOC 2007-sized features and labels (host arrays), made once."""
        from dnnstress.benchmarks.svm import VOC2007, make_voc_like

        n_train, n_test, d = (max(64, round(self.scale * VOC2007[key]))
                              for key in ("n_train", "n_test", "n_features"))
        return make_voc_like(n_train, n_test, d, VOC2007["n_labels"])

    def voc_train(self):
        """The VOC-sized training features and their solver targets, on the device."""
        from dnnstress.classify import one_vs_rest_targets

        train_x, train_y = self.cupy.asarray(self.voc[0]), self.cupy.asarray(self.voc[1])
        return train_x, one_vs_rest_targets(train_y, train_x.shape[0], self.cupy)[0]

    def sample(self, a) -> np.ndarray:
        """The first and last SAMPLE_ROWS rows, on the host."""
        return np.concatenate([to_numpy(a[:SAMPLE_ROWS]), to_numpy(a[-SAMPLE_ROWS:])])


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


def check_kernel_reconstruct(bench: Bench) -> list[dict]:
    """The bare Q-2 reconstruct kernel: the ceiling the public API is measured against."""
    out = bench.cupy.full(bench.X.shape, bench.cupy.nan, dtype=bench.X.dtype)
    lo, step = bench.q2.data_min_, bench.q2.step_
    seconds = bench.seconds(
        functools.partial(_cuda.reconstruct, bench.X, lo, step, N_LEVELS, out=out))
    expected = _uniform.reconstruct(bench.sample(bench.X), to_numpy(lo), to_numpy(step),
                                    N_LEVELS)
    ok = np.array_equal(bench.sample(out), expected)
    return [bench.row("Q-2 reconstruct kernel", seconds, 2 * bench.X.nbytes, _status(ok))]


def check_quantizer_api(bench: Bench) -> list[dict]:
    """Q-1 and Q-2 through ``UniformQuantizer``: transform (into an existing array, and
    into a new one), encode, pack and unpack, each compared with the fitted twin on the
    host (the same quantizer fitted on a host copy of the same training rows)."""
    cupy, X, rows = bench.cupy, bench.X, []
    sample = bench.sample(X)
    for name, quantizer, twin in (("Q-1", bench.q1, bench.q1_host),
                                  ("Q-2", bench.q2, bench.q2_host)):
        out = cupy.full(X.shape, cupy.nan, dtype=X.dtype)
        seconds = bench.seconds(lambda q=quantizer: q.transform(X, out=out))
        expected = twin.transform(sample)
        rows.append(bench.row(f"{name} transform (out=)", seconds, 2 * X.nbytes,
                              _status(np.array_equal(bench.sample(out), expected))))
        seconds = bench.seconds(lambda q=quantizer: q.transform(X))
        rows.append(bench.row(f"{name} transform (new array)", seconds, 2 * X.nbytes,
                              _status(np.array_equal(bench.sample(quantizer.transform(X)),
                                                     expected))))
        codes = cupy.full(X.shape, 255, dtype=cupy.uint8)
        seconds = bench.seconds(lambda q=quantizer: q.encode(X, out=codes))
        rows.append(bench.row(f"{name} encode (uint8)", seconds, X.nbytes + codes.nbytes,
                              _status(np.array_equal(bench.sample(codes),
                                                     twin.encode(sample)))))
        packed = quantizer.pack(X)
        seconds = bench.seconds(lambda q=quantizer: q.pack(X))
        rows.append(bench.row(f"{name} pack ({bits_for_levels(N_LEVELS)}-bit)", seconds,
                              X.nbytes + packed.nbytes,
                              _status(np.array_equal(bench.sample(packed), twin.pack(sample)))))
        seconds = bench.seconds(lambda q=quantizer: q.unpack(packed))
        rows.append(bench.row(f"{name} unpack", seconds, packed.nbytes + X.nbytes,
                              _status(np.array_equal(bench.sample(quantizer.unpack(packed)),
                                                     expected))))
    return rows


def check_svm(bench: Bench) -> list[dict]:
    """The SVM at VOC 2007 size: 8 Q-2 configurations (h = 2..9) trained one per call
    (B = 1) and in one batched call (B = 8); seconds per configuration of each, and
    whether both give the same models (objectives within the solver's tolerance)."""
    from dnnstress.classify import fit_linear_svms, l2_normalize
    from dnnstress.stress import UniformQuantizer

    cupy = bench.cupy
    train_x, Y = bench.voc_train()
    versions = [l2_normalize(UniformQuantizer(h, per_dimension=True).fit(train_x)
                             .transform(train_x)) for h in range(2, 10)]
    single = []
    start = _now(cupy)
    for X in versions:
        single.append(fit_linear_svms(X[None], Y)[2]["objective"])
    per_single = (_now(cupy) - start) / len(versions)
    start = _now(cupy)
    batched = fit_linear_svms(cupy.stack(versions), Y)[2]["objective"]
    per_batched = (_now(cupy) - start) / len(versions)
    gap = float(np.max(np.abs(np.concatenate(single) - batched) / np.abs(batched)))
    shape = f"{train_x.shape[0]}x{train_x.shape[1]}, {Y.shape[1]} labels"
    return [{"check": "SVM per configuration, B = 1", "shape": shape, "ms": 1e3 * per_single,
             "status": "ok"},
            {"check": "SVM per configuration, B = 8", "shape": shape, "ms": 1e3 * per_batched,
             "status": _status(gap < 1e-3, f"objectives differ by {gap:.1e}")}]


def check_sweep(bench: Bench) -> list[dict]:
    """A Q-2 sweep (h = 2..30 by default, 29 trainings plus the baseline) on a synthetic VOC
    2007-sized problem, end to end on the GPU as the sweep runs it there (its own batch
    choice): seconds per configuration, and the paper's whole grid (about 600
    trainings) extrapolated from it; the goal is < 60 s.
    """
    from dnnstress.features import FeatureSet
    from dnnstress.sweep import Grid, Sweep

    train_x, train_y, test_x, test_y = bench.voc
    features = FeatureSet(train_x, train_y, test_x, test_y)
    levels = tuple(range(2, 2 + bench.sweep_levels))
    with tempfile.TemporaryDirectory() as out:
        sweep = Sweep(features, out, experiments="q2", grid=Grid(levels=levels),
                      device="cuda", progress=False).run()
    per_config = sweep.seconds / sweep.written
    shape = f"{train_x.shape[0]}x{train_x.shape[1]}, {train_y.shape[1]} labels"
    return [{"check": f"Q-2 sweep, {sweep.written} trainings", "shape": shape,
             "ms": 1e3 * per_config, "status": "ok"},
            {"check": "paper grid (600 trainings), estimate", "shape": shape,
             "ms": 600e3 * per_config, "status": "ok",
             "goal": "< 60 s: " + ("met" if 600 * per_config < 60 else "missed")}]


def check_pca(bench: Bench) -> list[dict]:
    """DR-2's PCA fit on the GPU at VOC 2007 x VGG-M size (5011 x 4096) and at GoogLeNet's
    layer size (5011 x 50176); the first is compared with the CPU fit (leading 64
    directions), the second checked orthonormal."""
    from dnnstress.stress import PCADrop

    cupy, rows = bench.cupy, []
    rng = cupy.random.default_rng(1)
    n = max(64, round(bench.scale * 5011))
    for d in (max(64, round(bench.scale * 4096)), max(64, round(bench.scale * 50176))):
        X = cupy.maximum(rng.standard_normal((n, d), dtype=cupy.float32), 0)
        X *= rng.uniform(0.1, 2.0, size=d).astype(cupy.float32)
        PCADrop(8).fit(X[:64])  # compile the kernels outside the timing
        start = _now(cupy)
        pca = PCADrop().fit(X)
        seconds = _now(cupy) - start
        V = pca.components_[:64].T  # the leading directions, as columns
        gram = to_numpy(V.T @ V)
        ok = np.allclose(gram, np.eye(gram.shape[0]), atol=1e-4)
        if d < n:  # the VGG-M-sized fit; the CPU is too slow for the other
            host = PCADrop().fit(to_numpy(X)).components_
            H = host[:64].T
            ok = ok and np.allclose(np.abs(np.sum(to_numpy(V) * H, axis=0)), 1, atol=1e-4)
        rows.append({"check": "DR-2 PCA fit", "shape": f"{n}x{d} float32",
                     "ms": 1e3 * seconds, "status": _status(ok)})
        del X, pca
    return rows


CHECKS = [check_gpu_tests, check_copy_bandwidth, check_kernel_reconstruct, check_quantizer_api,
          check_svm, check_sweep, check_pca]


def _status(ok: bool, why: str = "") -> str:
    return "ok" if ok else "FAIL" + (f" ({why})" if why else "")


def _now(cupy) -> float:
    """Seconds on the wall clock once the device has finished all queued work."""
    cupy.cuda.Device().synchronize()
    return time.perf_counter()


def _cupy_with_device():
    """CuPy if it computes on a GPU here (dnnstress.devices.check_device), else None,
    after saying why not."""
    try:
        check_device("cuda")
    except RuntimeError as error:
        print(error)
        return None
    import cupy
    return cupy


def _junit_counts(path: Path) -> dict[str, int]:
    suite = ElementTree.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failed, errors, skipped = (int(suite.get(k, 0)) for k in
                                      ("tests", "failures", "errors", "skipped"))
    return {"passed": total - failed - errors - skipped, "failed": failed + errors,
            "skipped": skipped}


def _write_json(folder, report) -> None:
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", metavar="DIR",
                        help="folder for gpu_check.json (created if missing)")
    parser.add_argument("--size-gib", type=float, default=1.0,
                        help="size of the float32 feature matrix (default 1 GiB)")
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed runs per kernel; the median is reported (default 10)")
    parser.add_argument("--no-tests", action="store_true", help="skip pytest -m gpu")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="size of the SVM, sweep and PCA problems relative to VOC 2007 "
                             "(default 1; the test suite runs the checks at 0.06)")
    parser.add_argument("--sweep-levels", type=int, default=29,
                        help="Q-2 configurations of the sweep check, h = 2, 3, ... (default 29)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
