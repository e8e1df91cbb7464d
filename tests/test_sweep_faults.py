"""The sweep's results store under faults: broken devices, garbled or cut results,
full disks, concurrent sweeps, odd sweep.json files and kills at seeded moments."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dnnstress import cli
from dnnstress.features import FeatureSet
from dnnstress.sweep import Grid, Sweep, read_results, run_sweep
from dnnstress.sweep import store as store_module
from dnnstress.sweep.store import FAULT_VARIABLE, ResultsStore

REPO = Path(__file__).resolve().parents[1]
GRID = Grid(levels=(2, 3), erased_bits=(0, 60), repeats=2, dr_steps=(4, 12))
EXPERIMENTS = "dr1,q2,qb"  # 1 + 4 + 2 + 2 = 9 rows
N_ROWS = 9


def _features(n_train=60, n_test=30, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.random((3, d)) * 2

    def split(n):
        y = np.arange(n) % 3
        return (centres[y] + 0.3 * rng.random((n, d))).astype(np.float32), y
    return FeatureSet(*split(n_train), *split(n_test))


def _sweep(out, features=None, **kwargs):
    kwargs = {"experiments": EXPERIMENTS, "grid": GRID, "progress": False, **kwargs}
    return Sweep(_features() if features is None else features, out, **kwargs).run()


def _comparable(rows):
    """Every row by key, with every column but the wall time."""
    table = {}
    for row in rows:
        key = tuple(row[c] for c in ("experiment", "kept_dims", "n_levels", "erased_bits",
                                     "repeat"))
        assert key not in table, f"duplicated row {key}"
        table[key] = {c: v for c, v in row.items() if c != "wall_time_s"}
    return table


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The rows of an uninterrupted sweep."""
    out = tmp_path_factory.mktemp("clean")
    _sweep(out)
    rows = read_results(out)
    assert len(rows) == N_ROWS
    return _comparable(rows)


# --- the device is checked first --------------------------------------------------

def test_broken_cuda_fails_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # no CuPy at all
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="while importing CuPy.*gpu-cuda12"):
        run_sweep(_features(), out, experiments="q1", device="cuda", progress=False)
    assert not out.exists()


# --- garbled and cut results --------------------------------------------------------

def _edit_line(path, number, edit):
    lines = path.read_text().splitlines(keepends=True)
    lines[number - 1] = edit(lines[number - 1])
    path.write_text("".join(lines))


def _cells(index, value):
    def edit(line):
        cells = line.rstrip("\n").split(",")
        cells[index] = value
        return ",".join(cells) + "\n"
    return edit


# Line 3 of the clean file is DR-1's first row (k = 1 of 6, repeat 0).
@pytest.mark.parametrize("edit, problem", [
    (_cells(10, "0.8x"), "score '0.8x' is not a number"),
    (_cells(10, "nan"), "score 'nan' is out of range"),
    (_cells(10, "1.5"), "score 1.5 is not in [0, 1]"),
    (_cells(10, ""), "score is empty"),
    (_cells(0, "dr9"), "unknown experiment 'dr9'"),
    (_cells(4, ""), "repeat is empty in a dr1 row"),
    (_cells(2, "4"), "n_levels is '4' in a dr1 row"),
    (_cells(1, "-1"), "kept_dims '-1' is out of range"),
    (_cells(6, "7"), "n_features is 7, these features have 6"),
    (_cells(11, ""), "metric is empty"),
    (_cells(8, "999"), "bits_per_vector 999 and compression_rate"),  # another accounting
    (lambda line: line.replace(",", ";"), "it has 1 cells, not 17"),
    (lambda line: "\xff" + line, "it is not UTF-8 text"),
])
def test_garbled_row_is_refused_naming_file_and_line(tmp_path, edit, problem):
    _sweep(tmp_path)
    results = tmp_path / "results.csv"
    if problem == "it is not UTF-8 text":
        data = results.read_bytes().split(b"\n")
        data[2] = b"\xff" + data[2]
        results.write_bytes(b"\n".join(data))
    else:
        _edit_line(results, 3, edit)
    before = results.read_bytes()
    expected = f"{results}, line 3: garbled result row ({problem}"
    with pytest.raises(ValueError) as raised:
        _sweep(tmp_path)
    assert str(raised.value).startswith(expected)
    assert "new --out folder" in str(raised.value)
    assert results.read_bytes() == before  # refused, not repaired or appended to
    if "n_features" not in problem:  # read_results does not know the features
        with pytest.raises(ValueError, match="line 3: garbled"):
            read_results(tmp_path)


def test_duplicated_row_is_refused(tmp_path):
    _sweep(tmp_path)
    results = tmp_path / "results.csv"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines + [lines[4]]))
    with pytest.raises(ValueError, match=r"line 11: garbled result row \(it repeats "
                                         r"the configuration of line 5\)"):
        _sweep(tmp_path)


def test_other_header_is_refused(tmp_path):
    _sweep(tmp_path)
    _edit_line(tmp_path / "results.csv", 1, lambda line: line.replace("score", "scor"))
    with pytest.raises(ValueError, match="does not have the sweep results columns"):
        _sweep(tmp_path)


