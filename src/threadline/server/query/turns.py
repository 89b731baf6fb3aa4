"""Turns: a session's traces with their LLM calls and tool calls."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, case, select

from threadline import conventions as cv
from threadline.server.model import LlmCall, Tokens, ToolCall, Turn
from threadline.server.query.annotations import summarize
from threadline.server.query.timeconv import ms, to_datetime
from threadline.server.store import schema as t


def _tool_call(row: Any) -> ToolCall:
    try:
        attrs = json.loads(row.attributes)
    except ValueError:
        attrs = {}
    name = attrs.get(cv.TOOL_NAME) or attrs.get(cv.GEN_AI_TOOL_NAME) or row.name
    arguments = attrs.get(cv.INPUT_VALUE)
    result = attrs.get(cv.OUTPUT_VALUE)
    return ToolCall(
        span_id=row.span_id, name=str(name),
        arguments=arguments if isinstance(arguments, str) or arguments is None else json.dumps(arguments),
        result=result if isinstance(result, str) or result is None else json.dumps(result),
        status="error" if row.status == "ERROR" else "ok",
    )


def load_turns(conn: Connection, pid: int, trace_rows: Sequence[Row[Any]], first_index: int = 0) -> list[Turn]:
    """``Turn`` objects for ``traces`` rows (in the given order, numbered from ``first_index``)."""
    trace_ids = [r.trace_id for r in trace_rows]
    if not trace_ids:
        return []
    sp = t.spans
    llm: dict[str, list[LlmCall]] = defaultdict(list)
    tools: dict[str, list[ToolCall]] = defaultdict(list)
    # No ORDER BY: SQLite would then walk the project's time index instead of the primary key
    # (seconds on a large project); a turn has few spans, so they are sorted here. Only TOOL
    # spans need their attributes (an LLM span's can be megabytes of chat history).
    rows = conn.execute(
        select(sp.c.trace_id, sp.c.span_id, sp.c.name, sp.c.kind, sp.c.model, sp.c.start_ns, sp.c.end_ns,
               sp.c.status, sp.c.prompt_tokens, sp.c.completion_tokens, sp.c.total_tokens, sp.c.cost,
               case((sp.c.kind == "TOOL", sp.c.attributes), else_=None).label("attributes"))
        .where(sp.c.project_id == pid, sp.c.trace_id.in_(trace_ids), sp.c.kind.in_(("LLM", "TOOL")))
    ).all()
    for row in sorted(rows, key=lambda r: (r.start_ns, r.span_id)):
        if row.kind == "LLM":
            llm[row.trace_id].append(LlmCall(
                span_id=row.span_id, model=row.model,
                tokens=Tokens(row.prompt_tokens, row.completion_tokens, row.total_tokens),
                latency_ms=ms(row.end_ns - row.start_ns), cost_usd=round(row.cost, 8),
                status="error" if row.status == "ERROR" else "ok",
            ))
        else:
            tools[row.trace_id].append(_tool_call(row))
    notes = summarize(conn, pid, "trace", trace_ids)
    return [
        Turn(
            trace_id=r.trace_id, index=first_index + i, start_time=to_datetime(r.start_ns),
            end_time=to_datetime(r.end_ns), latency_ms=ms(r.end_ns - r.start_ns), user_id=r.user_id,
            input=r.input, output=r.output, status="error" if r.errors else "ok",
            error=(r.error or "error") if r.errors else None,
            tokens=Tokens(r.prompt_tokens, r.completion_tokens, r.total_tokens), cost_usd=round(r.cost, 8),
            llm_calls=llm.get(r.trace_id, []), tool_calls=tools.get(r.trace_id, []),
            annotations=notes.get(r.trace_id, {}),
        )
        for i, r in enumerate(trace_rows)
    ]
