"""`dnnstress extract` under faults: SIGKILL at seeded random moments, then a rerun, must
give exactly the features of an uninterrupted run of several layers extracted in one
pass; two extractions sharing a cache take turns and both succeed.  Real subprocesses
on a tiny network and a small fake Fashion-MNIST, so each test takes seconds."""

import json
import os
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dnnstress.features import FeatureSet
from fakes import make_fashion
from test_extract_layers import build_four_outputs


# `dnnstress extract` without the rest of the CLI, whose other commands import scikit-learn
# and matplotlib: seconds per start, which the tests below pay a dozen times.
ONLY_EXTRACT = """
import argparse, sys
from dnnstress.commands import extract
parser = argparse.ArgumentParser()
extract.add_parser(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


@pytest.fixture
def job(tmp_path):
    """Runs `dnnstress extract` on the tiny network with a given cache and output."""
    # 40 batches: enough moments for the kills to hit, few enough checkpoint writes
    # (each a synchronous flush per layer) to keep a run near its start-up time.
    make_fashion(tmp_path / "fashion", n_train=120, n_test=40)
    network = tmp_path / "four.onnx"
    build_four_outputs(network)

    def start(cache, out, layers="means"):
        command = [sys.executable, "-c", ONLY_EXTRACT, "extract", "--model", str(network),
                   "--layer", layers, "--mean", "0,0,0", "--std", "1,1,1",
                   "--dataset", "fashion-mnist", "--root", str(tmp_path / "fashion"),
                   "--batch-size", "4", "--no-progress", "--out", str(out)]
        environment = {**os.environ, "DNNSTRESS_CACHE": str(cache)}
        return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    return start


def _finish(process):
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out, err


def _arrays(out):
    """The arrays of every features file in ``out``, by file and array name."""
    arrays = {}
    for path in sorted(out.glob("features*.npz")):
        with np.load(path) as data:
            arrays.update({f"{path.name}:{name}": data[name]
                           for name in ("train_x", "train_y", "test_x", "test_y")})
    return arrays


def _assert_same(out, reference):
    arrays = _arrays(out)
    assert arrays.keys() == reference.keys()
    for name, array in arrays.items():
        np.testing.assert_array_equal(array, reference[name], err_msg=name)


def _assert_cache_sound(cache, n_layers=1):
    folder = cache / "features"
    cached = list(folder.glob("*.npz"))
    assert len(cached) == n_layers
    for path in cached:
        FeatureSet.load(path)
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no checkpoint or half-written file survives a finished run


@pytest.mark.slow  # seven process starts
def test_sigkill_at_random_moments_then_rerun_gives_identical_features(tmp_path, job):
    # Three layers: a one-layer extraction is the same code with one checkpoint, and a
    # kill here can also land between two layers' writes or stores.
    layers = "means,maxes,flat"
    _finish(job(tmp_path / "clean-cache", tmp_path / "clean", layers))
    # One chain of kills, each once a checkpoint holds a seeded number of rows, then a
    # seeded moment more, so each rerun resumes what the killed runs before it left (a
    # checkpoint, perhaps a half-written file, some layers stored) and is itself killed;
    # the last finishes.  (Moments timed from the start alone mostly fell after the first
    # rerun had finished everything: the test could not fail.  The moment more is a few
    # batches at most: given up to 50 ms, a fast machine (100 rows per 50 ms) finished
    # and stored everything, and the later kills found nothing left to interrupt.)
    cache, out = tmp_path / "cache", tmp_path / "out"
    rng = np.random.default_rng(2016)
    interrupted = 0
    # Rows summed over every checkpoint (3 layers x 160 images): the chain's progress.
    for rows, jitter in zip(sorted(rng.integers(12, 450, 5)), rng.uniform(0, 0.005, 5)):
        process = job(cache, out, layers)
        _wait_for_rows(cache, process, rows)
        time.sleep(jitter)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=120)
        interrupted += bool(list((cache / "features").glob(".*.state.json")))
    assert interrupted >= 3, "the kills did not land in the middle of extractions"
    _finish(job(cache, out, layers))
    _assert_same(out, _arrays(tmp_path / "clean"))
    _assert_cache_sound(cache, n_layers=len(layers.split(",")))


def _wait_for_rows(cache, process, rows, timeout=60):
    """Until the checkpoints in ``cache`` hold ``rows`` rows together, or ``process`` has
    ended."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        done = 0
        for state in (cache / "features").glob(".*.state.json"):
            try:
                done += json.loads(state.read_text())["done"]
            except (OSError, ValueError):  # replaced or removed while read
                pass
        if done >= rows:
            return
        time.sleep(0.002)


def _wait_for_checkpoint(cache, process, timeout=60):
    deadline = time.monotonic() + timeout
    while not list((cache / "features").glob(".*.state.json")):
        assert process.poll() is None, "the first extraction ended before it checkpointed"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.002)


def _next_line(stream, timeout=60):
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no message within the time limit"
    return stream.readline()


def test_two_extractions_sharing_a_cache_take_turns(tmp_path, job):
    cache = tmp_path / "cache"
    first = job(cache, tmp_path / "first")
    _wait_for_checkpoint(cache, first)
    first.send_signal(signal.SIGSTOP)  # paused in mid-extraction, holding its lock
    try:
        second = job(cache, tmp_path / "second")
        assert "another process is extracting the same features; waiting" in _next_line(
            second.stderr)
    finally:
        first.send_signal(signal.SIGCONT)
    _finish(first)
    _finish(second)
    reference = _arrays(tmp_path / "first")
    _assert_same(tmp_path / "second", reference)
    _assert_cache_sound(cache)
