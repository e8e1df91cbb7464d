"""dnnstress bench memory: both cases run in their own process and report a multiple."""

import json

import pytest

from dnnstress.cli import main


def test_bench_memory_reports_peak_memory_of_a_sweep_and_a_pca_fit(tmp_path):
    out = tmp_path / "memory.json"
    assert main(["bench", "memory", "--scale", "0.01", "--dims", "64", "--device", "cpu",
                 "--quiet", "--json", str(out)]) == 0
    cases = {case["case"]: case for case in json.loads(out.read_text())["cases"]}
    assert set(cases) == {"sweep", "pca"}
    assert cases["sweep"]["shape"] == "train 600x64, test 100x64 float32"
    assert cases["pca"]["shape"] == "50x502 float32, PCADrop(25)"  # DR-2's largest count
    for case in cases.values():
        assert case["data MB"] > 0 and case["peak MB"] > 0 and case["s"] > 0
        assert case["x data"] == pytest.approx(case["peak MB"] / case["data MB"])


def test_bench_memory_runs_one_case_when_asked(tmp_path):
    out = tmp_path / "memory.json"
    assert main(["bench", "memory", "--case", "pca", "--scale", "0.01", "--device", "cpu",
                 "--quiet", "--json", str(out)]) == 0
    assert [case["case"] for case in json.loads(out.read_text())["cases"]] == ["pca"]
