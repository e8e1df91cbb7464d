"""Campaigns: the TOML format's checks, campaign.json, resume after a killed client."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dnnstress.campaign import Campaign, run_campaign
from dnnstress.features import FeatureSet
from dnnstress.sweep import Grid, read_results, run_sweep
from dnnstress.sweep.store import FAULT_VARIABLE, row_key

REPO = Path(__file__).resolve().parents[1]
GRID = """
[[experiments]]
name = "small"
experiments = ["dr1", "q1"]
grid = { levels = [2, 4], dr_steps = "2,10", repeats = 1 }
"""


def _features(seed, n=40, d=6):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, d))

    def split(m):
        y = np.arange(m) % 3
        return np.abs(centres[y] + 0.4 * rng.normal(size=(m, d))).astype(np.float32), y
    return FeatureSet(*split(n), *split(n // 2),
                      metadata={"model": "m", "layer": f"L{seed}", "dataset": "blobs"})


def _campaign(tmp_path, count=3):
    files = []
    for seed in range(count):
        files.append(_features(seed).save(tmp_path / f"f{seed}.npz"))
    text = 'name = "test"\n' + "".join(f'[[features]]\nfile = "{f.name}"\n' for f in files)
    path = tmp_path / "campaign.toml"
    path.write_text(text + GRID)
    return path


def _rows(folder):
    return {row_key(r): r["score"] for r in read_results(folder)}


def test_every_sweep_equals_its_own_run_sweep_and_campaign_json(tmp_path):
    path = _campaign(tmp_path, count=2)
    out = tmp_path / "out"
    json_path = run_campaign(path, out, progress=False)
    listing = json.loads(json_path.read_text())
    assert listing["campaign"] == "test"
    assert [s["name"] for s in listing["sweeps"]] == ["f0.small", "f1.small"]
    for seed, sweep in enumerate(listing["sweeps"]):
        assert sweep == {"name": f"f{seed}.small", "dir": f"f{seed}.small",
                         "features_file": str(tmp_path / f"f{seed}.npz"), "model": "m",
                         "layer": f"L{seed}", "dataset": "blobs",
                         "experiments": ["baseline", "dr1", "q1"], "status": "done"}
        alone = tmp_path / f"alone{seed}"
        run_sweep(tmp_path / f"f{seed}.npz", alone, experiments="dr1,q1", progress=False,
                  grid=Grid(levels=(2, 4), dr_steps=(2, 10), repeats=1))
        assert _rows(out / sweep["dir"]) == _rows(alone)
        assert len(_rows(alone)) == 1 + 2 + 2


def test_rerun_skips_done_sweeps_and_a_changed_grid_runs_again(tmp_path):
    path = _campaign(tmp_path, count=2)
    out = tmp_path / "out"
    first = Campaign.load(path).run(out, progress=False)
    assert first.ran == ["f0.small", "f1.small"] and first.rows_written == 10
    again = Campaign.load(path).run(out, progress=False)
    assert again.ran == [] and again.skipped == ["f0.small", "f1.small"]
    path.write_text(path.read_text().replace("levels = [2, 4]", "levels = [2, 4, 8]"))
    wider = Campaign.load(path).run(out, progress=False)
    assert wider.ran == ["f0.small", "f1.small"] and wider.rows_written == 2


def _cli(toml, out, fault=None):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(FAULT_VARIABLE, None)
    if fault:
        env[FAULT_VARIABLE] = fault
    return subprocess.run([sys.executable, "-m", "dnnstress.cli", "campaign", str(toml),
                           "--out", str(out), "--quiet"], env=env, capture_output=True,
                          text=True, timeout=120)


def test_campaign_of_three_resumes_after_the_client_is_killed(tmp_path):
    path = _campaign(tmp_path, count=3)
    clean = tmp_path / "clean"  # the uninterrupted reference, in-process
    run_campaign(path, clean, progress=False)
    out = tmp_path / "out"
    killed = _cli(path, out, fault="row-write:8")  # in the second sweep, mid-row
    assert killed.returncode == -9
    listing = json.loads((out / "campaign.json").read_text())
    assert [s["status"] for s in listing["sweeps"]] == ["done", "pending", "pending"]
    resumed = _cli(path, out)
    assert resumed.returncode == 0, resumed.stderr
    for sweep in json.loads((out / "campaign.json").read_text())["sweeps"]:
        assert sweep["status"] == "done"
        assert _rows(out / sweep["dir"]) == _rows(clean / sweep["dir"])


@pytest.mark.parametrize("edit, problem", [
    (("[[experiments]]", "[[experiments]]\ngrdi = 3"), "line 6: experiments #1, key 'grdi': "
                                                       "unknown key; valid keys: name,"),
    (('experiments = ["dr1", "q1"]', 'experiments = ["dr1", "q9"]'),
     "experiments #1, key 'experiments': unknown experiment"),
    (('file = "f0.npz"', 'file = "missing.npz"'), "line 3: features #1, key 'file': no "
                                                  "features file at"),
    (("repeats = 1", "repeats = 1, levels_x = [1]"),
     "line 8: experiments #1 grid, key 'levels_x': unknown key"),
    (('dr_steps = "2,10"', 'dr_steps = "2,x"'), "key 'dr_steps': cannot read 'x'"),
    (('name = "small"', 'name = "a/b"'), "'a/b' is not a usable name"),
    (('name = "test"', 'name = "test"\nworkers = 2'), "line 2: campaign, key 'workers': "
                                                      "unknown key"),
    (('name = "test"', 'name = "test" ='), "not valid TOML"),
])
def test_bad_campaign_files_name_the_key_and_line_before_any_work(tmp_path, edit, problem):
    path = _campaign(tmp_path, count=1)
    path.write_text(path.read_text().replace(*edit, 1))
    with pytest.raises(ValueError, match=None) as error:
        run_campaign(path, tmp_path / "out", progress=False)
    assert problem in str(error.value)
    assert str(path) in str(error.value)
    assert not (tmp_path / "out").exists()


def test_bad_recipe_and_dict_campaign_errors(tmp_path):
    base = {"experiments": [{"experiments": "q1"}]}
    cases = [({"features": [{"model": "no-such-net"}]}, "key 'model': unknown model"),
             ({"features": [{"model": "efficientnet-lite0", "layers": ["nope"]}]},
              "key 'layers': model 'efficientnet-lite0' has no layer 'nope'"),
             ({"features": [{"model": "efficientnet-lite0", "dataset": "imagenet-x"}]},
              "key 'dataset': unknown data set"),
             ({"features": [{"name": "x"}]}, "names neither a 'file' nor a 'model'"),
             ({}, "no [[features]] table")]
    for content, problem in cases:
        with pytest.raises(ValueError) as error:
            Campaign.load({**base, **content}, tmp_path)
        assert problem in str(error.value), str(error.value)


def test_recipe_all_layers_gives_one_sweep_per_layer(tmp_path):
    campaign = Campaign.load({"features": [{"model": "efficientnet-lite0", "layers": "all",
                                            "train_size": 20, "test_size": 10}],
                              "experiments": [{"experiments": ["q1"], "name": "q"}]})
    assert [s.name for s in campaign.sweeps] == [
        f"efficientnet-lite0-fashion-mnist-{layer}.q" for layer in
        ("block7_pooled", "block10_pooled", "block14_pooled", "block15_pooled", "conv",
         "pooled", "logits")]