@pytest.mark.parametrize("cut", [1, 20, -1])
def test_cut_last_line_is_dropped_recomputed_and_said(tmp_path, capfd, clean, cut):
    _sweep(tmp_path)
    results = tmp_path / "results.csv"
    data = results.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    results.write_bytes(data[:start + cut] if cut > 0 else data[:-1])  # -1: all but "\n"
    assert len(read_results(tmp_path)) == N_ROWS - 1  # reading ignores the cut line
    capfd.readouterr()
    sweep = _sweep(tmp_path)
    assert sweep.written == 1
    assert (f"{results}: dropped line {N_ROWS + 1}, cut short by an interrupted write"
            in capfd.readouterr().err)
    assert _comparable(read_results(tmp_path)) == clean


def test_cut_header_and_empty_results_are_new(tmp_path, clean):
    for content, metadata in [(b"experiment,kept_di", True), (b"", True), (b"", False)]:
        out = tmp_path / f"{len(content)}-{metadata}"
        out.mkdir()
        (out / "results.csv").write_bytes(content)
        if metadata:
            _sweep(tmp_path / "model")
            shutil.copy(tmp_path / "model" / "sweep.json", out / "sweep.json")
        assert _sweep(out).written == N_ROWS
        assert _comparable(read_results(out)) == clean


# --- full disk ----------------------------------------------------------------------

def _failing_after(n_calls, real):
    calls = []

    def write(fd, data):
        calls.append(len(data))
        if len(calls) > n_calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)
    return write


@pytest.mark.parametrize("rows_before", [0, 4])
def test_disk_full_while_appending_keeps_rows_and_resumes(tmp_path, monkeypatch, clean,
                                                          rows_before):
    monkeypatch.setattr(store_module.os, "write", _failing_after(rows_before, os.write))
    with pytest.raises(RuntimeError) as raised:
        _sweep(tmp_path)
    results = tmp_path / "results.csv"
    assert str(raised.value) == (
        f"cannot write {results}: No space left on device [errno 28]; the "
        f"{rows_before} row(s) already in {results} are kept; free space (or fix the "
        f"folder) and rerun the same command to resume")
    assert results.read_bytes().endswith(b"\n")  # no half row left behind
    kept = read_results(tmp_path)
    assert len(kept) == rows_before
    assert all(clean[key] == row for key, row in _comparable(kept).items())
    monkeypatch.undo()
    assert _sweep(tmp_path).written == N_ROWS - rows_before
    assert _comparable(read_results(tmp_path)) == clean


def test_half_written_row_is_cut_back(tmp_path, monkeypatch):
    real = os.write

    def short_then_full(fd, data):
        if len(data) > 20:
            real(fd, data[:20])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    _sweep(tmp_path, experiments="q2")
    before = (tmp_path / "results.csv").read_bytes()
    monkeypatch.setattr(store_module.os, "write", short_then_full)
    with pytest.raises(RuntimeError, match="No space left on device"):
        _sweep(tmp_path)
    assert (tmp_path / "results.csv").read_bytes() == before


@pytest.mark.parametrize("target", ["sweep.json", "results.csv"])
def test_disk_full_while_writing_metadata_or_header(tmp_path, monkeypatch, clean, target):
    real = store_module.write_atomically

    def full(path, write):
        if Path(path).name == target:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, write)
    monkeypatch.setattr(store_module, "write_atomically", full)
    with pytest.raises(RuntimeError, match=f"cannot write {tmp_path / target}: No space"):
        _sweep(tmp_path)
    assert not (tmp_path / "results.csv").exists()
    monkeypatch.undo()
    assert _sweep(tmp_path).written == N_ROWS
    assert _comparable(read_results(tmp_path)) == clean


def test_disk_full_on_a_real_small_file_system(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
            capture_output=True).returncode != 0:
        pytest.skip("mounting a 64 KiB tmpfs needs root (or mount is refused here); the "
                    "injected ENOSPC tests cover the same paths")
    try:
        free = shutil.disk_usage(mount).free
        filler = mount / "filler"
        # Two pages for sweep.json (it records this grid twice: as a Grid and as each
        # experiment's parameter values), one for rows.
        filler.write_bytes(b"\0" * (free - 12288))
        out = mount / "out"
        many = {"experiments": "q2,qb", "grid": Grid(levels=tuple(range(1, 31)),
                                                     erased_bits=tuple(range(65)))}
        with pytest.raises(RuntimeError, match=f"cannot write {out}.*No space left"):
            _sweep(out, **many)
        kept = read_results(out)
        assert 10 < len(kept) < 96  # a page holds a few dozen rows
        _sweep(tmp_path / "reference", **many)
        reference = _comparable(read_results(tmp_path / "reference"))
        assert all(reference[key] == row for key, row in _comparable(kept).items())
        filler.unlink()
        assert _sweep(out, **many).written == 96 - len(kept)
        assert _comparable(read_results(out)) == reference
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# --- sweep.json and --out -----------------------------------------------------------

