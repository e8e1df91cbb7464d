"""The experiment engine: row sets, values against independent references, resume."""

import collections
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from dnnstress.features import FeatureSet
from dnnstress.stress import RandomDrop, dr_schedule, fc_schedule
from dnnstress.sweep import (COLUMNS, Grid, Sweep, parse_experiments, parse_int_list,
                             read_results, run_sweep)

REPO = Path(__file__).resolve().parents[1]


def _blobs(n_train=160, n_test=80, d=16, n_classes=3, seed=0):
    """Single-label features whose classes live in small-range dimensions while one
    wide-range noise dimension dominates the global range: Q-1 at h = 2 puts every
    informative value in one bin, Q-2 at h = 2 keeps one threshold per dimension."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d)) * 0.6

    def split(n):
        y = np.arange(n) % n_classes
        x = np.abs(centres[y] + 0.35 * rng.normal(size=(n, d)))
        x[:, 0] = 100 * rng.random(n)  # uninformative, wide range
        return x.astype(np.float32), y
    return FeatureSet(*split(n_train), *split(n_test), metadata={"kind": "blobs"})


def _multilabel(n_train=150, n_test=60, d=12, n_labels=3, seed=1):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_labels, d))

    def split(n):
        Y = np.where(rng.random((n, n_labels)) < 0.4, 1, -1).astype(np.int8)
        Y[rng.random((n, n_labels)) < 0.05] = 0  # "difficult"
        x = np.maximum((Y == 1) @ centres + 0.5 * rng.normal(size=(n, d)), 0)
        return x.astype(np.float32), Y
    return FeatureSet(*split(n_train), *split(n_test))


SMALL_GRID = Grid(levels=(1, 2, 3), fc_levels=(2, 5), repeats=2, base_seed=7)


@pytest.fixture(scope="module")
def full_sweep(tmp_path_factory):
    """Every experiment on the blobs, once for the module."""
    out = tmp_path_factory.mktemp("sweep")
    features = _blobs()
    run_sweep(features, out, grid=SMALL_GRID, progress=False)
    return features, out, read_results(out)


def _by_experiment(rows):
    groups = collections.defaultdict(list)
    for row in rows:
        groups[row["experiment"]].append(row)
    return groups


def test_row_set_of_every_experiment(full_sweep):
    features, out, rows = full_sweep
    n = features.n_features
    groups = _by_experiment(rows)
    assert {e: len(r) for e, r in groups.items()} == {
        "baseline": 1, "dr1": 2 * 16, "dr2": 16, "q1": 3, "q2": 3, "fc": 9 * 2, "qb": 25}
    # For n = 16 the schedule floors some neighbouring steps to the same count.
    counts = sorted(set(dr_schedule(n)))
    assert len(counts) == 16
    for repeat in (0, 1):
        dr1 = [r for r in groups["dr1"] if r["repeat"] == repeat]
        assert [r["kept_dims"] for r in dr1] == counts
        assert {r["seed"] for r in dr1} == {7 + repeat}
    assert [r["kept_dims"] for r in groups["dr2"]] == counts
    assert sorted({(r["kept_dims"], r["n_levels"]) for r in groups["fc"]}) == [
        (k, h) for k in fc_schedule(n) for h in (2, 5)]
    assert [r["erased_bits"] for r in groups["qb"]] == [*range(0, 50, 5), *range(50, 65)]
    assert [r["n_levels"] for r in groups["q1"]] == [1, 2, 3]
    keys = [tuple(r[c] for c in ("experiment", "kept_dims", "n_levels", "erased_bits",
                                 "repeat")) for r in rows]
    assert len(set(keys)) == len(keys)


def test_accounting_columns_follow_the_formulas(full_sweep):
    features, out, rows = full_sweep
    n = features.n_features
    for row in rows:
        k, h, e = row["kept_dims"], row["n_levels"], row["erased_bits"]
        if row["experiment"] == "qb":
            # Float32 bits left after erasing e low bits of the float64 copy: mantissa
            # (the top 23 of 52), exponent (the low 8 of 11, one lost per erased bit; then
            # the top 3 still tell |x| >= 2), sign.
            j = min(11, max(0, e - 52))
            exponent = 8 - j if j < 8 else int(j < 11)
            bits = (min(23, max(0, 52 - e)) + exponent + (e < 64)) * n
        elif h is not None:
            bits = k * math.ceil(math.log2(h))
        else:
            bits = 32 * k
        assert row["bits_per_vector"] == bits, row
        assert row["compression_rate"] == pytest.approx(1 - bits / (32 * n)), row
        assert row["kept_fraction"] == pytest.approx(k / n)
        assert row["n_features"] == n
        assert row["metric"] == "accuracy"
        assert 0 <= row["score"] <= 1 and row["wall_time_s"] >= 0
    # Applicability: empty cells where a column does not apply.
    for row in rows:
        assert (row["n_levels"] is not None) == (row["experiment"] in ("q1", "q2", "fc"))
        assert (row["erased_bits"] is not None) == (row["experiment"] == "qb")
        assert (row["repeat"] is not None) == (row["experiment"] == "dr1")


def test_scores_against_references(full_sweep):
    features, out, rows = full_sweep
    groups = _by_experiment(rows)
    baseline = groups["baseline"][0]
    assert baseline["relative_score"] == 1.0
    for row in rows:
        assert row["relative_score"] == pytest.approx(row["score"] / baseline["score"])
    # Independent reference: scikit-learn's LinearSVC on L2-normalised features.
    assert baseline["score"] == pytest.approx(_sklearn_accuracy(features), abs=1 / 80)
    # DR-2 at k = n is an orthonormal rotation: the baseline score.
    assert groups["dr2"][-1]["score"] == pytest.approx(baseline["score"], abs=1e-12)
    # Q-1's global range wastes h = 2 on the noise dimension; Q-2 does not.
    q1, q2 = ({r["n_levels"]: r["score"] for r in groups[e]} for e in ("q1", "q2"))
    assert q2[2] > q1[2] + 0.2
    # Erasing 0 bits of float64 changes nothing; erasing all 64 leaves zeros: chance.
    qb = {r["erased_bits"]: r["score"] for r in groups["qb"]}
    assert qb[0] == baseline["score"]
    assert qb[64] == pytest.approx(1 / 3, abs=0.01)


def test_dr1_row_matches_a_hand_made_pipeline(full_sweep):
    features, out, rows = full_sweep
    row = next(r for r in rows if r["experiment"] == "dr1" and r["repeat"] == 1
               and r["kept_dims"] == 8)
    drop = RandomDrop(8, random_state=row["seed"]).fit(features.train_x)
    reduced = FeatureSet(drop.transform(features.train_x), features.train_y,
                         drop.transform(features.test_x), features.test_y)
    assert row["score"] == pytest.approx(_sklearn_accuracy(reduced), abs=1 / 80)


def _sklearn_accuracy(fs):
    def normalize(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    model = LinearSVC(C=1.0, tol=1e-6, max_iter=100_000).fit(normalize(fs.train_x),
                                                             fs.train_y)
    return float((model.predict(normalize(fs.test_x)) == fs.test_y).mean())


def test_results_file_and_metadata(full_sweep):
    features, out, rows = full_sweep
    header = (out / "results.csv").read_text().splitlines()[0]
    assert header == (",".join(COLUMNS)
                      + ",params,entropy_bits_per_vector,packed_bytes_per_vector")
    metadata = json.loads((out / "sweep.json").read_text())
    assert metadata["normalize"] == "after"
    assert metadata["runs"][0]["grid"]["levels"] == [1, 2, 3]
    assert metadata["runs"][0]["features_metadata"] == {"kind": "blobs"}
    assert [type(rows[0][c]) for c in ("experiment", "kept_dims", "score")] == [str, int, float]


def test_rerun_skips_everything_and_subset_adds_only_new_rows(tmp_path):
    features = _blobs(d=8)
    grid = Grid(levels=(2, 3), erased_bits=(0, 60))
    first = Sweep(features, tmp_path, experiments="q2", grid=grid, progress=False).run()
    assert (first.written, first.skipped) == (3, 0)
    again = Sweep(features, tmp_path, experiments="q2", grid=grid, progress=False).run()
    assert (again.written, again.skipped) == (0, 3)
    more = Sweep(features, tmp_path, experiments=["q2", "qb"], grid=grid,
                 progress=False).run()
    assert (more.written, more.skipped) == (2, 3)
    rows = read_results(tmp_path)
    assert [r["experiment"] for r in rows] == ["baseline", "q2", "q2", "qb", "qb"]
    # The rerun that computed nothing is not recorded (issue 8).
    runs = json.loads((tmp_path / "sweep.json").read_text())["runs"]
    assert [run["experiments"] for run in runs] == [["baseline", "q2"],
                                                    ["baseline", "q2", "qb"]]


def test_refuses_to_mix_features_or_settings(tmp_path):
    features = _blobs(d=8)
    grid = Grid(levels=(2,))
    run_sweep(features, tmp_path, experiments="q1", grid=grid, progress=False)
    other = _blobs(d=8, seed=5)
    with pytest.raises(ValueError, match="features_sha256"):
        run_sweep(other, tmp_path, experiments="q1", grid=grid, progress=False)
    with pytest.raises(ValueError, match="normalize: folder has 'after', this run 'both'"):
        run_sweep(features, tmp_path, experiments="q1", grid=grid, normalize="both",
                  progress=False)
    with pytest.raises(ValueError, match="base_seed"):
        run_sweep(features, tmp_path, experiments="q1", grid=Grid(levels=(2,), base_seed=3),
                  progress=False)
    # The same arrays from a saved file are the same features.
    path = features.save(tmp_path / "f.npz")
    run_sweep(path, tmp_path, experiments="q1", grid=grid, progress=False)
    assert len(read_results(tmp_path)) == 2


def test_partial_last_line_is_dropped_and_recomputed(tmp_path):
    features = _blobs(d=8)
    grid = Grid(levels=(2, 3))
    run_sweep(features, tmp_path, experiments="q2", grid=grid, progress=False)
    complete = read_results(tmp_path)
    text = (tmp_path / "results.csv").read_text()
    lines = text.splitlines(keepends=True)
    # A kill in the middle of writing the last row leaves it unterminated.
    (tmp_path / "results.csv").write_text("".join(lines[:-1]) + lines[-1][:15])
    assert len(read_results(tmp_path)) == len(complete) - 1
    sweep = Sweep(features, tmp_path, experiments="q2", grid=grid, progress=False).run()
    assert sweep.written == 1
    assert _scores(read_results(tmp_path)) == _scores(complete)


def _blobs_at_random_scales(seed=0):
    """Class-structured features, each vector multiplied by a random scale in [1, 100]:
    the direction carries the class, the norm is noise."""
    rng = np.random.default_rng(seed)
    centres = rng.random((3, 8)) + 0.2

    def split(n):
        y = np.arange(n) % 3
        x = np.abs(centres[y] + 0.1 * rng.normal(size=(n, 8)))
        return (x * rng.uniform(1, 100, size=(n, 1))).astype(np.float32), y
    return FeatureSet(*split(150), *split(90))


def test_normalize_both_keeps_baseline_and_changes_the_stress(tmp_path):
    # Q-1 fitted on raw vectors spends its levels on the norms: the small vectors all
    # land in the bottom bin.  Normalising first (the authors' 2016 order) quantizes
    # directions instead, which is what carries the class here.
    features = _blobs_at_random_scales()
    grid = Grid(levels=(4,))
    after = read_results(run_sweep(features, tmp_path / "a", experiments="q1", grid=grid,
                                   progress=False))
    both = read_results(run_sweep(features, tmp_path / "b", experiments="q1", grid=grid,
                                  normalize="both", progress=False))
    assert both[0]["score"] == pytest.approx(after[0]["score"])  # baseline: L2 anyway
    assert both[1]["score"] > after[1]["score"] + 0.1
    assert json.loads((tmp_path / "b" / "sweep.json").read_text())["normalize"] == "both"


@pytest.mark.parametrize("ap_method, metric", [("voc07", "map_voc07_11pt"),
                                               ("area", "map_area")])
def test_multilabel_features_are_scored_by_map(tmp_path, ap_method, metric):
    features = _multilabel()
    rows = read_results(run_sweep(features, tmp_path, experiments="q2,dr2",
                                  grid=Grid(levels=(2,), dr_steps=(20,)),
                                  ap_method=ap_method, progress=False))
    assert {r["metric"] for r in rows} == {metric}
    assert 0.5 < rows[0]["score"] <= 1
    dr2_full = next(r for r in rows if r["experiment"] == "dr2")
    assert dr2_full["score"] == pytest.approx(rows[0]["score"], abs=1e-6)


def test_bad_arguments(tmp_path):
    features = _blobs(d=8)
    with pytest.raises(ValueError, match="unknown experiment"):
        run_sweep(features, tmp_path, experiments="q1,q9")
    with pytest.raises(ValueError, match="normalize"):
        run_sweep(features, tmp_path, normalize="before")
    with pytest.raises(ValueError, match="device"):
        run_sweep(features, tmp_path, device="tpu")
    with pytest.raises(ValueError, match="dr_steps values must be in"):
        Grid(dr_steps=(0,))
    with pytest.raises(ValueError, match="erased_bits"):
        Grid(erased_bits=(65,))
    with pytest.raises(ValueError, match="2-8,16"):
        parse_int_list("2-")
    assert parse_int_list("2-4,16, 3") == (2, 3, 4, 16)
    assert parse_experiments("qb,q1") == ("q1", "qb")
    (tmp_path / "results.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="without sweep.json"):
        run_sweep(features, tmp_path, experiments="q1")


def test_cuda_without_cupy_is_a_clear_error(tmp_path):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="CuPy"):
        run_sweep(_blobs(d=8), tmp_path, experiments="q1", device="cuda")


@pytest.mark.gpu
def test_cuda_sweep_matches_cpu(tmp_path, cupy):
    features = _blobs()
    kwargs = dict(experiments="dr1,dr2,q1,q2,fc,qb", progress=False,
                  grid=Grid(levels=(2, 8), fc_levels=(4,), repeats=1,
                            dr_steps=(1, 10, 20), fc_steps=(1, 5), erased_bits=(0, 55)))
    cpu = read_results(run_sweep(features, tmp_path / "cpu", **kwargs))
    gpu = read_results(run_sweep(features, tmp_path / "gpu", device="cuda", **kwargs))
    assert _keys(cpu) == _keys(gpu)
    for a, b in zip(cpu, gpu):
        assert b["score"] == pytest.approx(a["score"], abs=1.5 / 80), a


def _keys(rows):
    return [tuple(r[c] for c in ("experiment", "kept_dims", "n_levels", "erased_bits",
                                 "repeat")) for r in rows]


def _scores(rows):
    return {key: row["score"] for key, row in zip(_keys(rows), rows)}


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_uninterrupted_result(tmp_path):
    features = _blobs(n_train=600, n_test=200, d=96, n_classes=4)
    path = features.save(tmp_path / "features.npz")
    args = [sys.executable, "-m", "dnnstress.cli", "sweep", str(path), "--experiments",
            "q2,qb", "--levels", "1-20", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(args + ["--out", str(interrupted)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = interrupted / "results.csv"
    try:
        while process.poll() is None and _n_lines(results) < 5:  # header + 4 rows
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the sweep ended before it was killed"
    partial = read_results(interrupted)
    assert 4 <= len(partial) < 46
    resumed = subprocess.run(args + ["--out", str(interrupted)], env=env,
                             capture_output=True, text=True, check=True)
    assert f"{len(partial)} already present" in resumed.stdout
    # The uninterrupted reference, in-process (same grid as the command line's).
    clean = run_sweep(path, tmp_path / "clean", experiments="q2,qb",
                      grid=Grid(levels=tuple(range(1, 21))), progress=False)
    assert _scores(read_results(interrupted)) == _scores(read_results(clean))
    assert len(read_results(interrupted)) == 1 + 20 + 25


def _n_lines(path):
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_rows_of_another_solver_are_never_mixed_in(tmp_path, monkeypatch):
    from dnnstress.sweep import runner

    features = _blobs()
    run_sweep(features, tmp_path, experiments="q2", grid=Grid(levels=(2,)), progress=False)
    monkeypatch.setattr(runner, "check_solver", lambda solver: solver)  # no cuML here
    with pytest.raises(ValueError, match="classifier: folder has .*LinearSVM.*cuml"):
        runner.Sweep(features, tmp_path, experiments="q2", grid=Grid(levels=(2, 3)),
                     progress=False, solver="cuml").run()
