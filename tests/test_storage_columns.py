"""The storage columns of a sweep's rows: the codes' entropy and the packed bytes (issue 9
section 4), against hand-built quantizers and a naive entropy; older files still load."""

import csv
import math

import numpy as np
import pytest

from dnnstress.frontier import rate_score_frontier
from dnnstress.stress import BinaryQuantizer, UniformQuantizer
from dnnstress.sweep import COLUMNS, Grid, Sweep, read_results, run_sweep
from dnnstress.sweep.experiments import canonical_params
from dnnstress.sweep.store import row_key
from test_registry import _features

D = 13  # not a multiple of 8: packing rounds up


def _naive_entropy(codes):
    """Sum over columns of -sum p log2 p, p the frequencies of the column's values."""
    total = 0.0
    for column in np.asarray(codes).T:
        p = np.unique(column, return_counts=True)[1] / len(column)
        total -= float((p * np.log2(p)).sum())
    return total


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    features = _features(n_train=90, n_test=40, d=D)
    out = tmp_path_factory.mktemp("storage")
    run_sweep(features, out, experiments="q2,binary", grid=Grid(levels=(3, 5)),
              progress=False)
    return features, out, read_results(out)


def test_q2_rows_carry_the_test_codes_entropy_and_packed_bytes(swept):
    features, _, rows = swept
    q2 = {row["n_levels"]: row for row in rows if row["experiment"] == "q2"}
    assert sorted(q2) == [3, 5]
    for h, row in q2.items():
        quantizer = UniformQuantizer(h, per_dimension=True).fit(features.train_x)
        codes = quantizer.encode(features.test_x)
        assert row["entropy_bits_per_vector"] == pytest.approx(_naive_entropy(codes),
                                                               rel=1e-12)
        bits = math.ceil(math.log2(h))
        assert row["packed_bytes_per_vector"] == math.ceil(D * bits / 8)
        assert row["entropy_bits_per_vector"] <= row["bits_per_vector"] == D * bits


def test_binary_rows_and_the_baseline(swept):
    features, _, rows = swept
    binary = [row for row in rows if row["experiment"] == "binary"]
    assert binary
    for row in binary:
        quantizer = BinaryQuantizer(**row["params"]).fit(features.train_x)
        codes = quantizer.encode(features.test_x)
        assert row["entropy_bits_per_vector"] == pytest.approx(_naive_entropy(codes))
        assert row["packed_bytes_per_vector"] == math.ceil(D / 8)
    baseline, = [row for row in rows if row["experiment"] == "baseline"]
    assert baseline["entropy_bits_per_vector"] is None  # no codes
    assert baseline["packed_bytes_per_vector"] == 4 * D  # float32 values, unpacked


def _write_without_storage(path, rows):
    """A results.csv as dnnstress wrote it with params but before the storage columns."""
    path.mkdir()
    columns = (*COLUMNS, "params")
    with open(path / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([canonical_params(row[c]) if c == "params" else
                             "" if row[c] is None else repr(row[c])
                             if isinstance(row[c], float) else row[c] for c in columns])


def test_a_file_without_storage_columns_loads_and_resumes(swept, tmp_path):
    features, model, clean = swept
    old = tmp_path / "old"
    _write_without_storage(old, clean[:-1])
    (old / "sweep.json").write_text((model / "sweep.json").read_text())
    read = read_results(old)
    assert [row_key(r) for r in read] == [row_key(r) for r in clean[:-1]]
    assert {(r["entropy_bits_per_vector"], r["packed_bytes_per_vector"])
            for r in read} == {(None, None)}
    sweep = Sweep(features, old, experiments="q2,binary", grid=Grid(levels=(3, 5)),
                  progress=False).run()
    assert (sweep.written, sweep.skipped) == (1, len(clean) - 1)
    header = (old / "results.csv").read_text().splitlines()[0].split(",")
    assert header[-3:] == ["params", "entropy_bits_per_vector", "packed_bytes_per_vector"]
    rows = read_results(old)
    assert [row_key(r) for r in rows] == [row_key(r) for r in clean]
    assert [r["score"] for r in rows] == [r["score"] for r in clean]
    assert rows[0]["packed_bytes_per_vector"] is None  # an old row stays without them
    assert (rows[-1]["entropy_bits_per_vector"], rows[-1]["packed_bytes_per_vector"]) == (
        clean[-1]["entropy_bits_per_vector"], clean[-1]["packed_bytes_per_vector"])


@pytest.mark.parametrize("cell, problem", [
    ("1", "packed_bytes_per_vector 1 cannot hold its bits_per_vector 26"),
    ("1.5", "packed_bytes_per_vector '1.5' is not an integer"),
])
def test_a_bad_packed_size_is_refused_naming_the_line(swept, tmp_path, cell, problem):
    _, model, _ = swept
    lines = (model / "results.csv").read_text().splitlines()
    row = [i for i, line in enumerate(lines) if line.startswith("q2,13,3,")][0]
    lines[row] = lines[row].rsplit(",", 1)[0] + "," + cell
    (tmp_path / "results.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "sweep.json").write_text((model / "sweep.json").read_text())
    with pytest.raises(ValueError, match=rf"line {row + 1}: garbled result row "
                                         rf"\({problem}\)"):
        read_results(tmp_path)


def test_the_frontier_table_shows_the_storage_where_rows_have_it(swept):
    _, _, rows = swept
    frontier = rate_score_frontier(rows)
    q2 = [p for p in frontier.configurations if p.experiment == "q2"][0]
    row = [r for r in rows if r["experiment"] == "q2" and r["n_levels"] == 3][0]
    assert q2.record()["entropy_bits_per_vector"] == row["entropy_bits_per_vector"]
    assert q2.record()["packed_bytes_per_vector"] == 4
    table = frontier.to_markdown()
    assert "| entropy bits | packed bytes |" in table
    assert f"| – | {4 * D} |" in table  # the baseline: no codes
    older = [{k: v for k, v in r.items() if k not in ("entropy_bits_per_vector",
                                                      "packed_bytes_per_vector")}
             for r in rows]
    assert "entropy bits" not in rate_score_frontier(older).to_markdown()
