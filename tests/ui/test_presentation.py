"""The UI's pure helpers: query-string parsing, display filters, span trees, messages, chart geometry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threadline.server.model import Span
from threadline.server.query.overview import TurnMark
from threadline.server.web.ui.charts import STRIP_WIDTH, timeline_strip
from threadline.server.web.ui.params import BadParameter, link, session_query, sort_link
from threadline.server.web.ui.render import compact, duration, percent, pretty, render, url_part, usd
from threadline.server.web.ui.spans import messages, span_tree

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def span(span_id: str, parent: str | None, start_ms: int, end_ms: int, **kw: object) -> Span:
    values: dict[str, object] = dict(
        trace_id="t" * 32, span_id=span_id, parent_span_id=parent, name=span_id, kind="CHAIN",
        start_time=T0 + timedelta(milliseconds=start_ms), end_time=T0 + timedelta(milliseconds=end_ms),
        latency_ms=float(end_ms - start_ms), status="OK", status_message=None, session_id=None, user_id=None,
        input=None, output=None, attributes={}, events=[],
    )
    values.update(kw)
    return Span(**values)  # type: ignore[arg-type]


def test_session_query_parses_forms_leniently_and_rejects_nonsense() -> None:
    empty = session_query({"q": " ", "range": "", "start": "", "min_turns": "", "has_error": ""})
    assert (empty.filters.q, empty.filters.start, empty.filters.min_turns, empty.filters.has_error) == (
        None, None, None, None)
    assert empty.live and (empty.sort, empty.order, empty.limit) == ("start_time", "desc", 50)
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    preset = session_query({"range": "24h", "start": "2020-01-01T00:00"}, now=now)
    assert preset.filters.start == now - timedelta(hours=24) and preset.filters.end is None  # the preset wins
    custom = session_query({"start": "2026-11-21T10:00", "end": "2026-11-21T11:00:30+01:00"})
    assert custom.range == "custom"
    assert custom.filters.start == datetime(2026, 11, 21, 10, 0, tzinfo=UTC)  # datetime-local input is UTC
    assert custom.filters.end == datetime(2026, 11, 21, 10, 0, 30, tzinfo=UTC)
    assert session_query({"has_error": "yes", "min_turns": "3"}).filters.has_error is True
    assert not session_query({"sort": "turns"}).live
    for bad in ({"min_turns": "x"}, {"min_turns": "-1"}, {"has_error": "maybe"}, {"sort": "latency"},
                {"order": "up"}, {"range": "1y"}, {"start": "tomorrow"}, {"limit": "0"},
                {"start": "2026-11-22T00:00", "end": "2026-11-21T00:00"}):
        with pytest.raises(BadParameter):
            session_query(bad)


def test_links_keep_filters_drop_the_cursor_and_encode_values() -> None:
    params = {"q": "a b", "user_id": "bob/2", "cursor": "xyz", "min_turns": ""}
    assert link(params, "/p", drop=("cursor",)) == "/p?q=a+b&user_id=bob%2F2"
    assert link(params, "/p", cursor=None, q="") == "/p?user_id=bob%2F2"
    assert sort_link(params, "/p", "turns", "turns", "desc").endswith("sort=turns&order=asc")
    assert "cursor" not in sort_link(params, "/p", "cost", "turns", "desc")
    assert url_part("a/b c?ü") == "a%2Fb%20c%3F%C3%BC"


def test_display_filters() -> None:
    assert [duration(v) for v in (None, 0.5, 850, 1240, 61_000, 7_500_000, 200_000_000)] == [
        "–", "0.50 ms", "850 ms", "1.24 s", "1m 01s", "2h 05m", "2d 7h"]
    assert [usd(v) for v in (0, 0.00001, 0.01234, 12.345)] == ["$0", "<$0.0001", "$0.0123", "$12.35"]
    assert [compact(v) for v in (950, 12_345, 4_100_000)] == ["950", "12.3k", "4.1M"]
    assert percent(0.042) == "4.2%" and percent(None) == "–"
    assert pretty('{"b": 1, "a": [1, 2]}') == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}'
    assert pretty("not json {") == "not json {" and pretty("{broken") == "{broken"


def test_templates_escape_everything() -> None:
    html = render("fragments/error.html", message="<script>alert(1)</script>")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_span_tree_orders_depth_first_and_survives_orphans_and_cycles() -> None:
    spans = [
        span("root", None, 0, 1000), span("b", "root", 500, 900), span("a", "root", 100, 400),
        span("a1", "a", 150, 300), span("orphan", "missing", 200, 250),
        span("x", "y", 0, 10), span("y", "x", 0, 10), span("self", "self", 0, 5),
    ]
    rows = span_tree(spans)
    order = [(r.span.span_id, r.depth) for r in rows]
    assert order[:4] == [("root", 0), ("a", 1), ("a1", 2), ("b", 1)]
    assert ("orphan", 0) in order and ("self", 0) in order
    assert sorted(r.span.span_id for r in rows) == sorted(s.span_id for s in spans)  # every span shown once
    root, a = rows[0], rows[1]
    assert (root.offset, root.width) == (0.0, 1000.0)
    assert (a.offset, a.width) == (100.0, 300.0)
    assert all(0 <= r.offset <= 1000 and r.offset + r.width <= 1000.01 for r in rows)
    assert span_tree([]) == []


def test_messages_from_flattened_attributes() -> None:
    attributes = {
        "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": "hi",
        "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "be nice",
        "llm.input_messages.4294967295.message.role": "user",  # a hostile index costs nothing
        "llm.input_messages.2.message.role": "assistant",
        "llm.input_messages.2.message.tool_calls.0.tool_call.function.name": "lookup",
        "llm.input_messages.2.message.tool_calls.0.tool_call.function.arguments": '{"id": 7}',
        "llm.input_messages.3.message.contents.0.message_content.text": "part one",
        "llm.input_messages.3.message.contents.1.message_content.text": "part two",
        "llm.input_messages.x.message.role": "ignored", "llm.output_messages.0.message.content": "out",
    }
    got = messages(attributes, "llm.input_messages")
    assert [(m.role, m.content) for m in got] == [
        ("system", "be nice"), ("user", "hi"), ("assistant", None), ("message", "part one\npart two"),
        ("user", None)]
    assert got[2].tool_calls == [("lookup", '{"id": 7}')]
    assert [m.content for m in messages(attributes, "llm.output_messages")] == ["out"]


def test_timeline_strip_places_turns_in_time_and_marks_slow_and_failed() -> None:
    marks = [TurnMark("a", 0, T0, 500.0, False), TurnMark("b", 1, T0 + timedelta(seconds=60), 400.0, False),
             TurnMark("c", 2, T0 + timedelta(seconds=61), 9000.0, False),
             TurnMark("d", 3, T0 + timedelta(seconds=120), 300.0, True)]
    bars = timeline_strip(marks, loaded={"a", "b"}, trace_href=lambda t: f"/trace/{t}")
    assert [b.css for b in bars] == ["ok", "ok", "slow", "error"]
    assert [b.href for b in bars] == ["#turn-1", "#turn-2", "/trace/c", "/trace/d"]
    assert bars[0].x == 0 and bars[1].x > STRIP_WIDTH * 0.45  # the minute-long gap shows
    assert all(b.x >= 0 and b.x + b.width <= STRIP_WIDTH + 0.01 for b in bars)
    assert max(bars, key=lambda b: b.height) is bars[2]
    assert timeline_strip([], set(), str) == []
