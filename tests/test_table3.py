"""Table 3 and the Fig. 5 marks, reproduced from the authors' published CSVs.

Every published cell we can reproduce is asserted; the ones we cannot (BossaNova) are
asserted as what the CSVs actually give, with the reason in a comment.
"""

import csv

import pytest

from dnnstress.authors import default_authors_dir, list_tables, load_authors_rows
from dnnstress.stress.accounting import bits_for_levels, bits_per_vector, compression_rate
from dnnstress.table3 import Table3, best_compression, minimum_representation, \
    nominal_kept_fraction, table3

@pytest.fixture(scope="module")
def vgg():
    return load_authors_rows("VGG-M", "VOC 2007")


def _value(rows, experiment, loss, baseline=None):
    return minimum_representation(rows, experiment, loss, baseline).value


# --- the authors' tables as rows ------------------------------------------------------

def test_authors_rows_match_the_papers_quoted_numbers(vgg):
    baseline = vgg[0]
    assert baseline["experiment"] == "baseline"
    assert baseline["score"] == pytest.approx(0.76952192)
    assert baseline["n_features"] == 4096
    by_key = {(r["experiment"], r["kept_dims"], r["n_levels"]): r for r in vgg}
    # Sec. 3: "DR-2 held 97.95 % of the mAP with 95 % of dimensions removed, while DR-1
    # could only keep 89.16 %".
    assert round(100 * by_key["dr2", 204, None]["relative_score"], 2) == 97.95
    assert round(100 * by_key["dr1", 204, None]["relative_score"], 2) == 89.16
    assert by_key["dr1", 204, None]["score_std"] == pytest.approx(0.00350372)
    # Reference README: Q-1 at h = 2 / 3 / 4 / 8 gives 37.6 / 68.7 / 74.5 / 77.0 mAP.
    assert [round(100 * by_key["q1", 4096, h]["score"], 1) for h in (2, 3, 4, 8)] == \
        [37.6, 68.7, 74.5, 77.0]
    headline = by_key["fc", 409, 27]
    assert headline["bits_per_vector"] == 409 * 5
    assert headline["compression_rate"] == pytest.approx(compression_rate(4096, 2045))


def test_authors_rows_for_other_models_and_layers():
    google = load_authors_rows("GoogLeNet", "VOC 2007")
    assert google[0]["n_features"] == 50176
    assert google[0]["score"] == pytest.approx(0.80584842)
    # Sec. 3: GoogLeNet loses 4.74 % of its mAP on average with 95 % of dimensions removed.
    first = min((r for r in google if r["experiment"] == "dr1"), key=lambda r: r["kept_dims"])
    assert round(100 * (1 - first["relative_score"]), 2) == 4.74
    # Q-B's file names the model "GOOG"; it is the same model.
    assert {r["experiment"] for r in google} == {"baseline", "dr1", "qb"}
    fc8 = load_authors_rows("VGG-M", "VOC 2007", layer=20)
    assert fc8[0]["n_features"] == 1000
    assert fc8[0]["score"] == pytest.approx(0.75518425)
    assert {r["layer"] for r in fc8} == {20}
    assert len(list_tables()) == 18


