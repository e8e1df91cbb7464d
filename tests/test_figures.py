"""The figures: what they plot (checked on the Figure objects) and that they save as PNG."""

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from dnnstress.authors import load_authors_rows
from dnnstress.figures import fig2_dimensionality, fig4_quantization, \
    fig5_feature_compression, fig_qb, save_figure
from dnnstress.stress.accounting import bits_for_levels, bits_per_vector, compression_rate

N = 100
BASELINE = 0.80
QB_SCORES = {0: 0.80, 50: 0.80, 56: 0.10}


def _row(experiment, score, kept=N, h=None, erased=None, repeat=None):
    bits = kept * (64 - erased if erased is not None
                   else bits_for_levels(h) if h is not None else 32)
    return {"experiment": experiment, "kept_dims": kept, "n_levels": h, "erased_bits": erased,
            "repeat": repeat, "n_features": N, "compression_rate": compression_rate(N, bits),
            "score": score, "metric": "accuracy"}


@pytest.fixture
def rows():
    rows = [_row("baseline", BASELINE)]
    # DR-1: three repeats at 5 % and 50 % (dr_schedule(100) = 5, 10, ..., 100), one at 100 %.
    rows += [_row("dr1", s, kept=5, repeat=i) for i, s in enumerate((0.60, 0.62, 0.64))]
    rows += [_row("dr1", s, kept=50, repeat=i) for i, s in enumerate((0.76, 0.78, 0.77))]
    rows += [_row("dr1", BASELINE, kept=100, repeat=0)]
    rows += [_row("dr2", s, kept=k) for k, s in ((5, 0.72), (50, 0.79), (100, BASELINE))]
    # h = 1 is chance (one value for everything): kept in the rows, not drawn by default.
    rows += [_row("q1", s, h=h) for h, s in ((1, 0.08), (2, 0.30), (4, 0.76), (8, 0.80))]
    rows += [_row("q2", s, h=h) for h, s in ((1, 0.08), (2, 0.74), (4, 0.79), (8, 0.80))]
    rows += [_row("qb", s, erased=e) for e, s in QB_SCORES.items()]
    # FC on three unevenly spaced kept counts (10, 20 and 50 of 100) x h = 2, 8, 27.
    fc_scores = {(10, 2): 0.60, (10, 8): 0.782, (10, 27): 0.793,
                 (20, 2): 0.61, (20, 8): 0.785, (20, 27): 0.795,
                 (50, 2): 0.62, (50, 8): 0.790, (50, 27): 0.797}
    rows += [_row("fc", s, kept=k, h=h) for (k, h), s in fc_scores.items()]
    return rows


def _lines(figure):
    return {line.get_label(): line for line in figure.axes[0].get_lines()}


