"""Turns group a session's traces by the user message they answer, whatever order spans arrive in
(both backends): tool loops without a parent span, late roots that make a trace its own turn,
repeated messages, erasure."""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import select

from threadline.server.chat import input_text, output_text, span_detail, turn_key
from threadline.server.store import schema as t
from threadline.server.store.engine import Store
from threadline.server.store.erase import erase_turns
from threadline.server.store.migrate import alembic_config, upgrade
from threadline.server.store.payload import encode_span
from threadline.server.store.records import SpanRecord
from threadline.server.store.write import BatchWriter

SYSTEM = {"role": "system", "content": "You are a support bot."}


def flat(prefix: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """OpenInference's flattened message attributes."""
    attrs: dict[str, Any] = {}
    for i, m in enumerate(messages):
        attrs[f"{prefix}.{i}.message.role"] = m["role"]
        if m.get("content") is not None:
            attrs[f"{prefix}.{i}.message.content"] = m["content"]
        for j, call in enumerate(m.get("tool_calls", [])):
            attrs[f"{prefix}.{i}.message.tool_calls.{j}.tool_call.function.name"] = call["name"]
            attrs[f"{prefix}.{i}.message.tool_calls.{j}.tool_call.function.arguments"] = call["arguments"]
            attrs[f"{prefix}.{i}.message.tool_calls.{j}.tool_call.id"] = call["id"]
        if "tool_call_id" in m:
            attrs[f"{prefix}.{i}.message.tool_call_id"] = m["tool_call_id"]
    return attrs


def span(trace: str, span_id: str, parent: str | None, start: int, attrs: dict[str, Any], *, kind: str,
         session: str | None = "s", user: str | None = "u", tokens: int = 0, failed: bool = False) -> SpanRecord:
    """A record as ingest makes it: text and turn key derived from the attributes by the real functions."""
    return SpanRecord(
        project="p", session_id=session, user_id=user, is_llm=kind == "LLM", error="boom" if failed else None,
        turn_key=turn_key(attrs), trace_id=trace, span_id=span_id, parent_span_id=parent, name=kind.lower(),
        kind=kind, start_ns=start, end_ns=start + 50, status="ERROR" if failed else "OK", status_message=None,
        input=input_text(attrs), output=output_text(attrs), model="m" if kind == "LLM" else None,
        prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens, cost=0.0,
        payload=encode_span(input_text(attrs), output_text(attrs), span_detail(attrs, kind), "[]", attrs),
    )


def llm_call(trace: str, start: int, history: list[dict[str, Any]], reply: dict[str, Any], tokens: int,
             **kw: Any) -> SpanRecord:
    """One trace of the OpenAI instrumentor without a parent span: a root LLM span."""
    attrs = {"openinference.span.kind": "LLM", **flat("llm.input_messages", history),
             **flat("llm.output_messages", [reply])}
    return span(trace, "a" * 16, None, start, attrs, kind="LLM", tokens=tokens, **kw)


def tool_loop_chat() -> tuple[list[SpanRecord], list[tuple[str, str, int]]]:
    """Three user messages; the second makes the model call a tool (two LLM calls, two traces).
    Also the expected turns: (input, output, traces)."""
    history: list[dict[str, Any]] = [SYSTEM]
    spans: list[SpanRecord] = []
    start = 1_000_000

    def ask(trace: str, reply: dict[str, Any], tokens: int) -> None:
        nonlocal start
        spans.append(llm_call(trace, start, list(history), reply, tokens))
        history.append(reply)
        start += 1_000

    history.append({"role": "user", "content": "Hi there"})
    ask("01" * 16, {"role": "assistant", "content": "Hello! How can I help?"}, 10)
    history.append({"role": "user", "content": "Where is order 1234?"})
    ask("02" * 16, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "name": "lookup_order", "arguments": '{"order_id": 1234}'}]}, 20)
    history.append({"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'})
    ask("03" * 16, {"role": "assistant", "content": "It has shipped."}, 30)
    history.append({"role": "user", "content": "Thanks"})
    ask("04" * 16, {"role": "assistant", "content": "You're welcome."}, 40)
    return spans, [("Hi there", "Hello! How can I help?", 1), ("Where is order 1234?", "It has shipped.", 2),
                   ("Thanks", "You're welcome.", 1)]


def write_shuffled(store: Store, spans: list[SpanRecord], seed: int, batch_size: int) -> None:
    order = spans[:]
    random.Random(seed).shuffle(order)
    writer = BatchWriter(store.dialect)
    for i in range(0, len(order), batch_size):
        with store.write() as tx:
            writer.write(tx, order[i:i + batch_size], now_ns=1)


def turns_of(store: Store, session: str = "s") -> list[Any]:
    with store.read() as conn:
        return conn.execute(t.turns_with_text().where(t.turns.c.session_id == session)
                            .order_by(t.turns.c.start_ns)).all()


@pytest.mark.parametrize(("seed", "batch_size"), [(1, 1), (2, 2), (3, 10)])
def test_a_tool_loop_without_a_parent_span_is_one_turn_in_any_order(store: Store, seed: int, batch_size: int) -> None:
    spans, expected = tool_loop_chat()
    write_shuffled(store, spans, seed, batch_size)
    write_shuffled(store, spans, seed + 100, 3)  # a resend changes nothing
    turns = turns_of(store)
    assert [(r.input, r.output, r.traces) for r in turns] == expected
    assert [r.total_tokens for r in turns] == [10, 50, 40]
    with store.read() as conn:
        session = conn.execute(t.sessions_with_text()).one()
        user = conn.execute(select(t.users)).one()
    assert (session.turns, session.spans, session.total_tokens) == (3, 4, 100)
    assert (session.first_input, session.last_output) == ("Hi there", "You're welcome.")
    assert (user.turns, user.total_tokens, user.sessions) == (3, 100, 1)


def test_a_repeated_message_after_another_reply_is_a_new_turn(store: Store) -> None:
    history: list[dict[str, Any]] = [SYSTEM]
    spans = []
    for i, reply in enumerate(("Shall I cancel it?", "Shall I refund it?")):
        history += [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": reply},
                    {"role": "user", "content": "yes"}]
        spans.append(llm_call(f"{i + 1:032x}", 1000 * (i + 1), list(history), {"role": "assistant", "content": "Done."},
                              5))
        history.append({"role": "assistant", "content": "Done."})
    write_shuffled(store, spans, 0, 1)
    assert [r.input for r in turns_of(store)] == ["yes", "yes"]


@pytest.mark.parametrize("roots_first", [False, True])
def test_a_late_root_with_plain_text_makes_the_trace_its_own_turn(store: Store, roots_first: bool) -> None:
    # Two agent traces whose LLM children send the same messages (so the same key): until their
    # roots arrive, they look like one turn; each root's plain-text input makes its trace a turn.
    messages = [SYSTEM, {"role": "user", "content": "ping"}]
    children = [span(f"{i:032x}", "b" * 16, "a" * 16, 1000 * i + 10,
                     {**flat("llm.input_messages", messages),
                      **flat("llm.output_messages", [{"role": "assistant", "content": f"pong {i}"}])},
                     kind="LLM", tokens=i) for i in (1, 2)]
    roots = [span(f"{i:032x}", "a" * 16, None, 1000 * i, {"input.value": f"ping #{i}", "output.value": f"pong {i}"},
                  kind="AGENT") for i in (1, 2)]
    writer = BatchWriter(store.dialect)
    batches = [roots, children] if roots_first else [children, roots]
    if not roots_first:
        with store.write() as tx:
            writer.write(tx, children, now_ns=1)
        assert [r.traces for r in turns_of(store)] == [2]
        batches = [roots]
    for batch in batches:
        with store.write() as tx:
            writer.write(tx, batch, now_ns=1)
    turns = turns_of(store)
    assert [(r.input, r.output, r.traces, r.total_tokens) for r in turns] == [
        ("ping #1", "pong 1", 1, 1), ("ping #2", "pong 2", 1, 2)]
    with store.read() as conn:
        session = conn.execute(t.sessions_with_text()).one()
        user = conn.execute(select(t.users)).one()
    assert (session.turns, session.first_input, session.last_output) == (2, "ping #1", "pong 2")
    assert (user.turns, user.total_tokens) == (2, 3)


def test_an_error_in_any_trace_of_a_turn_makes_it_an_error_turn(store: Store) -> None:
    spans, _ = tool_loop_chat()
    spans[2] = spans[2]._replace(status="ERROR", error="tool failed")  # the loop's second call
    write_shuffled(store, spans, 5, 2)
    assert [(r.errors > 0, r.error) for r in turns_of(store)] == [(False, None), (True, "tool failed"),
                                                                   (False, None)]
    with store.read() as conn:
        assert conn.execute(select(t.sessions.c.errors)).scalar_one() == 1
        assert conn.execute(select(t.users.c.errors)).scalar_one() == 1


def test_erasing_a_user_rebuilds_the_turns_of_a_shared_session(store: Store) -> None:
    spans, _ = tool_loop_chat()
    other = [s._replace(trace_id=s.trace_id.replace("0", "9"), user_id="v", start_ns=s.start_ns + 10_000_000)
             for s in spans[:1]]
    write_shuffled(store, spans + other, 7, 4)
    with store.write() as tx:
        pid = tx.execute(select(t.projects.c.id)).scalar_one()
        erase_turns(tx, pid, user_id="u")
    assert [(r.input, r.user_id) for r in turns_of(store)] == [("Hi there", "v")]
    with store.read() as conn:
        session = conn.execute(t.sessions_with_text()).one()
        users = conn.execute(select(t.users.c.user_id, t.users.c.turns)).all()
    assert (session.turns, session.first_input, session.last_output) == (1, "Hi there", "Hello! How can I help?")
    assert users == [("v", 1)]


def tool_trace(trace: str, start: int, *, failed: bool = False) -> SpanRecord:
    """A tool run as a root span of its own trace (LangChain's tool.invoke with the run's config)."""
    attrs = {"openinference.span.kind": "TOOL", "tool.name": "lookup_order", "input.value": '{"order_id": 1234}',
             "output.value": '{"status": "shipped"}'}
    return span(trace, "c" * 16, None, start, attrs, kind="TOOL", failed=failed)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_a_tool_traced_on_its_own_joins_the_turn_in_progress(store: Store, batch_size: int) -> None:
    spans, expected = tool_loop_chat()
    tool = tool_trace("05" * 16, spans[1].start_ns + 200, failed=True)
    ordered = [*spans[:2], tool, *spans[2:]]  # exported as they end: call, tool, call
    writer = BatchWriter(store.dialect)
    for i in range(0, len(ordered), batch_size):
        with store.write() as tx:
            writer.write(tx, ordered[i:i + batch_size], now_ns=1)
    turns = turns_of(store)
    assert [(r.input, r.output, r.traces) for r in turns] == [
        (question, answer, traces + (1 if question.startswith("Where") else 0))
        for question, answer, traces in expected]
    assert [r.errors > 0 for r in turns] == [False, True, False]  # the failed tool fails its turn
    with store.read() as conn:
        assert conn.execute(select(t.sessions.c.turns, t.sessions.c.spans)).one() == (3, 5)


def test_a_session_that_starts_with_a_tool_trace_has_it_as_a_turn(store: Store) -> None:
    write_shuffled(store, [tool_trace("07" * 16, 500)], 0, 1)
    assert [(r.traces, r.input) for r in turns_of(store)] == [(1, '{"order_id": 1234}')]


def test_migration_0013_reads_each_turn_input_from_its_trace(store: Store) -> None:
    """Downgraded, ``turns.input`` holds each turn's text; upgraded again, the column is gone and
    every turn reads the same text through ``input_trace_id``, and ingest goes on folding turns."""
    spans, expected = tool_loop_chat()
    write_shuffled(store, spans[:-1], 4, 2)
    before = [(r.turn_key, r.input, r.output) for r in turns_of(store)]
    assert len(before) >= 2 and [i for _, i, _ in before] == [text for text, _, _ in expected][:len(before)]

    def columns() -> set[str]:
        with store.read() as conn:
            return {c["name"] for c in sa.inspect(conn).get_columns("turns")}

    command.downgrade(alembic_config(store), "0012")
    assert "input" in columns() and "input_trace_id" not in columns()
    with store.read() as conn:
        stored = dict(conn.execute(sa.text("SELECT turn_key, input FROM turns")).all())
    assert stored == {key: text for key, text, _ in before}
    upgrade(store)
    assert "input" not in columns() and "input_trace_id" in columns()
    assert [(r.turn_key, r.input, r.output) for r in turns_of(store)] == before
    write_shuffled(store, spans, 5, 3)  # the last span, and a resend of the others
    assert [(r.input, r.output, r.traces) for r in turns_of(store)] == expected


def test_migration_0014_reads_session_texts_from_their_turns(store: Store) -> None:
    """Downgraded, ``sessions`` holds the first input and last output again; upgraded, they are
    read from the first and last turns, the same texts, and follow new turns."""
    spans, expected = tool_loop_chat()
    write_shuffled(store, spans[:-1], 6, 2)

    def texts() -> tuple[str | None, str | None]:
        with store.read() as conn:
            row = conn.execute(t.sessions_with_text()).one()
        return row.first_input, row.last_output

    before = texts()
    assert before[0] == expected[0][0]
    command.downgrade(alembic_config(store), "0013")
    with store.read() as conn:
        assert tuple(conn.execute(sa.text("SELECT first_input, last_output FROM sessions")).one()) == before
    upgrade(store)
    with store.read() as conn:
        assert not {"first_input", "last_output"} & {c["name"] for c in sa.inspect(conn).get_columns("sessions")}
    assert texts() == before
    write_shuffled(store, spans, 7, 3)
    assert texts() == (expected[0][0], expected[-1][1])


def test_a_last_turn_that_moves_to_an_earlier_start_stays_the_sessions_last(store: Store) -> None:
    """LlamaIndex's chat engine: an LLM child names its turn by its message list before the
    agent root (which starts earlier, with plain text) arrives and makes the trace its own turn.
    The session's last turn is then the new one, though it starts before the turn it replaces."""
    def trace(i: int) -> tuple[SpanRecord, SpanRecord]:
        messages = [SYSTEM, {"role": "user", "content": f"question {i}"}]
        child = span(f"{i:032x}", "b" * 16, "a" * 16, 1000 * i + 10,
                     {**flat("llm.input_messages", messages),
                      **flat("llm.output_messages", [{"role": "assistant", "content": f"answer {i}"}])},
                     kind="LLM", tokens=i)
        root = span(f"{i:032x}", "a" * 16, None, 1000 * i, {"input.value": f"question {i}",
                                                           "output.value": f"answer {i}"}, kind="AGENT")
        return child, root

    writer = BatchWriter(store.dialect)
    for i in (1, 2):
        child, root = trace(i)
        for batch in ([child], [root]):  # the child first, as its span ends first
            with store.write() as tx:
                writer.write(tx, batch, now_ns=1)
    assert [(r.turn_key, r.input, r.output) for r in turns_of(store)] == [
        (f"{i:032x}", f"question {i}", f"answer {i}") for i in (1, 2)]
    with store.read() as conn:
        session = conn.execute(t.sessions_with_text()).one()
    assert (session.first_turn_key, session.last_turn_key, session.last_start_ns) == (f"{1:032x}", f"{2:032x}", 2000)
    assert (session.first_input, session.last_output) == ("question 1", "answer 2")
