"""A trace's rollup (a row of ``traces``: one turn) and how a batch of its spans folds into it.

Pure: no I/O. :mod:`.write` reads and stores the rows, :mod:`.rollups` turns the difference
between a trace's old and new state into increments of its session, user and project.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields

from threadline.server.store.records import SpanRecord

#: The input/output rank of "no text yet" (ranks: 0 for the root span, else 1 + start_ns).
_TEXT_MAX_RANK = 2**62


@dataclass(slots=True)
class TraceState:
    """The rollup of one trace (a row of ``traces``), mutable while a batch is merged in."""

    id: int
    project_id: int
    trace_id: str
    session_id: str | None = None
    user_id: str | None = None
    root_span_id: str | None = None
    root_name: str | None = None
    start_ns: int = 0
    end_ns: int = 0
    spans: int = 0
    errors: int = 0
    error: str | None = None
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float = 0.0
    input: str | None = None
    output: str | None = None
    input_rank: int | None = None
    output_rank: int | None = None

    def copy(self) -> TraceState:
        """An independent copy (the row before a batch is merged in)."""
        return TraceState(*(getattr(self, name) for name in TRACE_COLUMNS))


#: The ``traces`` columns a :class:`TraceState` holds, in field order.
TRACE_COLUMNS = tuple(f.name for f in fields(TraceState))
#: A :class:`TraceState` as a row of ``traces`` (all its fields, in order).
trace_row = operator.attrgetter(*TRACE_COLUMNS)
#: What a batch can change in a trace's row: every field after the key.
TRACE_FIELDS = TRACE_COLUMNS[3:]


def merge_spans(state: TraceState, spans: list[SpanRecord], *, fresh: bool) -> None:
    """Fold new spans (sorted by start) into a trace's rollup."""
    if fresh:
        state.start_ns, state.end_ns = spans[0].start_ns, spans[0].end_ns
    for r in spans:
        state.spans += 1
        state.start_ns = min(state.start_ns, r.start_ns)
        state.end_ns = max(state.end_ns, r.end_ns)
        if state.session_id is None and r.session_id:
            state.session_id = r.session_id
        if state.user_id is None and r.user_id:
            state.user_id = r.user_id
        if r.status == "ERROR":
            state.errors += 1
            if state.error is None:
                state.error = r.error
        if r.is_llm:
            state.llm_calls += 1
            state.prompt_tokens += r.prompt_tokens
            state.completion_tokens += r.completion_tokens
            state.total_tokens += r.total_tokens
            state.cost += r.cost
        is_root = r.parent_span_id is None
        if is_root:
            state.root_span_id, state.root_name = r.span_id, r.name
        rank = 0 if is_root else 1 + r.start_ns
        if r.input and rank < (state.input_rank if state.input_rank is not None else _TEXT_MAX_RANK):
            state.input, state.input_rank = r.input, rank
        if r.output and rank < (state.output_rank if state.output_rank is not None else _TEXT_MAX_RANK):
            state.output, state.output_rank = r.output, rank
