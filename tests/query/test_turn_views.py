"""Every view of turns agrees on a tool loop without a parent span (both backends): the session
detail, metrics, the breakdown marker and the per-turn scores count the user's three messages,
not the four LLM calls."""

from __future__ import annotations

from store.test_turns import tool_loop_chat, write_shuffled
from threadline.server.query.annotations import first_broken_turn, turn_scores
from threadline.server.query.metrics import compute_metrics
from threadline.server.query.sessions import get_session
from threadline.server.store.engine import Store


def test_metrics_breakdown_and_detail_count_turns_not_llm_calls(store: Store) -> None:
    spans, expected = tool_loop_chat()
    spans[2] = spans[2]._replace(status="ERROR", error="model timed out")  # the loop's second call
    write_shuffled(store, spans, 11, 2)
    with store.read() as conn:
        detail = get_session(conn, "p", "s")
        metrics = compute_metrics(conn, "p", "session", ["count(turns)", "sum(tokens)", "sum(errors)"])
        broken = first_broken_turn(conn, "p", "s")
        scores = turn_scores(conn, "p", "s")
    assert detail is not None
    assert [(t.input, t.output, len(t.trace_ids)) for t in detail.turns] == expected
    assert [[s.kind for s in t.steps] for t in detail.turns] == [["llm"], ["llm", "tool", "llm"], ["llm"]]
    tool_step = detail.turns[1].steps[1]
    assert (tool_step.name, tool_step.arguments, tool_step.result) == (
        "lookup_order", '{"order_id": 1234}', '{"status": "shipped"}')
    assert tool_step.span_id == detail.turns[1].steps[0].span_id  # no TOOL span: the requesting call
    [row] = metrics.rows
    assert row.values == {"count(turns)": 3.0, "sum(tokens)": 100.0, "sum(errors)": 1.0}
    assert broken is not None and broken.trace_id == detail.turns[1].trace_id
    assert [(s.trace_id, s.status) for s in scores] == [(t.trace_id, t.status) for t in detail.turns]
