"""The figures: what they plot (checked on the Figure objects) and that they save as PNG."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from dnnstress.authors import load_authors_rows
from dnnstress.figures import fig2_dimensionality, fig4_quantization, \
    fig5_feature_compression, fig_qb, save_figure
from dnnstress.stress.accounting import bits_for_levels, compression_rate

N = 100
BASELINE = 0.80


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
    rows += [_row("q1", s, h=h) for h, s in ((2, 0.30), (4, 0.76), (8, 0.80))]
    rows += [_row("q2", s, h=h) for h, s in ((2, 0.74), (4, 0.79), (8, 0.80))]
    rows += [_row("qb", s, erased=e) for e, s in ((0, 0.80), (50, 0.80), (56, 0.10))]
    # FC on two kept counts (10 and 50 of 100) x h = 2, 8, 27.
    fc_scores = {(10, 2): 0.60, (10, 8): 0.782, (10, 27): 0.793,
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


def test_fig4_quantization_and_fig_qb_series(rows, tmp_path):
    figure = fig4_quantization(rows)
    lines = _lines(figure)
    assert set(lines) == {"Q-1 (global)", "Q-2 (per dim.)", "baseline (80.00 % accuracy)"}
    np.testing.assert_allclose(lines["Q-1 (global)"].get_ydata(), [37.5, 95.0, 100.0])
    baseline = lines["baseline (80.00 % accuracy)"]
    assert baseline.get_linestyle() == "--" and list(baseline.get_ydata()) == [100.0, 100.0]
    assert figure.axes[0].get_xlabel() == "number of values h"
    qb = fig_qb(rows)
    np.testing.assert_allclose(_lines(qb)["Q-B (bits)"].get_xdata(), [0, 50, 56])
    assert save_figure(qb, tmp_path / "qb.png").stat().st_size > 0


def test_fig5_heat_map_and_marks(rows, tmp_path):
    marks = ((0.03, "o"), (0.01, "s"), (0.001, "X"))
    figure = fig5_feature_compression(rows, marks=marks)
    ax = figure.axes[0]
    grid = ax.images[0].get_array()
    np.testing.assert_allclose(grid, 100 / 0.8 * np.array([[0.60, 0.782, 0.793],
                                                          [0.62, 0.790, 0.797]]))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["10 (10 %)", "50 (50 %)"]
    # Within 3 %: 10 dims x 3 bits (h = 8, 97.75 %); 1 %: 10 x 5 bits (h = 27, 99.1 %);
    # 0.1 %: nothing passes (0.797 / 0.8 = 99.6 %), so no third mark.
    points = {line.get_marker(): (line.get_xdata()[0], line.get_ydata()[0])
              for line in ax.get_lines()}
    assert points == {"o": (1, 0), "s": (2, 0)}
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[0].startswith("≤ 3 % loss: 99.1 % compression (10 dims x 3 bits")
    assert save_figure(figure, tmp_path / "fc.png").stat().st_size > 10_000


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
    dashed = lines["DR-2 (PCA), paper (VGG-M, VOC 2007)"]
    assert dashed.get_linestyle() == "--"
    assert dashed.get_ydata()[0] == pytest.approx(100 * 75.371203 / 76.952192)
    assert len(figure.axes[0].collections) == 2  # both DR-1 std bands
    fc = fig5_feature_compression(rows, paper=paper)
    assert [ax.get_title().split("\n")[0] for ax in fc.axes[:2]] == [
        "Feature compression (FC), this run",
        "Feature compression (FC), paper (VGG-M, VOC 2007)"]
    assert fc.axes[0].images[0].norm is fc.axes[1].images[0].norm  # one colour scale
    assert save_figure(fc, tmp_path / "fc.png").stat().st_size > 10_000
