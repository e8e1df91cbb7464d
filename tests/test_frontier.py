"""The rate-score frontier: Pareto logic against the naive definition, repeats, params."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnnstress.frontier import Configuration, best_within, configurations_of, \
    format_params, pareto_frontier, rate_score_frontier, row_params

N = 8


def _row(experiment, bits, score, params=None, **columns):
    row = {"experiment": experiment, "bits_per_vector": bits, "n_features": N,
           "score": score, "metric": "accuracy", **columns}
    if params is not None:
        row["params"] = json.dumps(params)
    return row


BASELINE = _row("baseline", 32 * N, 0.8, {})

# Few distinct bits and scores, so that ties (equal bits, equal scores) are frequent.
configs = st.lists(st.tuples(st.integers(0, 6), st.sampled_from([0.1, 0.5, 0.7, 0.8])),
                   max_size=12).map(lambda pairs: [
                       Configuration("x", {"i": i}, bits, N, score, 0.0, 1, score / 0.8)
                       for i, (bits, score) in enumerate(pairs)])


@given(configs)
def test_frontier_is_the_naive_set_of_non_dominated_points(points):
    naive = [p for p in points
             if not any(q.bits_per_vector <= p.bits_per_vector and q.value > p.value
                        for q in points)]
    frontier = pareto_frontier(points)
    assert sorted(p.params["i"] for p in frontier) == sorted(p.params["i"] for p in naive)
    bits = [p.bits_per_vector for p in frontier]
    assert bits == sorted(bits)
    # Along the frontier more bits never buy a lower score.
    assert all(a.value <= b.value for a, b in zip(frontier, frontier[1:]))


@given(configs, st.integers(0, 7))
def test_best_within_is_the_naive_best_under_the_budget(points, budget):
    rows = [BASELINE] + [_row("x", p.bits_per_vector, p.value, p.params) for p in points]
    fitting = [(r["score"], -r["bits_per_vector"]) for r in rows
               if r["bits_per_vector"] <= budget]
    best = best_within(rows, budget)
    if not fitting:
        assert best is None
    else:
        assert (best.value, -best.bits_per_vector) == max(fitting)


def test_repeats_are_averaged_and_params_come_from_json_or_typed_columns():
    rows = [BASELINE,
            # An old sweep's DR-1 rows: no params column, repeat and seed typed.
            _row("dr1", 2 * 32, 0.6, kept_dims=2, repeat=0, seed=0),
            _row("dr1", 2 * 32, 0.7, kept_dims=2, repeat=1, seed=1),
            # A new row: params say everything, its repeat is left out of the key.
            _row("binary", N, 0.75, {"threshold": "median", "repeat": 0}),
            _row("q2", 2 * N, 0.78, n_levels=4, kept_dims=N)]
    by_experiment = {c.experiment: c for c in configurations_of(rows)}
    dr1 = by_experiment["dr1"]
    assert dr1.params == {"kept_dims": 2} and dr1.n_repeats == 2
    assert dr1.value == pytest.approx(0.65) and dr1.relative == pytest.approx(0.65 / 0.8)
    assert dr1.std == pytest.approx(0.0707106781)  # ddof=1
    assert by_experiment["binary"].params == {"threshold": "median"}
    assert by_experiment["q2"].params == {"n_levels": 4}  # kept_dims is not Q-2's
    assert by_experiment["q2"].label == "Q-2 (per dim.): h = 4"
    frontier = rate_score_frontier(rows)
    assert [p.experiment for p in frontier.points] == ["binary", "q2", "baseline"]
    assert frontier.best_within(1.5 * N).experiment == "binary"
    assert frontier.cheapest_within(0.05).experiment == "q2"  # 97.5 % of the score
    assert frontier.best_within(N - 1) is None


def test_an_extra_score_column_is_relative_to_its_baseline_value():
    rows = [{**BASELINE, "recall@10": 1.0},
            _row("q2", N, 0.5, {"n_levels": 2}, **{"recall@10": "0.4"}),
            _row("q2", 2 * N, 0.7, {"n_levels": 4}, **{"recall@10": 0.9}),
            _row("q1", 2 * N, 0.2, {"n_levels": 4})]  # no recall measured: left out
    frontier = rate_score_frontier(rows, "recall@10")
    assert [(p.params, p.relative) for p in frontier.points] == [
        ({"n_levels": 2}, 0.4), ({"n_levels": 4}, 0.9), ({}, 1.0)]
    with pytest.raises(ValueError, match="baseline's 'recall@10' is 0.0"):
        rate_score_frontier([{**BASELINE, "recall@10": 0.0}, rows[1]], "recall@10")
    with pytest.raises(ValueError, match="no baseline row has a 'map@10'"):
        rate_score_frontier(rows, "map@10")


def test_bad_rows_are_clear_errors():
    with pytest.raises(ValueError, match="params is not JSON"):
        row_params({"experiment": "pq", "params": "{m: 8"})
    with pytest.raises(ValueError, match="'score' is not a number"):
        rate_score_frontier([BASELINE, _row("pq", 8, "high", {})])
    with pytest.raises(ValueError, match="store different bits_per_vector"):
        rate_score_frontier([BASELINE, _row("pq", 8, 0.5, {"m": 1}),
                             _row("pq", 16, 0.5, {"m": 1})])
    with pytest.raises(ValueError, match="bit budget"):
        best_within([BASELINE], -1)


def test_frontier_tables_are_written_as_csv_json_and_markdown(tmp_path):
    rows = [BASELINE, _row("fc", 10, 0.79, {"kept_dims": 2, "n_levels": 27})]
    paths = rate_score_frontier(rows).write(tmp_path / "frontier_score")
    assert [p.name for p in paths] == ["frontier_score.csv", "frontier_score.json",
                                       "frontier_score.md"]
    document = json.loads(paths[1].read_text())
    assert document["points"][0]["params"] == {"kept_dims": 2, "n_levels": 27}
    assert document["points"][0]["bits_per_dimension"] == 10 / N
    assert '"{""kept_dims"": 2, ""n_levels"": 27}"' in paths[0].read_text()
    assert "| 10 | 1.25 | FC (DR-2 + Q-2) | 2 dims, h = 27 | 79.00 % | 98.75 % |" \
        in paths[2].read_text()
    assert format_params({"kept_share": 5.0, "m": 8}) == "5 % of dims, m=8"
