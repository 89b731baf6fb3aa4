"""The evaluation helpers of the UI without a browser: score-sort parsing and sparkline geometry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threadline.server.model import AnnotationSummary
from threadline.server.query.annotations import TurnScores
from threadline.server.web.ui.charts import SPARK_MAX_POINTS, sparklines
from threadline.server.web.ui.params import BadParameter, parse_sort, session_query, sort_link

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


def test_session_query_names_the_filters_a_ranking_ignores() -> None:
    query = session_query({"sort": "score:x", "q": "refund", "min_turns": "2", "range": "24h"})
    assert query.ranking is not None and not query.live
    assert query.ignored_filters == ["time range", "search", "min turns"]
    assert session_query({"q": "refund"}).ignored_filters == []


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
