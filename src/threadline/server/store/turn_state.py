"""The rollups of a trace (a row of ``traces``) and of a turn (a row of ``turns``), and how they fold.

Pure: no I/O. A batch's spans fold into their traces (:func:`merge_spans`); a trace's changes fold
into its turn (:meth:`TurnState.add_trace`). :mod:`.write` and :mod:`.turns` read and store the
rows; :mod:`.rollups` turns the difference between a turn's old and new state into increments
of its session and user.

A trace's ``turn_key`` names its turn within the session: the key of its input span's message
list (:func:`threadline.server.chat.turn_key`: the traces of a tool loop share it), or the trace's
own id when that input is plain text (the agent-span pattern: one trace, one turn). A trace with
no user message — a tool or retriever run as a root span, or no input at all — *follows*: it
joins the session's turn in progress (the latest that started before it).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields

from threadline.server.chat import MESSAGE_KEY_PREFIX
from threadline.server.store.records import SpanRecord

#: The input/output rank of "no text yet" (ranks: 0 for the root span, else 1 + start_ns).
_TEXT_MAX_RANK = 2**62
#: Span kinds whose plain-text input is not a user's message (a tool's arguments, a query):
#: a trace whose input comes from one of them follows the turn in progress.
FOLLOWER_KINDS = frozenset({"TOOL", "RETRIEVER", "EMBEDDING", "RERANKER", "GUARDRAIL", "EVALUATOR"})


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
    turn_key: str | None = None
    #: The trace carries no user message (a TOOL or retriever root, or no input at all): it joins
    #: the session's turn in progress (:mod:`.turns` assigns ``turn_key``) instead of starting one.
    follows: bool = False

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
    """Fold new spans (sorted by start) into a trace's rollup; its turn key follows its input."""
    if fresh:
        state.start_ns, state.end_ns = spans[0].start_ns, spans[0].end_ns
    keyed = False
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
            state.turn_key = r.turn_key
            state.follows = r.turn_key is None and r.kind in FOLLOWER_KINDS
            keyed = True
        if r.output and rank < (state.output_rank if state.output_rank is not None else _TEXT_MAX_RANK):
            state.output, state.output_rank = r.output, rank
    if state.input_rank is None:
        state.follows = True  # no input at all (yet): something the app did within a turn
    if state.follows:
        if keyed or fresh:
            state.turn_key = None  # assigned by the turn writer: the session's turn in progress
    elif not (state.turn_key and state.turn_key.startswith(MESSAGE_KEY_PREFIX)):
        state.turn_key = state.trace_id  # plain-text input: the trace is its own turn


@dataclass(slots=True)
class TurnState:
    """The rollup of one turn (a row of ``turns``): the traces of a session that share a turn key."""

    project_id: int
    session_id: str
    turn_key: str
    start_ns: int = 0
    end_ns: int = 0
    traces: int = 0
    spans: int = 0
    errors: int = 0  # traces with an error span
    error: str | None = None
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float = 0.0
    user_id: str | None = None
    first_trace_id: str | None = None
    #: The trace whose input is the turn's (the user's message): its first trace with an input.
    input_trace_id: str | None = None
    last_trace_id: str | None = None
    last_start_ns: int = 0
    #: The text of ``input_trace_id`` and of ``last_trace_id``: stored once, in ``traces``.
    input: str | None = None
    output: str | None = None

    def copy(self) -> TurnState:
        """An independent copy (the row before a batch is folded in)."""
        return TurnState(*(getattr(self, name) for name in TURN_COLUMNS))

    def add_trace(self, new: TraceState, old: TraceState | None) -> None:
        """Fold a trace's change into this turn: ``old`` is the trace as this turn counted it
        (``None``: not counted here yet), ``new`` what it is now.

        The turn starts with its earliest trace, whose input is the user's message; its output is
        that of its latest trace with an output (the last LLM call of a tool loop).
        """
        base = old or _NO_TRACE
        if self.traces == 0:
            self.start_ns, self.end_ns = new.start_ns, new.end_ns
        self.traces += 0 if old else 1
        self.spans += new.spans - base.spans
        self.errors += int(new.errors > 0) - int(base.errors > 0)
        self.llm_calls += new.llm_calls - base.llm_calls
        self.prompt_tokens += new.prompt_tokens - base.prompt_tokens
        self.completion_tokens += new.completion_tokens - base.completion_tokens
        self.total_tokens += new.total_tokens - base.total_tokens
        self.cost += new.cost - base.cost
        if self.error is None and new.error is not None and new.errors:
            self.error = new.error
        if self.user_id is None:
            self.user_id = new.user_id
        order = (new.start_ns, new.trace_id)
        if (self.first_trace_id is None or new.trace_id == self.first_trace_id
                or order < (self.start_ns, self.first_trace_id)):
            self.first_trace_id = new.trace_id
            if new.input:
                self.input_trace_id, self.input = new.trace_id, new.input
        elif self.input_trace_id is None and new.input:
            self.input_trace_id, self.input = new.trace_id, new.input
        elif new.trace_id == self.input_trace_id and new.input:  # the text the reference reads now
            self.input = new.input
        if new.output and (self.last_trace_id is None or new.trace_id == self.last_trace_id
                           or order > (self.last_start_ns, self.last_trace_id)):
            self.last_trace_id, self.last_start_ns, self.output = new.trace_id, new.start_ns, new.output
        self.start_ns = min(self.start_ns, new.start_ns)
        self.end_ns = max(self.end_ns, new.end_ns)


def fold_turn(project_id: int, session_id: str, turn_key: str, traces: list[TraceState]) -> TurnState | None:
    """A turn rebuilt from all its traces (``None`` when it has none left)."""
    if not traces:
        return None
    turn = TurnState(project_id, session_id, turn_key)
    for trace in sorted(traces, key=lambda tr: (tr.start_ns, tr.trace_id)):
        turn.add_trace(trace, None)
    return turn


#: The fields of a :class:`TurnState`, in order: the ``turns`` columns, then ``input`` and ``output``.
TURN_COLUMNS = tuple(f.name for f in fields(TurnState))
#: What ``turns`` stores: every field but ``input`` and ``output``, the texts of the turn's
#: ``input_trace_id`` and ``last_trace_id``, which ``traces`` holds already (read back with
#: ``schema.turns_with_text``).
STORED_TURN_COLUMNS = tuple(c for c in TURN_COLUMNS if c not in ("input", "output"))
assert (*STORED_TURN_COLUMNS, "input", "output") == TURN_COLUMNS  # rows read as stored columns + the joined texts
#: A :class:`TurnState` as a row of ``turns``.
turn_row = operator.attrgetter(*STORED_TURN_COLUMNS)
_NO_TRACE = TraceState(id=0, project_id=0, trace_id="")
