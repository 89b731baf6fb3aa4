"""The evaluation helpers of the UI without a browser: score-sort parsing, sparkline geometry and colours,
and the evaluation columns' cells."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from threadline.server.evals.evaluators import BUILTIN
from threadline.server.evals.scales import AnnotationConfig
from threadline.server.model import AnnotationSummary
from threadline.server.query.annotations import TurnScores
from threadline.server.web.ui.charts import SPARK_MAX_POINTS, sparklines
from threadline.server.web.ui.evals import EvalColumn
from threadline.server.web.ui.params import BadParameter, parse_sort, session_query, sort_link
from threadline.server.web.ui.render import environment

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
CHOICES = ("start_time", "turns")


def test_score_sort_parses_name_and_bounds() -> None:
    sort, ranking = parse_sort({"sort": "score:user frustration:v2", "min_score": "0.25", "max_score": "1"},
                               CHOICES, "start_time")
    assert sort == "score:user frustration:v2"
    assert ranking is not None and (ranking.name, ranking.min_score, ranking.max_score) == (
        "user frustration:v2", 0.25, 1.0)
    assert parse_sort({"sort": "turns"}, CHOICES, "start_time") == ("turns", None)
    for bad in ({"sort": "score:"}, {"min_score": "0.2"}, {"sort": "score:x", "min_score": "nan"},
                {"sort": "score:x", "max_score": "high"}, {"sort": "score:x", "min_score": "2", "max_score": "1"}):
        with pytest.raises(BadParameter):
            parse_sort(bad, CHOICES, "start_time")


def test_a_ranked_session_query_keeps_its_filters() -> None:
    query = session_query({"sort": "score:x", "q": "refund", "min_turns": "2", "range": "24h"})
    assert query.ranking is not None and not query.live
    assert query.filters.q == "refund" and query.filters.min_turns == 2 and query.filters.start is not None


def test_sort_link_keeps_bounds_only_when_toggling_the_same_score() -> None:
    params = {"sort": "score:x", "order": "desc", "min_score": "0.5", "cursor": "abc"}
    same = sort_link(params, "/p", "score:x", "score:x", "desc")
    assert "min_score=0.5" in same and "order=asc" in same and "cursor" not in same
    other = sort_link(params, "/p", "score:y", "score:x", "desc")
    assert "min_score" not in other and "sort=score%3Ay" in other


def _turn(i: int, notes: dict[str, float], broken: bool = False) -> TurnScores:
    return TurnScores(trace_id=f"t{i}", index=i, start_time=T0 + timedelta(seconds=i), status="ok", broken=broken,
                      annotations={n: AnnotationSummary(count=1, mean_score=v, labels={}) for n, v in notes.items()})


def test_sparklines_one_point_per_turn_broken_highlighted() -> None:
    turns = [_turn(0, {"a": 1.0}), _turn(1, {"a": 0.0, "b": 3.0}, broken=True), _turn(2, {}), _turn(3, {"a": 0.5})]
    lines = {line.name: line for line in sparklines(turns)}
    assert sorted(lines) == ["a", "b"]
    a = lines["a"]
    assert [p.turn for p in a.points] == [1, 2, 3, 4]
    assert [p.css for p in a.points] == ["scored", "scored broken", "none", "scored"]
    assert a.points[0].y < a.points[3].y < a.points[1].y  # higher score, higher point
    assert a.line.count(",") == 3  # the line joins the three scored turns
    assert (a.low, a.high) == ("0", "1")
    assert (lines["b"].low, lines["b"].high) == ("3", "3")  # outside 0..1: its own range
    assert sparklines([_turn(0, {})]) == []


def test_sparklines_of_long_sessions_keep_the_line_and_the_broken_point() -> None:
    turns = [_turn(i, {"a": (i % 5) / 4}, broken=(i == 7)) for i in range(SPARK_MAX_POINTS + 1)]
    (line,) = sparklines(turns)
    assert [p.turn for p in line.points] == [8]
    assert line.line.count(",") == SPARK_MAX_POINTS + 1


def _labelled(i: int, notes: dict[str, tuple[str | None, float | None]], broken: bool = False) -> TurnScores:
    return TurnScores(trace_id=f"t{i}", index=i, start_time=T0 + timedelta(seconds=i), status="ok", broken=broken,
                      annotations={n: AnnotationSummary(count=1, mean_score=score, labels={label: 1} if label else {})
                                   for n, (label, score) in notes.items()})


def test_sparkline_points_are_red_only_where_that_score_is_bad() -> None:
    """Turn 2 is the broken turn (frustrated); its helpfulness is fine, so that point is not red."""
    configs = {name: BUILTIN[name].config() for name in ("user_frustration", "helpfulness")}
    configs["stars"] = AnnotationConfig(name="stars", kind="continuous", direction="higher_is_better",
                                        min_score=1, max_score=5)
    turns = [
        _labelled(0, {"user_frustration": ("ok", 0.0), "helpfulness": ("unhelpful", 0.0), "stars": (None, 4.5)}),
        _labelled(1, {"user_frustration": ("frustrated", 1.0), "helpfulness": ("helpful", 1.0),
                      "stars": (None, 1.5)}, broken=True),
        _labelled(2, {"user_frustration": ("ok", 0.0), "helpfulness": ("helpful", 1.0), "stars": (None, 3.0),
                      "custom": ("wrong", 0.2)}),
        _labelled(3, {"custom": ("fine", 0.9)}),
    ]
    lines = {line.name: line for line in sparklines(turns, configs)}
    bad = {name: [p.turn for p in line.points if "bad" in p.css.split()] for name, line in lines.items()}
    # lower is better for frustration (1 = frustrated is bad), higher for helpfulness and stars;
    # a name without a config is bad only by a failure label (BAD_LABELS)
    assert bad == {"user_frustration": [2], "helpfulness": [1], "stars": [2], "custom": [3]}
    assert all("broken" in line.points[1].css for line in lines.values() if len(line.points) > 1)
    assert "frustrated" in lines["user_frustration"].points[1].title and "bad" in lines["helpfulness"].points[0].title
    # without configs only failure labels are bad: scores alone say nothing
    plain = {line.name: [p.turn for p in line.points if "bad" in p.css.split()] for line in sparklines(turns)}
    assert plain == {"user_frustration": [2], "helpfulness": [1], "stars": [], "custom": [3]}


def test_evaluation_columns_render_labels_coloured_by_their_config() -> None:
    frustration = EvalColumn("user_frustration", BUILTIN["user_frustration"].config())
    goal = EvalColumn("goal_completion", BUILTIN["goal_completion"].config())
    stars = EvalColumn("stars", AnnotationConfig(name="stars", kind="continuous", min_score=1, max_score=5,
                                                 description="<b>Stars</b> given"))
    plain = EvalColumn("note")
    row = SimpleNamespace(annotations={
        "user_frustration": AnnotationSummary(count=3, mean_score=1 / 3, labels={"frustrated": 1, "ok": 2}),
        "goal_completion": AnnotationSummary(count=2, mean_score=0.0, labels={"not_completed": 2}),
        "stars": AnnotationSummary(count=2, mean_score=4.5, labels={}),
        "note": AnnotationSummary(count=1, mean_score=None, labels={"<i>x</i>": 1}),
    })
    macros = environment().from_string(
        '{% from "_macros.html" import score_th, eval_td %}<table><tr>{% for c in cols %}'
        '{{ score_th(c, none, "", "desc") }}{% endfor %}</tr><tr>{% for c in cols %}'
        '{{ eval_td(c, row.annotations.get(c.name)) }}{% endfor %}</tr></table>')
    html = macros.render(cols=[frustration, goal, stars, plain], row=row)
    cells = re.findall(r'<td class="([^"]*)"(?: title="([^"]*)")?>(.*?)</td>', html)
    assert [(css.split()[-1], text.replace("<wbr>", "")) for css, _, text in cells] == [
        ("eval-good", "ok"), ("eval-bad", "not_completed"), ("eval-good", "4.5"),
        ("eval-neutral", "&lt;i&gt;x&lt;/i&gt;")]
    assert "frustrated ×1" in cells[0][1] and "mean score 0.33" in cells[0][1] and "3 annotations" in cells[0][1]
    assert "lower is better" in html and "higher is better" in html and "&lt;b&gt;Stars&lt;/b&gt; given" in html
    assert "user_<wbr>frustration" in html and "not_<wbr>completed" in html
    assert "<b>" not in html and "<i>" not in html