def _cli_error(capsys, argv):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("content", ["[1, 2]", "\"text\"", "{\"runs\": 3}", "\xff"])
def test_sweep_json_that_is_no_object_is_one_line(tmp_path, capsys, content):
    features = _features().save(tmp_path / "f.npz")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_bytes(content.encode("latin-1"))
    err = _cli_error(capsys, ["sweep", str(features), "--out", str(out),
                              "--experiments", "q2", "--levels", "2", "--no-progress"])
    assert f"{out / 'sweep.json'}" in err


def test_out_naming_a_file_is_one_line(tmp_path, capsys):
    features = _features().save(tmp_path / "f.npz")
    err = _cli_error(capsys, ["sweep", str(features), "--out", str(features),
                              "--experiments", "q2", "--levels", "2", "--no-progress"])
    assert f"{features} is a file" in err
    with pytest.raises(ValueError, match="give --out a folder path"):
        _sweep(features)


def test_rerun_computing_nothing_leaves_sweep_json_alone(tmp_path):
    _sweep(tmp_path)
    before = (tmp_path / "sweep.json").read_bytes()
    assert _sweep(tmp_path).written == 0
    assert (tmp_path / "sweep.json").read_bytes() == before


# --- one sweep at a time ------------------------------------------------------------

def _cli_args(features, out):
    return ["sweep", str(features), "--out", str(out), "--experiments", EXPERIMENTS,
            "--levels", "2,3", "--erased-bits", "0,60", "--repeats", "2", "--dr-steps",
            "4,12", "--no-progress"]


def _popen(features, out, fault=None):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(FAULT_VARIABLE, None)
    if fault:
        env[FAULT_VARIABLE] = fault
    return subprocess.Popen([sys.executable, "-m", "dnnstress.cli",
                             *_cli_args(features, out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_second_sweep_into_the_same_folder_refuses(tmp_path, clean):
    features = _features().save(tmp_path / "f.npz")
    out = tmp_path / "out"
    first = _popen(features, out, fault="row-write:3:STOP")  # holds its lock, stopped
    try:
        deadline = time.monotonic() + 60
        while _state(first.pid) != "T":
            assert first.poll() is None and time.monotonic() < deadline, \
                first.stderr.read().decode()
            time.sleep(0.01)
        with pytest.raises(RuntimeError, match=f"another sweep is writing to {out} "
                                               f"\\(it holds {out / '.sweep.lock'}\\)"):
            _sweep(out)
    finally:
        first.kill()  # a crash: the kernel releases the advisory lock
        first.wait()
    assert _sweep(out).written == N_ROWS - 2
    assert _comparable(read_results(out)) == clean


def test_lock_is_released_when_a_sweep_fails(tmp_path):
    with ResultsStore(tmp_path, {}) as store:
        store.open()
        with pytest.raises(RuntimeError, match="another sweep is writing"):
            _sweep(tmp_path)
    (tmp_path / "results.csv").write_text(",".join(store_module.COLUMNS) + "\n")
    with pytest.raises(ValueError, match="without sweep.json"):  # fails holding the lock
        _sweep(tmp_path)
    (tmp_path / "results.csv").unlink()
    assert _sweep(tmp_path).written == N_ROWS  # the failed run let go of the lock


def _state(pid):
    """The process state letter from /proc (T when stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


# --- kills at seeded moments --------------------------------------------------------

@pytest.mark.slow
def test_killed_at_six_seeded_moments_every_rerun_matches_the_uninterrupted_run(
        tmp_path, clean):
    rng = np.random.default_rng(2016)
    features = _features().save(tmp_path / "f.npz")
    # Named points: in the middle of a row's write, and between writing the new
    # sweep.json and renaming it over the old one (a first run's and a resumed run's);
    # two of each kind, each run a process start of about 2 s.
    named = [f"row-write:{n}" for n in sorted(rng.choice(np.arange(1, N_ROWS + 1), 2,
                                                         replace=False))]
    moments = named + ["sweep-json:1", "sweep-json:1"] + [
        float(t) for t in rng.uniform(0, 0.6, 2)]  # seconds after sweep.json appears
    killed = 0
    for index, moment in enumerate(moments):
        out = tmp_path / f"run{index}"
        if index == len(named) + 1:  # the second sweep.json kill hits a resumed run's update
            _sweep(out, experiments="q2")
        process = _popen(features, out, fault=moment if isinstance(moment, str) else None)
        if not isinstance(moment, str):
            while process.poll() is None and not (out / "sweep.json").exists():
                time.sleep(0.002)
            time.sleep(moment)
            process.send_signal(signal.SIGKILL)
        process.wait()
        killed += process.returncode == -signal.SIGKILL
        assert process.returncode in (0, -signal.SIGKILL), process.stderr.read().decode()
        assert cli.main(_cli_args(features, out)) == 0
        assert _comparable(read_results(out)) == clean, moment
        metadata = json.loads((out / "sweep.json").read_text())
        assert metadata["features_sha256"] and metadata["runs"]
        assert not list(out.glob(".*.tmp")), "a killed update left a temporary file"
    assert killed >= 4, f"only {killed} of 6 runs were killed before they ended"