def test_missing_authors_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_authors_rows(path=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no authors' tables"):
        load_authors_rows(path=tmp_path)


# --- Table 3 --------------------------------------------------------------------------

@pytest.mark.parametrize("experiment, loss, expected", [
    ("dr1", 0.02, 0.25), ("dr1", 0.05, 0.10), ("dr2", 0.01, 0.10),
    ("q1", 0.01, 6), ("q1", 0.04, 4), ("q2", 0.01, 3), ("q2", 0.03, 2),
])
def test_table3_vgg_m_row(vgg, experiment, loss, expected):
    assert _value(vgg, experiment, loss) == expected


def test_table3_googlenet_row():
    google = load_authors_rows("GoogLeNet", "VOC 2007")
    assert _value(google, "dr1", 0.02) == 0.10  # passes by 1e-6 relative: 78.973248 vs 78.973145
    assert _value(google, "dr1", 0.05) == 0.05


def test_table3_needs_the_unrounded_baseline(vgg):
    # DR-1 keeping 20 % scores 75.413120: 0.98 * 76.952192 = 75.41315 fails (-> 25 %, as
    # published) but 0.98 * 76.95 (Table 2, rounded) = 75.411 passes (-> 20 %).  The
    # paper's tables were therefore computed against the unrounded baseline.
    assert _value(vgg, "dr1", 0.02, baseline=0.7695) == 0.20
    assert _value(vgg, "dr1", 0.02) == 0.25


def test_table3_bossanova_row_is_not_reproducible():
    bossa = load_authors_rows("BossaNova", "VOC 2007")
    # The CSV's full-dimensional point is Table 2's 51.02 mAP, not Table 3's 39.59.
    assert bossa[0]["score"] == pytest.approx(0.51017362)
    # Published: DR-1 2 % -> 50 %, 5 % -> 25 %.  The CSV gives 35 % and 15 %, and no single
    # baseline gives both published cells (50 % at 2 % needs a baseline in (51.49, 51.62),
    # 25 % at 5 % one in (51.99, 52.42)); Table 3's 39.59 would let every point pass (5 %).
    assert _value(bossa, "dr1", 0.02) == 0.35
    assert _value(bossa, "dr1", 0.05) == 0.15
    assert _value(bossa, "dr1", 0.02, baseline=0.3959) == 0.05
    # The published pair is the CSV's 1 % and 3 % cells: the columns look shifted.
    assert (_value(bossa, "dr1", 0.01), _value(bossa, "dr1", 0.03)) == (0.50, 0.25)


def test_vanilla_scores_claim_holds_within_a_tenth_of_a_percent(vgg):
    # Sec. 3: "Q-1 kept vanilla scores with 7 values, while Q-2 only needed 4".  At 0 %
    # loss Q-1 gives 11 (h = 10 dips to 76.9488 < 76.9522); within 0.1 % both match.
    assert _value(vgg, "q1", 0.001) == 7
    assert _value(vgg, "q2", 0.001) == 4
    assert _value(vgg, "q2", 0.0) == 4
    assert _value(vgg, "q1", 0.0) == 11


def _smallest_passing(rows, experiment, loss):
    """The other reading of "minimum": the smallest point that passes on its own."""
    baseline = rows[0]["score"]
    parameter = "n_levels" if experiment.startswith("q") else "kept_dims"
    points = sorted((r for r in rows if r["experiment"] == experiment),
                    key=lambda r: r[parameter])
    return next(nominal_kept_fraction(r["kept_dims"], r["n_features"])
                if parameter == "kept_dims" else r["n_levels"]
                for r in points if r["score"] >= (1 - loss) * baseline)


def test_both_readings_of_minimum_agree_on_every_published_cell(vgg):
    cells = [("dr1", 0.02), ("dr1", 0.05), ("dr2", 0.01), ("q1", 0.01), ("q1", 0.04),
             ("q2", 0.01), ("q2", 0.03)]
    for experiment, loss in cells:
        assert _smallest_passing(vgg, experiment, loss) == _value(vgg, experiment, loss)
    # They differ where a curve dips after passing: DR-2 within 0.1 % passes at 35 %
    # (76.8969) and fails at 40 % (76.8333); ours requires every larger share to pass.
    assert _smallest_passing(vgg, "dr2", 0.001) == 0.35
    assert _value(vgg, "dr2", 0.001) == 0.45


def _row(experiment, score, n=100, kept=None, h=None, erased=None, repeat=None):
    kept = n if kept is None else kept
    if erased is not None:
        bits = kept * (64 - erased)
    elif h is not None:
        bits = kept * bits_for_levels(h)
    else:
        bits = kept * 32
    return {"experiment": experiment, "kept_dims": kept, "n_levels": h, "erased_bits": erased,
            "repeat": repeat, "n_features": n, "compression_rate": compression_rate(n, bits),
            "score": score, "metric": "accuracy"}


def test_minimum_representation_on_hand_made_rows():
    rows = [_row("baseline", 0.80)]
    # DR-1 repeats are averaged: 10 % of dims has mean 0.785 (passes 2 %: >= 0.784) although
    # one repeat alone (0.780) fails; 5 % (0.70) fails.
    rows += [_row("dr1", s, kept=10, repeat=i) for i, s in enumerate((0.780, 0.790))]
    rows += [_row("dr1", 0.70, kept=5), _row("dr1", 0.80, kept=100)]
    assert _value(rows, "dr1", 0.02) == 0.10
    assert _value(rows, "dr1", 0.01) == 1.0
    # Q: h = 3 passes but h = 4 dips below; the cell is h = 5, not 3.
    rows += [_row("q1", s, h=h) for h, s in ((2, 0.5), (3, 0.79), (4, 0.70), (5, 0.795))]
    assert _value(rows, "q1", 0.02) == 5
    assert minimum_representation(rows, "q1", 0.0) is None
    # Q-B: more erased bits is smaller; 50 erased passes, 55 fails.
    rows += [_row("qb", s, erased=e) for e, s in ((0, 0.80), (50, 0.80), (55, 0.1))]
    cell = minimum_representation(rows, "qb", 0.01)
    kept, whole = bits_per_vector(1, erased_bits=50), bits_per_vector(1, erased_bits=0)
    assert (cell.value, cell.erased_bits, cell.label) == (kept, 50, f"{kept} of {whole} bits")


def test_best_compression_on_hand_made_rows():
    rows = [_row("baseline", 0.80)]
    rows += [_row("fc", 0.79, kept=10, h=20), _row("fc", 0.795, kept=10, h=27),  # 5 bits
             _row("fc", 0.70, kept=10, h=4), _row("fc", 0.799, kept=50, h=8)]
    best = best_compression(rows, "fc", 0.02)
    # 10 dims x 5 bits is the highest compression within 2 %; of its two h, the better.
    assert (best.kept_dims, best.n_levels) == (10, 27)
    assert best.compression_rate == pytest.approx(1 - 50 / 3200)
    assert best.relative_score == pytest.approx(0.795 / 0.80)
    assert best.label == "98.4 % (10 of 100 dims x 5 bits)"
    assert best_compression(rows, "fc", 0.002).kept_dims == 50
    assert best_compression([_row("baseline", 0.8), _row("fc", 0.1, kept=10, h=2)],
                            "fc", 0.05) is None


def test_bad_input_is_a_clear_error():
    rows = [_row("baseline", 0.8), _row("q1", 0.7, h=2)]
    with pytest.raises(ValueError, match="experiment must be one of"):
        minimum_representation(rows, "fc", 0.01)
    with pytest.raises(ValueError, match="no rows for experiment 'dr1'"):
        minimum_representation(rows, "dr1", 0.01)
    with pytest.raises(ValueError, match="max_loss"):
        minimum_representation(rows, "q1", 1.5)
    with pytest.raises(ValueError, match="baseline"):
        minimum_representation(rows[1:], "q1", 0.01)
    with pytest.raises(ValueError, match="positive"):
        best_compression(rows, "q1", 0.01, baseline=0.0)


def test_fig5_marks_are_the_best_compression_within_half_one_and_three_percent(vgg):
    # Fig. 5: circle, square, cross at 99.1 %, 98.4 %, 96.9 % compression keeping 97.8 %,
    # 99.1 % and 99.6 % of the score.  They are the best within 3 %, 1 % and 0.5 % loss.
    expected = {0.03: (0.9906, 97.8, 409, 3), 0.01: (0.9844, 99.1, 409, 5),
                0.005: (0.9688, 99.6, 819, 5)}
    for loss, (rate, kept_score, dims, bits) in expected.items():
        cell = best_compression(vgg, "fc", loss)
        assert round(cell.compression_rate, 4) == rate
        assert round(100 * cell.relative_score, 1) == kept_score
        assert (cell.kept_dims, bits_for_levels(cell.n_levels)) == (dims, bits)
    # The headline: h = 27 (76.28 mAP), 0.88 % of the score lost.
    headline = best_compression(vgg, "fc", 0.01)
    assert headline.n_levels == 27
    assert round(100 * (1 - headline.relative_score), 2) == 0.88
    # Within 2 % the best is 409 dims x 4 bits (98.75 %): not one of the paper's marks.
    assert round(best_compression(vgg, "fc", 0.02).compression_rate, 4) == 0.9875


def test_table3_structure_and_writers(vgg, tmp_path):
    table = table3(vgg, losses=(0.01, 0.02))
    assert isinstance(table, Table3)
    assert table.experiments == ("dr1", "dr2", "q1", "q2", "qb", "fc")
    assert table.cells["dr1", 0.02].label == "25 %"
    assert table.cells["fc", 0.01].label == "98.4 % (409 of 4096 dims x 5 bits)"
    markdown = table.to_markdown()
    assert "| DR-1 (random) | 35 % | 25 % |" in markdown
    assert "| Q-2 (per dim.) | 3 values | 3 values |" in markdown
    table.write_csv(tmp_path / "t.csv")
    with open(tmp_path / "t.csv", newline="") as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == 12
    q1 = next(r for r in records if r["experiment"] == "q1" and r["max_loss"] == "0.01")
    assert (q1["label"], q1["n_levels"], q1["metric"]) == ("6 values", "6", "map_voc07_11pt")


def test_nominal_kept_fraction_follows_the_dr_schedule():
    assert nominal_kept_fraction(2047, 4096) == 0.5  # the schedule's floor, labelled 50 %
    assert nominal_kept_fraction(204, 4096) == 0.05
    assert nominal_kept_fraction(2048, 4096) == 0.5  # off the DR schedule (FC's grid)
    assert nominal_kept_fraction(1000, 4096) == 1000 / 4096


def test_authors_folder_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNSTRESS_AUTHORS_RESULTS", str(tmp_path))
    assert default_authors_dir() == tmp_path
    assert list_tables() == []
