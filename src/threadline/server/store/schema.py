"""Table definitions (SQLAlchemy Core). Alembic migrations create exactly these tables.

Times are stored as integer nanoseconds since the Unix epoch (``*_ns``). A project is referred
to by its integer ``project_id`` everywhere but in ``projects``. Rollup tables (``traces``,
``sessions``, ``users``, ``session_users``, the counters in ``projects``) are maintained by
``store.write`` at ingest so that listing them never scans spans. ``turns`` groups a session's
traces into the user's turns (see :mod:`.turn_state`); sessions and users count turns.
``trace_tags`` and ``trace_metadata`` hold each trace's tags and metadata pairs, for the filters.
"""

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    select,
)

metadata = MetaData()

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String, nullable=False, unique=True),
    Column("spans", BigInteger, nullable=False, default=0),
    Column("traces", BigInteger, nullable=False, default=0),
    Column("sessions", BigInteger, nullable=False, default=0),
    Column("users", BigInteger, nullable=False, default=0),
    Column("created_ns", BigInteger, nullable=False),
    Column("last_seen_ns", BigInteger, nullable=True),
    # JSON object: per-project settings (idle timeout, online evaluators …).
    Column("settings", Text, nullable=False, default="{}"),
)

spans = Table(
    "spans",
    metadata,
    Column("project_id", Integer, nullable=False),
    Column("trace_id", String, nullable=False),
    Column("span_id", String, nullable=False),
    Column("parent_span_id", String, nullable=True),
    Column("name", Text, nullable=False),
    Column("kind", String, nullable=False),  # OpenInference span kind (LLM, CHAIN, TOOL, …)
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("status", String, nullable=False),  # UNSET | OK | ERROR
    Column("status_message", Text, nullable=True),
    Column("model", String, nullable=True),
    Column("prompt_tokens", BigInteger, nullable=False, default=0),
    Column("completion_tokens", BigInteger, nullable=False, default=0),
    Column("total_tokens", BigInteger, nullable=False, default=0),
    Column("cost", Float, nullable=False, default=0.0),
    # The span's text, each value once, compressed when large (store/payload.py): display input
    # and output, ``detail`` (what a turn's steps show, derived at ingest so no view re-parses
    # the attributes), events JSON, attributes JSON (flattened keys).
    Column("payload", LargeBinary, nullable=False),
    PrimaryKeyConstraint("project_id", "trace_id", "span_id", name="pk_spans"),
    Index("ix_spans_project_start", "project_id", "start_ns"),
)