def test_fig2_plots_dr1_mean_with_std_band_and_dr2(rows, tmp_path):
    figure = fig2_dimensionality(rows)
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "dimensions kept (% of the original)"
    assert ax.get_ylabel() == "score relative to baseline (%)"
    lines = _lines(figure)
    assert set(lines) == {"DR-1 (random)", "DR-2 (PCA)", "baseline (80.00 % accuracy)"}
    dr1 = lines["DR-1 (random)"]
    np.testing.assert_allclose(dr1.get_xdata(), [5, 50, 100])
    np.testing.assert_allclose(dr1.get_ydata(), [77.5, 96.25, 100.0])
    # One std band (DR-1's repeats, ddof=1); its top edge at 5 % is mean + std.
    (band,) = ax.collections
    vertices = band.get_paths()[0].vertices
    top = vertices[vertices[:, 0] == 5, 1].max()
    assert top == pytest.approx(100 * (0.62 + np.std([0.60, 0.62, 0.64], ddof=1)) / 0.8)
    path = save_figure(figure, tmp_path / "fig2.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_fig4_starts_at_two_values_and_fig_qb_counts_bits_kept(rows, tmp_path):
    figure = fig4_quantization(rows)
    lines = _lines(figure)
    assert set(lines) == {"Q-1 (global)", "Q-2 (per dim.)", "baseline (80.00 % accuracy)"}
    np.testing.assert_allclose(lines["Q-1 (global)"].get_xdata(), [2, 4, 8])
    np.testing.assert_allclose(lines["Q-1 (global)"].get_ydata(), [37.5, 95.0, 100.0])
    baseline = lines["baseline (80.00 % accuracy)"]
    assert baseline.get_linestyle() == "--" and list(baseline.get_ydata()) == [100.0, 100.0]
    assert figure.axes[0].get_xlabel() == "number of values h"
    with_chance = _lines(fig4_quantization(rows, min_levels=1))["Q-2 (per dim.)"]
    np.testing.assert_allclose(with_chance.get_xdata(), [1, 2, 4, 8])
    qb = fig_qb(rows)
    # x is what each value keeps, as the storage accounting counts it (64 - erased today).
    kept = sorted(bits_per_vector(1, erased_bits=e) for e in QB_SCORES)
    np.testing.assert_allclose(_lines(qb)["Q-B (bits)"].get_xdata(), kept)
    assert qb.axes[0].get_xlabel().startswith("bits kept per value")
    assert save_figure(qb, tmp_path / "qb.png").stat().st_size > 0


def test_fig5_cells_sit_at_their_true_positions(rows, tmp_path):
    figure = fig5_feature_compression(rows)
    ax = figure.axes[0]
    (mesh,) = ax.collections
    np.testing.assert_allclose(mesh.get_array(), 100 / 0.8 * np.array(
        [[0.60, 0.782, 0.793], [0.61, 0.785, 0.795], [0.62, 0.790, 0.797]]))
    # Rows at 10, 20 and 50 % of the dimensions: cells end halfway to their neighbours,
    # so the 50 % row is three times as tall as the 20 % one, not the same height.
    corners = mesh.get_coordinates()
    np.testing.assert_allclose(corners[:, 0, 1], [5, 15, 35, 65])
    np.testing.assert_allclose(corners[0, :, 0], [-1, 5, 17.5, 36.5])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["10 (10 %)", "20 (20 %)",
                                                           "50 (50 %)"]
    assert save_figure(figure, tmp_path / "fc.png").stat().st_size > 10_000


def test_fig5_marks_follow_table3s_losses_in_order(rows):
    # Within 1 % and within 2 % the best is 10 dims x 5 bits (h = 27, 99.1 % of the
    # score; 20 x 3 bits at 98.1 % compresses less): one mark for both.  Within 3 %:
    # 10 dims x 3 bits (h = 8, 97.75 %), 99.1 % compression.
    ax = fig5_feature_compression(rows).axes[0]
    marks = [(line.get_marker(), line.get_xdata()[0], line.get_ydata()[0], line.get_label())
             for line in ax.get_lines()]
    assert [mark[:3] for mark in marks] == [("o", 27, 10), ("X", 8, 10)]
    assert marks[0][3].startswith("≤ 1 and 2 % loss: 98.4 % compression (10 dims x 5 bits")
    assert marks[1][3].startswith("≤ 3 % loss: 99.1 % compression (10 dims x 3 bits")


def test_titles_name_the_setup_and_the_metric_not_its_key(rows):
    voc = [{**row, "metric": "map_voc07_11pt"} for row in rows]
    setup = "VGG-M, layer 19, PASCAL VOC 2007"
    for make in (fig2_dimensionality, fig4_quantization, fig_qb, fig5_feature_compression):
        figure = make(voc, setup=setup)
        texts = [figure.axes[0].get_title()] + [t.get_text() for t in figure.findobj(Text)]
        assert setup in figure.axes[0].get_title(), make.__name__
        assert any("80.00 % mAP (VOC07 11-pt)" in text for text in texts), make.__name__
        assert not any("map_voc07_11pt" in text for text in texts), make.__name__
    assert fig2_dimensionality(voc, setup=setup).axes[0].get_title() == (
        "Dimensionality reduction (DR): VGG-M, layer 19, PASCAL VOC 2007")


def test_no_rows_to_plot_is_a_clear_error(rows):
    baseline_only = rows[:1]
    with pytest.raises(ValueError, match="nothing to plot"):
        fig2_dimensionality(baseline_only)
    with pytest.raises(ValueError, match="nothing to plot"):
        fig5_feature_compression(baseline_only)


def test_paper_overlay_is_dashed_and_relative(rows, tmp_path):
    paper = load_authors_rows("VGG-M", "VOC 2007")
    figure = fig2_dimensionality(rows, paper=paper)
    lines = _lines(figure)
    assert len(lines) == 5
    dashed = lines["DR-2 (PCA), paper (VGG-M, layer 19, VOC 2007)"]
    assert dashed.get_linestyle() == "--"
    assert dashed.get_ydata()[0] == pytest.approx(100 * 75.371203 / 76.952192)
    assert len(figure.axes[0].collections) == 2  # both DR-1 std bands
    fc = fig5_feature_compression(rows, paper=paper)
    assert [ax.get_title().split("\n")[0] for ax in fc.axes[:2]] == [
        "Feature compression (FC), this run",
        "Feature compression (FC), paper (VGG-M, layer 19, VOC 2007)"]
    assert fc.axes[0].collections[0].norm is fc.axes[1].collections[0].norm  # one scale
    assert save_figure(fc, tmp_path / "fc.png").stat().st_size > 10_000


def test_rate_score_draws_every_experiment_and_the_frontier_staircase(rows, tmp_path):
    from dnnstress.figures import fig_rate_score
    from dnnstress.frontier import rate_score_frontier
    for row in rows:
        row["bits_per_vector"] = bits_per_vector(row["kept_dims"], row["n_levels"],
                                                 row["erased_bits"])
    rows.append({**rows[-1], "experiment": "binary", "params": '{"threshold": "mean"}',
                 "bits_per_vector": N, "score": 0.75})
    frontier = rate_score_frontier(rows)
    figure = fig_rate_score(frontier, setup="VGG-M, layer 19")
    ax = figure.axes[0]
    assert ax.get_xscale() == "log"
    # q1/q2 at h = 1 store 0 bits: left out of a log axis, and said so.
    assert ax.get_xlabel() == ("bits per vector (log scale); 2 configuration(s) of 0 bits "
                               "not drawn")
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[:2] == ["Pareto frontier", "baseline (80.00 % accuracy)"]
    assert set(labels[2:]) == {"baseline", "DR-1 (random)", "DR-2 (PCA)", "Q-1 (global)",
                               "Q-2 (per dim.)", "FC (DR-2 + Q-2)", "Q-B (bits)", "binary"}
    (step,) = [line for line in ax.get_lines() if line.get_label() == "Pareto frontier"]
    # The staircase runs through the frontier points with more than 0 bits, in order.
    front = [p for p in frontier.points if p.bits_per_vector > 0]
    np.testing.assert_allclose(step.get_xdata(), [p.bits_per_vector for p in front])
    np.testing.assert_allclose(step.get_ydata(), [100 * p.relative for p in front])
    assert step.get_drawstyle() == "steps-post"
    # The cheapest drawn point: FC, 10 dims x 1 bit, 0.60 (Q-1/Q-2 need 100 bits at h = 2).
    assert (front[0].experiment, front[0].params, front[0].bits_per_vector) == (
        "fc", {"kept_dims": 10, "n_levels": 2}, 10)
    assert ax.get_title() == "Rate-score frontier, accuracy: VGG-M, layer 19"
    assert save_figure(figure, tmp_path / "rs.png").stat().st_size > 10_000
