"""The experiment registry: declarations, row keys, old results files, custom stressors,
the modern entries against hand-built stressors, and the errors."""

import csv
import json
import math
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnnstress import cli
from dnnstress.features import FeatureSet
from dnnstress.stress import (BinaryQuantizer, FloatCast, PCADrop, ProductQuantizer,
                              UniformQuantizer, dr_schedule, make_fc, make_pca_pq,
                              make_rotated)
from dnnstress.sweep import (COLUMNS, EXPERIMENTS, Experiment, Grid, PerWidth, Sweep,
                             experiments, get_experiment, read_results,
                             register_experiment, registered_experiments, run_sweep)
from dnnstress.sweep.experiments import Context, canonical_params
from dnnstress.sweep.plan import plan
from dnnstress.sweep.store import header, row_key

REPO = Path(__file__).resolve().parents[1]


def _features(n_train=120, n_test=60, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.random((3, d)) * 2

    def split(n):
        y = np.arange(n) % 3
        return (centres[y] + 0.6 * rng.normal(size=(n, d))).astype(np.float32), y
    return FeatureSet(*split(n_train), *split(n_test))


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry: what a test registers is gone after it."""
    monkeypatch.setattr(experiments, "_REGISTRY", dict(experiments._REGISTRY))


class Negate:
    """A minimal scikit-learn-style transformer (no dnnstress base class)."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def fit(self, X, y=None):
        self.width_ = X.shape[1]
        return self

    def transform(self, X):
        return -self.scale * X

    @property
    def bits_per_vector(self):
        return 32 * self.width_


class NoBits:
    """A transformer that cannot tell its storage."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


# --- the registry ---------------------------------------------------------------------

def test_the_paper_experiments_come_first_and_the_modern_ones_follow():
    names = registered_experiments()
    assert names[:7] == EXPERIMENTS
    assert set(names[7:]) >= {"binary", "rq1", "rq2", "rbinary", "float", "pq", "pcapq"}
    for name in names:
        assert get_experiment(name).description


def test_paper_grid_configurations():
    n, context = 16, Context(16, 200, base_seed=7)
    grids = Grid(repeats=2, base_seed=7).params()
    dr1 = get_experiment("dr1").configurations(grids["dr1"], context)
    counts = list(dict.fromkeys(dr_schedule(n)))
    assert dr1 == [{"repeat": r, "kept_dims": k, "seed": 7 + r} for r in (0, 1) for k in counts]
    q2 = get_experiment("q2").configurations({"n_levels": (3, 1, 3)}, context)
    assert q2 == [{"n_levels": 3}, {"n_levels": 1}]  # duplicates are one configuration
    # A calibration applies to its own range only: minmax rows carry neither.
    q1 = get_experiment("q1").configurations(
        {"n_levels": (2,), "range": ("minmax", "quantile", "std"), "quantile": (0.01, 0.1),
         "n_std": (2.0,)}, context)
    assert q1 == [{"n_levels": 2, "range": "minmax"},
                  {"n_levels": 2, "range": "quantile", "quantile": 0.01},
                  {"n_levels": 2, "range": "quantile", "quantile": 0.1},
                  {"n_levels": 2, "range": "std", "n_std": 2.0}]


def test_a_list_of_grids_unites_their_configurations_in_order():
    # Q-2 over the training range at h = 2, 4 and over a quantile range at h = 256 (the
    # demo's "int8 quantile"), which no single product of values gives.
    overrides = [{"n_levels": (2, 4)}, {"n_levels": (256, 2), "range": ("quantile",)}]
    units = plan(["q2"], None, 8, 50, params={"q2": overrides})
    assert [spec.params for unit in units[1:] for spec in unit.specs] == [
        {"n_levels": 2, "range": "minmax"}, {"n_levels": 4, "range": "minmax"},
        {"n_levels": 256, "range": "quantile", "quantile": 0.001},
        {"n_levels": 2, "range": "quantile", "quantile": 0.001}]
    with pytest.raises(ValueError, match="unknown parameter 'levels' of experiment q2"):
        plan(["q2"], None, 8, 50, params={"q2": [{"n_levels": (2,)}, {"levels": (3,)}]})
    with pytest.raises(TypeError, match="non-empty list"):
        plan(["q2"], None, 8, 50, params={"q2": []})


def test_dr2_fc_and_pcapq_share_one_unit_with_one_pca_fit(monkeypatch):
    fits = []
    original = PCADrop.fit
    monkeypatch.setattr(PCADrop, "fit", lambda self, X, y=None: fits.append(1) or
                        original(self, X, y))
    grid = Grid(dr_steps=(10, 20), fc_steps=(5,), fc_levels=(2, 4))
    units = plan(["dr2", "fc", "pcapq"], grid, 16, 120,
                 params={"pcapq": {"n_bits": (4,)}})
    assert [len(u.specs) for u in units] == [1, 2 + 2 + 2]
    features = _features()
    pending = {spec.key for spec in units[1].specs}
    stressed = list(units[1].stress(features.train_x, features.test_x, pending))
    assert len(fits) == 1 and len(stressed) == 6


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "n_levels"]),
                       st.one_of(st.integers(0, 9), st.text("xyz", max_size=3),
                                 st.floats(0.001, 10), st.booleans()), max_size=4))
def test_canonical_params_ignore_key_order_and_round_trip(params):
    text = canonical_params(params)
    assert canonical_params(dict(reversed(list(params.items())))) == text
    assert json.loads(text) == params
    assert " " not in text.replace(" ", "") and ", " not in text


# --- old results files ------------------------------------------------------------------

PAPER_ROWS = st.one_of(
    st.builds(lambda: ("baseline", {})),
    st.builds(lambda r, k, s: ("dr1", {"kept_dims": k, "repeat": r, "seed": s}),
              st.integers(0, 9), st.integers(1, 16), st.integers(0, 99)),
    st.builds(lambda k: ("dr2", {"kept_dims": k}), st.integers(1, 16)),
    st.builds(lambda e, h: (e, {"n_levels": h, "range": "minmax"}),
              st.sampled_from(["q1", "q2"]), st.integers(1, 300)),
    st.builds(lambda k, h: ("fc", {"kept_dims": k, "n_levels": h}), st.integers(1, 16),
              st.integers(1, 300)),
    st.builds(lambda b: ("qb", {"erased_bits": b}), st.integers(0, 64)))


def _typed_row(experiment, params, n=16, score=0.5):
    kept = params.get("kept_dims", n)
    bits = get_experiment(experiment).bits(params, n)
    return {"experiment": experiment, "kept_dims": kept,
            **{c: params.get(c) for c in ("n_levels", "erased_bits", "repeat", "seed")},
            "n_features": n, "kept_fraction": kept / n, "bits_per_vector": bits,
            "compression_rate": 1 - bits / (32 * n), "score": score, "metric": "accuracy",
            "relative_score": score / 0.5, "wall_time_s": 0.25}


def _write_old(path, rows):
    """A results.csv as dnnstress wrote it before the params column, by hand."""
    path.mkdir(exist_ok=True)
    with open(path / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])


@given(st.lists(PAPER_ROWS, min_size=1, max_size=6, unique_by=lambda r: canonical_params(
    {"e": r[0], **r[1]})))
def test_an_old_file_gives_every_paper_row_the_key_it_has_today(tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("old")
    _write_old(folder, [_typed_row(e, p) for e, p in rows])
    read = read_results(folder)
    assert [row["params"] for row in read] == [p for _, p in rows]
    assert [row_key(row) for row in read] == [(e, canonical_params(p)) for e, p in rows]


def test_an_old_file_resumes_keeping_its_rows(tmp_path):
    features = _features()
    grid = Grid(levels=(2, 3), repeats=1, dr_steps=(10,))
    model = tmp_path / "model"
    run_sweep(features, model, experiments="q2,dr1", grid=grid, progress=False)
    clean = read_results(model)
    # The old format of the same sweep, its last row missing: written by hand, with
    # scores we can recognise (0.125: never computed).
    old = tmp_path / "old"
    kept = [{**row, "score": 0.125} if row["experiment"] != "baseline" else row
            for row in clean[:-1]]
    _write_old(old, kept)
    (old / "sweep.json").write_text((model / "sweep.json").read_text())
    before = (old / "results.csv").read_bytes()
    assert [r["params"] for r in read_results(old)] == [r["params"] for r in clean[:-1]]
    sweep = Sweep(features, old, experiments="q2,dr1", grid=grid, progress=False).run()
    assert (sweep.written, sweep.skipped) == (1, len(clean) - 1)
    after = (old / "results.csv").read_text().splitlines()
    assert after[0] == ",".join(header())  # rewritten in today's format
    rows = read_results(old)
    assert [row_key(r) for r in rows] == [row_key(r) for r in clean]
    assert [r["score"] for r in rows[1:-1]] == [0.125] * (len(clean) - 2)
    assert rows[-1]["score"] == clean[-1]["score"]
    # A rerun with nothing to compute leaves a file of the old format as it is.
    again = tmp_path / "again"
    _write_old(again, clean)
    (again / "sweep.json").write_text((model / "sweep.json").read_text())
    before = (again / "results.csv").read_bytes()
    assert Sweep(features, again, experiments="q2,dr1", grid=grid,
                 progress=False).run().written == 0
    assert (again / "results.csv").read_bytes() == before


# --- your own stressor --------------------------------------------------------------------

def test_a_registered_stressor_is_swept_and_resumed(tmp_path, registry):
    register_experiment(Experiment("negate", "x -> -s x", {"scale": (1.0, 2.0)},
                                   make=lambda scale: Negate(scale)))
    features = _features()
    rows = read_results(run_sweep(features, tmp_path, experiments="negate", progress=False))
    assert [(r["experiment"], r["params"]) for r in rows] == [
        ("baseline", {}), ("negate", {"scale": 1.0}), ("negate", {"scale": 2.0})]
    # -s x, L2-normalised, is -x/|x|: the negated SVM scores as the baseline does.
    assert all(r["score"] == pytest.approx(rows[0]["score"], abs=1e-9) for r in rows)
    assert rows[1]["bits_per_vector"] == 32 * 16 and rows[1]["kept_dims"] == 16
    more = Sweep(features, tmp_path, experiments="negate", params={"negate": {
        "scale": (2.0, 3.0)}}, progress=False).run()
    assert (more.written, more.skipped) == (1, 2)


def test_an_unregistered_experiment_object_is_swept_and_its_rows_read(tmp_path, registry):
    mine = Experiment("mine", "unregistered", {"scale": (0.5,)}, make=Negate)
    run_sweep(_features(), tmp_path, experiments=[mine, "q1"], grid=Grid(levels=(2,)),
              progress=False)
    rows = read_results(tmp_path)  # known from sweep.json, though not registered
    assert [r["experiment"] for r in rows] == ["baseline", "q1", "mine"]
    assert "mine" not in registered_experiments()
    (tmp_path / "sweep.json").unlink()
    with pytest.raises(ValueError, match=r"line 4: garbled result row \(unknown experiment "
                                         r"'mine': neither registered .*register_experiment"):
        read_results(tmp_path)


def test_the_docs_example_runs(tmp_path, registry, capsys):
    module = runpy.run_path(str(REPO / "docs/examples/custom_stressor.py"))
    module["main"](tmp_path)
    rows = read_results(tmp_path)
    topk = {r["params"]["k"]: r for r in rows if r["experiment"] == "topk"}
    assert sorted(topk) == [2, 4, 8, 16]
    assert [topk[k]["bits_per_vector"] for k in (2, 16)] == [2 * 37, 16 * 37]
    assert topk[16]["relative_score"] > topk[2]["relative_score"]
    assert "topk     {'k': 2}" in capsys.readouterr().out


def test_a_declared_accounting_that_the_stressor_breaks_is_an_error(tmp_path, registry):
    lying = Experiment("lying", "", {"scale": (1.0,)}, make=Negate, bits=lambda p, n: n)
    with pytest.raises(RuntimeError, match=r"lying \{\"scale\":1.0\}: its stressor stores "
                                           r"512 bits per vector, its declared accounting 16"):
        run_sweep(_features(), tmp_path, experiments=[lying], progress=False)


# --- the modern entries against hand-built stressors -------------------------------------

def _reference(experiment, params):
    """The stressor a configuration should be, built by hand from the stress classes."""
    n_levels, threshold = params.get("n_levels"), params.get("threshold")
    calibrated = {name: params[name] for name in ("range", "quantile", "n_std")
                  if name in params}
    return {
        "q1": lambda: UniformQuantizer(n_levels, False, **calibrated),
        "q2": lambda: UniformQuantizer(n_levels, True, **calibrated),
        "binary": lambda: BinaryQuantizer(threshold),
        "rq1": lambda: make_rotated(UniformQuantizer(n_levels, **calibrated),
                                    params.get("seed")),
        "rq2": lambda: make_rotated(UniformQuantizer(n_levels, True, **calibrated),
                                    params.get("seed")),
        "rbinary": lambda: make_rotated(BinaryQuantizer(threshold), params.get("seed")),
        "float": lambda: FloatCast(params.get("format"), saturate=True),
        "pq": lambda: ProductQuantizer(params.get("n_subvectors"), params.get("n_bits")),
        "pcapq": lambda: make_pca_pq(params.get("kept_dims"), params.get("n_subvectors"),
                                     params.get("n_bits")),
        "fc": lambda: make_fc(params.get("kept_dims"), n_levels),
    }[experiment]()


@pytest.mark.parametrize("d", [16, 12])  # Hadamard, and QR rotations
def test_every_modern_configuration_is_its_stressor(d):
    pytest.importorskip("faiss")
    features = _features(d=d)
    names = ["q1", "q2", "binary", "rq1", "rq2", "rbinary", "float", "pq", "pcapq", "fc"]
    calibrated = {"n_levels": (4,), "range": ("minmax", "quantile", "std"),
                  "quantile": (0.05,), "n_std": (1.5,)}
    units = plan(names, Grid(fc_steps=(5,), fc_levels=(3,)), d, features.train_x.shape[0],
                 params={"pq": {"n_bits": (4,)}, "pcapq": {"n_bits": (4,)}, "q1": calibrated,
                         "q2": calibrated, "rq2": calibrated}, base_seed=3)
    seen = set()
    for unit in units[1:]:
        pending = {spec.key for spec in unit.specs}
        for stressed in unit.stress(features.train_x, features.test_x, pending):
            spec = stressed.spec
            seen.add(spec.experiment)
            reference = _reference(spec.experiment, spec.params).fit(features.train_x)
            for ours, split in ((stressed.train_x, features.train_x),
                                (stressed.test_x, features.test_x)):
                np.testing.assert_allclose(ours, reference.transform(split), rtol=1e-6,
                                           atol=1e-6, err_msg=str(spec))
            assert stressed.bits_per_vector == reference.bits_per_vector
            if "seed" in spec.params:
                assert spec.params["seed"] == 3 + spec.params["repeat"]
    assert seen == set(names)


def test_calibrated_q2_rows_resume_and_old_q2_rows_keep_their_keys(tmp_path, capsys):
    features = _features()
    path = features.save(tmp_path / "f.npz")
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "o"), "--experiments",
                     "q2", "--levels", "4", "--param", "q2.range=minmax,quantile,std",
                     "--param", "q2.quantile=0.01,0.1", "--quiet"]) == 0
    rows = read_results(tmp_path / "o")
    assert [canonical_params(r["params"]) for r in rows[1:]] == [
        '{"n_levels":4,"range":"minmax"}', '{"n_levels":4,"quantile":0.01,"range":"quantile"}',
        '{"n_levels":4,"quantile":0.1,"range":"quantile"}',
        '{"n_levels":4,"n_std":3.0,"range":"std"}']
    # The same configuration as the paper's Q-2 at h = 4 (the default range).
    paper = read_results(run_sweep(features, tmp_path / "p", experiments="q2",
                                   grid=Grid(levels=(4,)), progress=False))
    assert row_key(paper[1]) == row_key(rows[1]) and paper[1]["score"] == rows[1]["score"]


def test_modern_rows_follow_their_accounting(tmp_path):
    pytest.importorskip("faiss")
    rows = read_results(run_sweep(
        _features(), tmp_path, experiments="binary,rq2,float,pq", progress=False,
        params={"pq": {"n_bits": (4,), "n_subvectors": (4,)}, "rq2": {"n_levels": (16,)},
                "float": {"format": ("bfloat16", "float8_e4m3")}}))
    bits = {(r["experiment"], canonical_params(r["params"])): r["bits_per_vector"]
            for r in rows}
    assert bits == {("baseline", "{}"): 512, ("binary", '{"threshold":"zero"}'): 16,
                    ("binary", '{"threshold":"mean"}'): 16,
                    ("binary", '{"threshold":"median"}'): 16,
                    ("rq2", '{"n_levels":16,"range":"minmax","repeat":0,"seed":0}'): 64,
                    ("float", '{"format":"bfloat16"}'): 256,
                    ("float", '{"format":"float8_e4m3"}'): 128,
                    ("pq", '{"n_bits":4,"n_subvectors":4}'): 16}
    assert all(math.isfinite(r["score"]) for r in rows)
    rq2 = next(r for r in rows if r["experiment"] == "rq2")
    assert (rq2["n_levels"], rq2["repeat"], rq2["seed"]) == (16, 0, 0)


# --- errors -------------------------------------------------------------------------------

def test_unknown_names_list_the_valid_ones(tmp_path):
    features = _features()
    with pytest.raises(ValueError, match="unknown experiment.*q9; choose from baseline, "
                                         "dr1, .*binary"):
        run_sweep(features, tmp_path, experiments="q1,q9")
    with pytest.raises(ValueError, match="unknown parameter 'thresh' of experiment binary; "
                                         "its parameters: threshold"):
        run_sweep(features, tmp_path, experiments="binary",
                  params={"binary": {"thresh": ("zero",)}})
    with pytest.raises(ValueError, match="params given for experiment 'rq2', which this "
                                         "sweep does not run; its experiments: baseline, "
                                         "binary"):
        run_sweep(features, tmp_path, experiments="binary", params={"rq2": {"n_levels": 2}})
    with pytest.raises(ValueError, match="needs at least one value"):
        run_sweep(features, tmp_path, experiments="binary", params={"binary": {
            "threshold": ()}})
    assert not tmp_path.joinpath("results.csv").exists()


def test_registration_refuses_what_a_sweep_could_not_account(registry):
    with pytest.raises(TypeError, match="its stressor NoBits has no bits_per_vector; give "
                                        "the class a bits_per_vector property"):
        register_experiment(Experiment("nobits", "", make=NoBits))
    with pytest.raises(TypeError, match="its stressor object has no fit method"):
        register_experiment(Experiment("nothing", "", make=object))
    with pytest.raises(ValueError, match="already registered; pass replace=True"):
        register_experiment(Experiment("q1", "", make=Negate))
    register_experiment(Experiment("q1", "replaced", make=Negate), replace=True)
    assert get_experiment("q1").description == "replaced"
    with pytest.raises(ValueError, match="must be lower-case"):
        register_experiment(Experiment("My.Stress", "", make=Negate))
    with pytest.raises(ValueError, match="needs a non-empty tuple"):
        register_experiment(Experiment("bad", "", {"k": "abc"}, make=Negate))
    with pytest.raises(ValueError, match="needs make"):
        register_experiment(Experiment("bad", ""))


def test_a_faiss_experiment_without_faiss_says_how_to_install_it(tmp_path, monkeypatch,
                                                                  capsys):
    real = experiments.importlib.util.find_spec
    monkeypatch.setattr(experiments.importlib.util, "find_spec",
                        lambda name: None if name == "faiss" else real(name))
    with pytest.raises(RuntimeError, match=r"experiment pq needs faiss: pip install "
                                          r"faiss-cpu \(or pip install 'dnnstress\[peers\]'\)"):
        run_sweep(_features(), tmp_path / "out", experiments="pq")
    assert not (tmp_path / "out").exists()
    path = _features().save(tmp_path / "f.npz")
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "out"), "--experiments",
                     "pcapq"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs faiss: pip install faiss-cpu" in err


def test_rows_whose_params_disagree_with_their_typed_columns_are_refused(tmp_path):
    run_sweep(_features(), tmp_path, experiments="q2", grid=Grid(levels=(2,)),
              progress=False)
    results = tmp_path / "results.csv"
    text = results.read_text()
    cell = '"{""n_levels"":2,""range"":""minmax""}"'
    assert cell in text
    for new, problem in [
            ('"{""n_levels"":3,""range"":""minmax""}"', "n_levels is 2, its params say 3"),
            ('"{""n_levels"":2,""x"":1}"', "params has x, not parameters of q2"),
            ('"[2]"', "params '[2]' is not a JSON object")]:
        results.write_text(text.replace(cell, new))
        expected = re.escape(f"line 3: garbled result row ({problem}")
        with pytest.raises(ValueError, match=expected):
            read_results(tmp_path)


# --- the command line ---------------------------------------------------------------------

def test_cli_param_and_list_experiments(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["sweep", "--list-experiments"])
    assert exited.value.code == 0
    listing = capsys.readouterr().out
    assert "binary    sign quantization" in listing
    assert "            threshold = zero,mean,median" in listing
    assert "            n_levels = 1-30" in listing and "(needs faiss)" in listing
    path = _features().save(tmp_path / "f.npz")
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "o"), "--experiments",
                     "binary,rq2", "--param", "binary.threshold=zero,mean", "--param",
                     "rq2.n_levels=2-4", "--quiet"]) == 0
    rows = read_results(tmp_path / "o")
    assert [(r["experiment"], r["params"].get("threshold", r["n_levels"]))
            for r in rows[1:]] == [("binary", "zero"), ("binary", "mean"), ("rq2", 2),
                                   ("rq2", 3), ("rq2", 4)]
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "o"), "--param",
                     "binary.threshold=zero"]) == 1  # binary is not among the experiments
    assert "which this sweep does not run" in capsys.readouterr().err


@pytest.mark.parametrize("argument, problem", [
    ("binary", "expected EXPERIMENT.NAME=VALUES"),
    ("nope.x=1", "unknown experiment 'nope'; registered experiments: baseline"),
    ("binary.level=1", "unknown parameter 'level' of experiment binary"),
    ("rq2.n_levels=a", "cannot read 'a'")])
def test_cli_bad_param_is_one_line(tmp_path, capsys, argument, problem):
    with pytest.raises(SystemExit):
        cli.main(["sweep", "f.npz", "--out", str(tmp_path), "--param", argument])
    assert problem in capsys.readouterr().err


def test_units_can_travel_to_another_process():
    cloudpickle = pytest.importorskip("cloudpickle")
    with pytest.warns(UserWarning, match=r"PQ: n bits \[8\] left out: 2\*\*n_bits "
                                         r"centroids need as many training vectors"):
        units = plan(registered_experiments(), Grid(levels=(2,)), 16, 200)
    features = _features()
    for unit in (units[1], units[-1]):
        copy = cloudpickle.loads(cloudpickle.dumps(unit))
        pending = {spec.key for spec in unit.specs[:1]}
        (ours,) = unit.stress(features.train_x, features.test_x, pending)
        (theirs,) = copy.stress(features.train_x, features.test_x, pending)
        np.testing.assert_array_equal(ours.train_x, theirs.train_x)
    assert sys.modules["dnnstress.sweep.experiments"] is experiments


@pytest.mark.parametrize("column, value, problem", [
    ("repeat", None, "repeat is empty in a dr1 row"),
    ("n_levels", 4, "n_levels is '4' in a dr1 row"),
    ("bits_per_vector", 7, "bits_per_vector 7 and compression_rate")])
def test_a_garbled_old_row_is_refused(tmp_path, column, value, problem):
    row = _typed_row("dr1", {"kept_dims": 4, "repeat": 1, "seed": 1})
    _write_old(tmp_path, [_typed_row("baseline", {}), {**row, column: value}])
    with pytest.raises(ValueError, match=re.escape(f"line 3: garbled result row ({problem}")):
        read_results(tmp_path)


def test_a_row_without_a_later_parameter_takes_its_default(tmp_path, registry):
    features = _features()
    grid = {"scale": (1.0,)}
    register_experiment(Experiment("grows", "", grid, make=Negate))
    run_sweep(features, tmp_path, experiments="grows", progress=False)
    # The experiment gains a parameter whose default is what its rows were computed with.
    register_experiment(Experiment("grows", "", {**grid, "mode": ("plain", "other")},
                                   make=lambda scale, mode: Negate(scale)), replace=True)
    assert read_results(tmp_path)[1]["params"] == {"mode": "plain", "scale": 1.0}
    sweep = Sweep(features, tmp_path, experiments="grows", progress=False).run()
    assert (sweep.written, sweep.skipped) == (1, 2)


@given(st.sampled_from(["binary", "rq1", "rq2", "rbinary", "float", "pq", "q1", "fc", "dr1"]),
       st.data())
def test_every_configuration_of_a_grid_is_one_distinct_row_key(name, data):
    experiment = get_experiment(name)
    context = Context(16, 300, base_seed=data.draw(st.integers(0, 5)))
    grid = {}
    for param, values in experiment.params.items():
        pool = values.values(16) if isinstance(values, PerWidth) else values
        if param in ("n_levels", "repeat"):
            pool = tuple(range(1, 6))
        grid[param] = tuple(data.draw(st.lists(st.sampled_from(pool), min_size=1,
                                               max_size=3)))
    configurations = experiment.configurations(grid, context)
    if experiment.canonical is dict:  # every combination applies
        assert len(configurations) == math.prod(len(set(v)) for v in grid.values())
    keys = {canonical_params(p) for p in configurations}
    assert len(keys) == len(configurations)
    for params in configurations:
        assert set(params) <= set(experiment.param_names)
        assert experiment.canonical(params) == params
        if "seed" in params:
            assert params["seed"] == context.base_seed + params["repeat"]