traces = Table(
    "traces",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # rowid of the full-text index
    Column("project_id", Integer, nullable=False),
    Column("trace_id", String, nullable=False),
    Column("session_id", String, nullable=True),
    Column("user_id", String, nullable=True),
    Column("root_span_id", String, nullable=True),
    Column("root_name", Text, nullable=True),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("spans", Integer, nullable=False, default=0),
    Column("errors", Integer, nullable=False, default=0),  # spans with status ERROR
    Column("error", Text, nullable=True),  # message of the first error span
    Column("llm_calls", Integer, nullable=False, default=0),
    Column("prompt_tokens", BigInteger, nullable=False, default=0),
    Column("completion_tokens", BigInteger, nullable=False, default=0),
    Column("total_tokens", BigInteger, nullable=False, default=0),
    Column("cost", Float, nullable=False, default=0.0),
    Column("input", Text, nullable=True),
    Column("output", Text, nullable=True),
    # Where input/output came from: 0 = the root span, else 1 + start_ns of the descendant.
    Column("input_rank", BigInteger, nullable=True),
    Column("output_rank", BigInteger, nullable=True),
    # The trace's turn in its session: the message key of its input (``m:…``), else its own id.
    Column("turn_key", String, nullable=True),
    # The trace carries no user message (a TOOL root, no input): it joined the turn in progress.
    Column("follows", Boolean, nullable=True),
    UniqueConstraint("project_id", "trace_id", name="uq_traces_project_trace"),
    Index("ix_traces_session", "project_id", "session_id", "start_ns"),
    Index("ix_traces_user", "project_id", "user_id", "start_ns"),
    Index("ix_traces_start", "project_id", "start_ns"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("project_id", Integer, nullable=False),
    Column("session_id", String, nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("duration_ns", BigInteger, nullable=False),
    Column("turns", Integer, nullable=False),
    Column("spans", Integer, nullable=False),
    Column("errors", Integer, nullable=False),  # turns with status error
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("total_tokens", BigInteger, nullable=False),
    Column("cost", Float, nullable=False),
    # The first and the last turn: their texts (the user's first message, the last reply) are read
    # from them, stored once in traces: sessions_with_text() (migration 0014).
    Column("first_turn_key", String, nullable=True),
    Column("last_turn_key", String, nullable=True),
    Column("last_start_ns", BigInteger, nullable=False),  # start of the last turn
    # Lifecycle: wall-clock time of the last ingested span, and when the session was closed.
    Column("last_activity_ns", BigInteger, nullable=False),
    Column("closed_ns", BigInteger, nullable=True),
    PrimaryKeyConstraint("project_id", "session_id", name="pk_sessions"),
    Index("ix_sessions_start", "project_id", "start_ns", "session_id"),
    Index("ix_sessions_end", "project_id", "end_ns", "session_id"),
    Index("ix_sessions_turns", "project_id", "turns", "session_id"),
    Index("ix_sessions_tokens", "project_id", "total_tokens", "session_id"),
    Index("ix_sessions_cost", "project_id", "cost", "session_id"),
    Index("ix_sessions_duration", "project_id", "duration_ns", "session_id"),
    Index("ix_sessions_errors", "project_id", "errors", "session_id"),
    Index("ix_sessions_activity", "closed_ns", "last_activity_ns"),
)

turns = Table(
    "turns",
    metadata,
    Column("project_id", Integer, nullable=False),
    Column("session_id", String, nullable=False),
    Column("turn_key", String, nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("traces", Integer, nullable=False),
    Column("spans", Integer, nullable=False),
    Column("errors", Integer, nullable=False),  # traces with an error span
    Column("error", Text, nullable=True),
    Column("llm_calls", Integer, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("total_tokens", BigInteger, nullable=False),
    Column("cost", Float, nullable=False),
    Column("user_id", String, nullable=True),
    Column("first_trace_id", String, nullable=True),
    Column("last_trace_id", String, nullable=True),  # the latest trace with an output
    Column("last_start_ns", BigInteger, nullable=False),
    Column("input_trace_id", String, nullable=True),  # the first trace with an input (migration 0013)
    # The turn's input (the user's message) is its input_trace_id's, its output (the assistant's
    # final words) its last_trace_id's, each stored once in traces: turns_with_text().
    PrimaryKeyConstraint("project_id", "session_id", "turn_key", name="pk_turns"),
    # A session's turns in order, and every figure metrics aggregate: metrics read this index alone
    # (the rows carry the turn text). Migration 0009.
    Index("ix_turns_session_figures", "project_id", "session_id", "start_ns", "end_ns", "total_tokens",
          "prompt_tokens", "completion_tokens", "cost", "errors", "llm_calls", "spans", "user_id", "first_trace_id"),
)

#: A session's turns in the order the user had them (ties broken by key): every list of turns.
TURN_ORDER = (turns.c.start_ns, turns.c.turn_key)
_turn_input_trace = traces.alias("turn_input_trace")
_turn_last_trace = traces.alias("turn_last_trace")


def turns_with_text() -> Select[Any]:
    """``SELECT`` of ``turns`` with ``input`` and ``output``: the input of each turn's
    ``input_trace_id`` and the output of its latest trace with one (``last_trace_id``), each
    stored once, in ``traces`` (migrations 0011 and 0013). Add conditions on ``turns``."""
    first, last = _turn_input_trace, _turn_last_trace
    return select(*turns.c, first.c.input, last.c.output).select_from(
        turns.outerjoin(first, and_(first.c.project_id == turns.c.project_id,
                                    first.c.trace_id == turns.c.input_trace_id))
        .outerjoin(last, and_(last.c.project_id == turns.c.project_id, last.c.trace_id == turns.c.last_trace_id)))

_session_first_turn = turns.alias("session_first_turn")
_session_last_turn = turns.alias("session_last_turn")
_session_first_input = traces.alias("session_first_input")
_session_last_output = traces.alias("session_last_output")


def sessions_with_text(*columns: Any) -> Select[Any]:
    """``SELECT`` of ``sessions`` (``columns`` of it, default all) with ``first_input`` and
    ``last_output``: the input of its first turn and the output of its last, read through the
    turns from the traces that hold them (migration 0014). Add conditions on ``sessions``."""
    s, ft, lt = sessions, _session_first_turn, _session_last_turn
    fi, lo = _session_first_input, _session_last_output
    chosen = columns or tuple(s.c)
    return select(*chosen, fi.c.input.label("first_input"), lo.c.output.label("last_output")).select_from(
        s.outerjoin(ft, and_(ft.c.project_id == s.c.project_id, ft.c.session_id == s.c.session_id,
                             ft.c.turn_key == s.c.first_turn_key))
        .outerjoin(fi, and_(fi.c.project_id == s.c.project_id, fi.c.trace_id == ft.c.input_trace_id))
        .outerjoin(lt, and_(lt.c.project_id == s.c.project_id, lt.c.session_id == s.c.session_id,
                            lt.c.turn_key == s.c.last_turn_key))
        .outerjoin(lo, and_(lo.c.project_id == s.c.project_id, lo.c.trace_id == lt.c.last_trace_id)))


session_users = Table(
    "session_users",
    metadata,
    Column("project_id", Integer, nullable=False),
    Column("session_id", String, nullable=False),
    Column("user_id", String, nullable=False),
    PrimaryKeyConstraint("project_id", "session_id", "user_id", name="pk_session_users"),
    Index("ix_session_users_user", "project_id", "user_id", "session_id"),
)

users = Table(
    "users",
    metadata,
    Column("project_id", Integer, nullable=False),
    Column("user_id", String, nullable=False),
    Column("first_seen_ns", BigInteger, nullable=False),
    Column("last_seen_ns", BigInteger, nullable=False),
    Column("sessions", Integer, nullable=False),
    Column("turns", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("total_tokens", BigInteger, nullable=False),
    Column("cost", Float, nullable=False),
    PrimaryKeyConstraint("project_id", "user_id", name="pk_users"),
    Index("ix_users_last_seen", "project_id", "last_seen_ns", "user_id"),
    Index("ix_users_first_seen", "project_id", "first_seen_ns", "user_id"),
    Index("ix_users_sessions", "project_id", "sessions", "user_id"),
    Index("ix_users_turns", "project_id", "turns", "user_id"),
    Index("ix_users_tokens", "project_id", "total_tokens", "user_id"),
    Index("ix_users_cost", "project_id", "cost", "user_id"),
    Index("ix_users_errors", "project_id", "errors", "user_id"),
)

# A trace's tags and metadata pairs (:mod:`.labels`), read at ingest from its spans' ``tag.tags`` and
# ``metadata``: "sessions/traces with tag X / with key K = V" and "group by tag" read a range of the
# primary key, then ``traces`` by its unique key; ``ix_*_trace`` finds a trace's rows (erase).
trace_tags = Table(
    "trace_tags",
    metadata,
    Column("project_id", Integer, nullable=False),
    Column("trace_id", String, nullable=False),
    Column("tag", String, nullable=False),
    PrimaryKeyConstraint("project_id", "tag", "trace_id", name="pk_trace_tags"),
    Index("ix_trace_tags_trace", "project_id", "trace_id"),
    sqlite_with_rowid=False,  # the primary key is the table: each row stored once (migration 0012)
)

trace_metadata = Table(
    "trace_metadata",
    metadata,
    Column("project_id", Integer, nullable=False),
    Column("trace_id", String, nullable=False),
    Column("key", String, nullable=False),
    Column("value", String, nullable=False),  # text: a string as is, other JSON values as compact JSON
    PrimaryKeyConstraint("project_id", "key", "value", "trace_id", name="pk_trace_metadata"),
    Index("ix_trace_metadata_trace", "project_id", "trace_id"),
    sqlite_with_rowid=False,  # the primary key is the table: each row stored once (migration 0012)
)

annotations = Table(
    "annotations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, nullable=False),
    Column("target_kind", String, nullable=False),  # span | trace | session | user
    Column("target_id", String, nullable=False),
    Column("name", String, nullable=False),
    Column("label", String, nullable=True),
    Column("score", Float, nullable=True),
    Column("explanation", Text, nullable=True),
    Column("annotator_kind", String, nullable=False),  # HUMAN | LLM | CODE
    Column("identifier", String, nullable=False, default=""),
    Column("metadata", Text, nullable=False, default="{}"),
    Column("created_ns", BigInteger, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
    UniqueConstraint("project_id", "target_kind", "target_id", "name", "identifier", name="uq_annotations_target"),
    Index("ix_annotations_name", "project_id", "name", "target_kind"),
)

annotation_configs = Table(
    "annotation_configs",
    metadata,
    Column("project_id", Integer, nullable=False),
    Column("name", String, nullable=False),
    Column("kind", String, nullable=False),  # categorical | continuous | freeform
    Column("labels", Text, nullable=False, default="[]"),  # JSON [{label, polarity, score}]
    Column("direction", String, nullable=False),  # higher_is_better | lower_is_better
    Column("min_score", Float, nullable=True),
    Column("max_score", Float, nullable=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_ns", BigInteger, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
    PrimaryKeyConstraint("project_id", "name", name="pk_annotation_configs"),
)

eval_runs = Table(
    "eval_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, nullable=False),
    Column("evaluators", Text, nullable=False),  # JSON array of evaluator names
    Column("filters", Text, nullable=False, default="{}"),  # JSON: session_ids, since, identifier, closed_only
    Column("status", String, nullable=False),  # queued | running | done | failed | interrupted
    Column("done", Integer, nullable=False, default=0),  # (evaluator, session) pairs finished
    Column("total", Integer, nullable=True),
    Column("report", Text, nullable=True),  # JSON, once finished
    Column("error", Text, nullable=True),
    Column("runner", String, nullable=True),  # host:pid:token of the process running it
    Column("heartbeat_ns", BigInteger, nullable=True),
    Column("created_ns", BigInteger, nullable=False),
    Column("started_ns", BigInteger, nullable=True),
    Column("finished_ns", BigInteger, nullable=True),
    Index("ix_eval_runs_project", "project_id", "id"),
)

# --- security (DESIGN §9): API keys, people and their logins ---------------------------------------

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String, nullable=False, unique=True),
    Column("role", String, nullable=False),  # auth.roles.KEY_ROLES
    Column("projects", Text, nullable=True),  # JSON array of project names; NULL: every project
    Column("digest", String, nullable=False, unique=True),  # SHA-256 of the key (the key is never stored)
    Column("hint", String, nullable=False),  # the key's first characters, to tell keys apart in lists
    Column("created_ns", BigInteger, nullable=False),
)

people = Table(
    "people",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String, nullable=False, unique=True),
    Column("role", String, nullable=False),  # auth.roles.USER_ROLES
    Column("password_hash", String, nullable=False),  # argon2id (auth.passwords)
    Column("failed_logins", Integer, nullable=False, default=0),  # in a row, since the last success
    Column("locked_until_ns", BigInteger, nullable=True),  # throttled until then
    Column("created_ns", BigInteger, nullable=False),
)

logins = Table(
    "logins",
    metadata,
    Column("digest", String, primary_key=True),  # SHA-256 of the session cookie's token
    Column("person_id", Integer, nullable=False),
    Column("csrf_token", String, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("expires_ns", BigInteger, nullable=False),
    Index("ix_logins_person", "person_id"),
)
