"""`dnnstress bench extract` on the tiny four-output network: it times one pass for several
layers against one pass per layer only after checking that both give the same features."""

import argparse

import numpy as np
import pytest

from dnnstress.benchmarks import extract as bench
from test_extract_layers import FOUR


@pytest.fixture
def args(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNSTRESS_CACHE", str(tmp_path / "cache"))  # synthetic images
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    arguments = parser.parse_args(["--model", FOUR.name, "--images", "10", "--batch-size",
                                   "4", "--rounds", "1", "--layers", "flat,means,mix"])
    arguments.device = "cpu"
    return arguments


def test_bench_extract_reports_the_one_pass_fraction(args, capsys):
    result = bench.run(args)
    assert result["layers"] == ["flat", "means", "mix"] and result["source"] == "synthetic"
    cpu = result["devices"]["cpu"]
    assert cpu["one_pass_fraction"] == pytest.approx(cpu["one_pass_s"]
                                                     / cpu["per_layer_passes_s"])
    out = capsys.readouterr().out
    assert "one pass for flat, means, mix takes" in out and "3 layers in one pass" in out


def test_bench_extract_refuses_to_time_passes_that_differ(args, monkeypatch):
    extract_split = bench.extract_split

    def off_by_one_in_mix(split, model, layer, *rest, **options):
        features, kept = extract_split(split, model, layer, *rest, **options)
        return (features + 1 if layer.name == "mix" else features), kept

    monkeypatch.setattr(bench, "extract_split", off_by_one_in_mix)
    with pytest.raises(RuntimeError, match="layer mix: one pass and its own pass differ"):
        bench.run(args)


def test_bench_extract_layers_none_skips_the_comparison(args):
    args.layers = "none"
    result = bench.run(args)
    assert result["layers"] == [] and "one_pass_s" not in result["devices"]["cpu"]
    assert np.isfinite(result["devices"]["cpu"]["fraction_of_bare"])
