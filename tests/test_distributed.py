"""Sweeps on a Dask cluster: the same rows as in one process, a killed worker's unit
retried, the optional extra's message, dask-cuda where GPUs exist."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from dnnstress.features import FeatureSet
from dnnstress.stress import UniformQuantizer
from dnnstress.sweep import Experiment, Grid, read_results, run_sweep
from dnnstress.sweep.store import row_key

distributed = pytest.importorskip("distributed", reason='needs pip install "dnnstress[distributed]"')
from dnnstress.distributed import DaskExecutor  # noqa: E402

GRID = Grid(levels=(1, 2, 3), fc_levels=(2, 5), fc_steps=(3, 9), dr_steps=(2, 5, 10, 20),
            erased_bits=(0, 40, 60), repeats=2, base_seed=7)


def _features(n_train=120, n_test=60, d=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, d))

    def split(n):
        y = np.arange(n) % 3
        return np.abs(centres[y] + 0.5 * rng.normal(size=(n, d))).astype(np.float32), y
    return FeatureSet(*split(n_train), *split(n_test))


def _rows(folder):
    """Every row's key -> its values, less the wall time (the one column that differs)."""
    return {row_key(row): {k: v for k, v in row.items() if k != "wall_time_s"}
            for row in read_results(folder)}


@pytest.fixture(scope="module")
def cluster():
    """One local cluster of 2 worker processes for the module (starting one costs s)."""
    with DaskExecutor(workers=2) as executor:
        yield executor


def test_two_workers_give_the_single_process_rows(tmp_path, cluster):
    from dnnstress.sweep import Sweep

    features = _features()
    run_sweep(features, tmp_path / "local", grid=GRID, progress=False)
    sweep = Sweep(features, tmp_path / "dask", grid=GRID, progress=False,
                  executor=cluster).run()
    local, remote = _rows(tmp_path / "local"), _rows(tmp_path / "dask")
    assert len(local) == sweep.written == 26
    assert remote == local


def _fragile(marker: str, n_levels: int):
    """A quantizer whose first construction in a Dask worker kills that worker's process
    (os._exit), keyed on a marker file so that the retry lives."""
    try:
        distributed.get_worker()
    except ValueError:  # not in a worker: the client checking the declaration
        return UniformQuantizer(n_levels)
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return UniformQuantizer(n_levels)


def test_a_killed_worker_has_its_unit_retried_and_the_rows_are_complete(tmp_path, cluster):
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    marker = tmp_path / "worker-died"
    fragile = Experiment("fragile", "dies once", params={"marker": (str(marker),),
                                                         "n_levels": (2, 5)}, make=_fragile)
    features = _features(seed=1)
    marker.touch()
    run_sweep(features, tmp_path / "local", experiments=["q1", fragile, "qb"], grid=GRID,
              progress=False)
    marker.unlink()
    from dnnstress.sweep import Sweep
    Sweep(features, tmp_path / "dask", experiments=["q1", fragile, "qb"], grid=GRID,
          progress=False, executor=cluster).run()
    assert marker.exists()  # a worker did die
    local, remote = _rows(tmp_path / "local"), _rows(tmp_path / "dask")
    assert sum(key[0] == "fragile" for key in local) == 2
    assert remote == local


def test_scheduler_option_on_the_command_line(tmp_path, cluster):
    from dnnstress.cli import main

    features = _features(n_train=30, n_test=15, d=4).save(tmp_path / "f.npz")
    args = ["sweep", str(features), "--quiet", "--experiments", "q1", "--levels", "2,3"]
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    assert main([*args, "--out", str(tmp_path / "dask"),
                 "--scheduler", cluster.client.scheduler.address]) == 0
    assert _rows(tmp_path / "dask") == _rows(tmp_path / "local")


def test_a_campaign_on_the_cluster_gives_the_single_process_sweeps(tmp_path, cluster):
    from dnnstress.campaign import run_campaign

    files = [_features(n_train=40, n_test=20, d=6, seed=k).save(tmp_path / f"f{k}.npz")
             for k in range(2)]
    campaign = {"features": [{"file": str(f)} for f in files],
                "experiments": [{"name": "g", "experiments": ["dr1", "q2"],
                                 "grid": {"levels": [2, 3], "dr_steps": [5, 10],
                                          "repeats": 2}}]}
    run_campaign(campaign, tmp_path / "local", progress=False)
    run_campaign(campaign, tmp_path / "dask", progress=False,
                 scheduler=cluster.client.scheduler.address)
    for name in ("f0.g", "f1.g"):
        local = _rows(tmp_path / "local" / name)
        assert len(local) == 1 + 2 * 2 + 2 and _rows(tmp_path / "dask" / name) == local


def test_unreachable_scheduler_is_one_line(tmp_path, capsys):
    from dnnstress.cli import main

    import dask

    features = _features(n_train=30, n_test=15, d=4).save(tmp_path / "f.npz")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main(["sweep", str(features), "--out", str(tmp_path / "out"), "--quiet",
                     "--scheduler", "tcp://127.0.0.1:9"]) == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err


def test_without_dask_the_options_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    with pytest.raises(RuntimeError, match=r'pip install "dnnstress\[distributed\]"'):
        run_sweep(_features(), tmp_path, workers=2, progress=False)
    assert not (tmp_path / "results.csv").exists()
    run_sweep(_features(), tmp_path, experiments="q1", grid=GRID, progress=False)  # local path


@pytest.mark.parametrize("bad", [dict(), dict(scheduler="tcp://x:1", workers=2),
                                 dict(workers=0), dict(workers=True), dict(scheduler="")])
def test_bad_cluster_arguments(bad):
    with pytest.raises(ValueError):
        DaskExecutor(**bad)


@pytest.mark.gpu
def test_local_cuda_cluster_gives_the_single_process_rows(tmp_path):
    dask_cuda = pytest.importorskip("dask_cuda", reason="needs dask-cuda")
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as error:
        pytest.skip(f"needs CuPy and a CUDA device: {error}")
    features = _features()
    run_sweep(features, tmp_path / "local", grid=GRID, device="cuda", progress=False)
    with dask_cuda.LocalCUDACluster() as gpus:
        run_sweep(features, tmp_path / "dask", grid=GRID, device="cuda", progress=False,
                  scheduler=gpus.scheduler_address)
    assert _rows(tmp_path / "dask").keys() == _rows(tmp_path / "local").keys()
    for key, row in _rows(tmp_path / "local").items():
        assert _rows(tmp_path / "dask")[key]["score"] == pytest.approx(row["score"], abs=1e-6)
