"""The sweep plan: shared fits are made once per sweep, and only when a unit needs them."""

import dataclasses

import numpy as np
import pytest

from dnnstress.features import FeatureSet
from dnnstress.stress import MantissaErasure, PCADrop
from dnnstress.sweep import Grid, read_results, run_sweep
from dnnstress.sweep.plan import plan


def _features(n_train=120, n_test=40, d=10, seed=0):
    rng = np.random.default_rng(seed)

    def split(n):
        y = np.arange(n) % 3
        return np.abs(rng.normal(size=(n, d)) + y[:, None]).astype(np.float32), y
    return FeatureSet(*split(n_train), *split(n_test))


@pytest.fixture
def pca_fits(monkeypatch):
    """Counts PCADrop fits made anywhere."""
    calls = []
    original = PCADrop.fit

    def counting_fit(self, X, y=None):
        calls.append(X.shape)
        return original(self, X, y)
    monkeypatch.setattr(PCADrop, "fit", counting_fit)
    return calls


GRID = Grid(dr_steps=(5, 10, 20), fc_steps=(2, 5), fc_levels=(2, 4))


def test_dr2_and_fc_share_one_pca_fit(tmp_path, pca_fits):
    run_sweep(_features(), tmp_path, experiments="dr2,fc", grid=GRID, progress=False)
    assert len(pca_fits) == 1
    rows = read_results(tmp_path)
    assert {r["experiment"] for r in rows} == {"baseline", "dr2", "fc"}


def test_shared_fit_gives_the_rows_of_separate_fits(tmp_path):
    features = _features()
    run_sweep(features, tmp_path / "both", experiments="dr2,fc", grid=GRID, progress=False)
    run_sweep(features, tmp_path / "dr2", experiments="dr2", grid=GRID, progress=False)
    run_sweep(features, tmp_path / "fc", experiments="fc", grid=GRID, progress=False)

    def scores(folder):
        return {(r["experiment"], r["kept_dims"], r["n_levels"]): r["score"]
                for r in read_results(folder) if r["experiment"] != "baseline"}
    assert scores(tmp_path / "both") == {**scores(tmp_path / "dr2"), **scores(tmp_path / "fc")}


def test_the_shared_pca_computes_only_the_directions_its_configurations_keep(monkeypatch,
                                                                            tmp_path):
    """Fewer samples than features (the Gram route, where each direction costs a
    projection of X): DR-2's 15 and 29 of 60 dims (its 60 left out: 40 samples span 39
    directions) fit 29 directions, the leading ones of the full fit."""
    fitted = []
    original = PCADrop.fit

    def recording_fit(self, X, y=None):
        fitted.append(original(self, X, y))
        return fitted[-1]
    monkeypatch.setattr(PCADrop, "fit", recording_fit)
    features = _features(n_train=40, d=60)
    with pytest.warns(UserWarning, match=r"kept dims \[60\] left out"):
        run_sweep(features, tmp_path, experiments="dr2", grid=GRID, progress=False)
    assert [stage.components_.shape[0] for stage in fitted] == [29]
    everything = original(PCADrop(), features.train_x)
    # float32 products of another shape: the same directions to float32 rounding
    np.testing.assert_allclose(fitted[0].components_, everything.components_[:29],
                               atol=1e-6)
    assert {r["kept_dims"] for r in read_results(tmp_path) if r["experiment"] == "dr2"} == {
        15, 29}


def test_a_resumed_sweep_with_its_pca_rows_done_fits_no_pca(tmp_path, pca_fits):
    features = _features()
    run_sweep(features, tmp_path, experiments="dr2,fc", grid=GRID, progress=False)
    pca_fits.clear()
    run_sweep(features, tmp_path, experiments="dr2,fc,q2",
              grid=dataclasses.replace(GRID, levels=(3,)), progress=False)
    assert pca_fits == []
    assert any(r["experiment"] == "q2" for r in read_results(tmp_path))


@pytest.mark.parametrize("erased_bits, trains_in", [(0, np.float32), (29, np.float32),
                                                    (40, np.float32), (52, np.float32),
                                                    (60, np.float64)])
def test_qb_trains_in_float32_while_its_values_are_float32(erased_bits, trains_in):
    # Erasing up to 52 bits of a float64 copy of float32 features touches only the
    # mantissa: the values are still float32s, and the solver may take them as such.
    features = _features()
    baseline, unit = plan(["qb"], Grid(erased_bits=(erased_bits,)), features.n_features,
                          features.train_x.shape[0])
    (stressed,) = unit.stress(features.train_x, features.test_x, {unit.specs[0].key})
    assert stressed.train_x.dtype == trains_in and stressed.test_x.dtype == trains_in
    exact = MantissaErasure(erased_bits).fit(features.train_x).transform(features.train_x)
    np.testing.assert_array_equal(stressed.train_x.astype(np.float64), exact)



def test_configurations_beyond_the_principal_directions_are_left_out_aloud(tmp_path, capsys):
    from dnnstress.cli import main

    path = _features(n_train=8, n_test=6, d=20).save(tmp_path / "f.npz")
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--experiments",
                 "baseline,dr2,fc", "--quiet"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 2
    assert warned[0].startswith("dnnstress sweep: warning: DR-2: kept dims [9, 10, 12")
    assert "spans only 7 principal directions" in warned[1] and "FC" in warned[1]
    kept = {r["kept_dims"] for r in read_results(tmp_path / "o") if r["experiment"] == "dr2"}
    assert kept and max(kept) <= 7
