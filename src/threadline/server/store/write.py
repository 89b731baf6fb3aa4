"""Idempotent, set-based writes of span batches and of the rollups they change.

One call of :meth:`BatchWriter.write` runs inside one transaction (the writer's group commit):

1. insert the spans that are not stored yet — only those contribute to anything, so a resent
   batch changes no count (SQLite: an existence check inside the serialized transaction, only
   for traces that already have a row; PostgreSQL: ``ON CONFLICT DO NOTHING RETURNING``);
2. merge the new spans into their ``traces`` rows (:mod:`.turn_state`): stored rows are updated,
   new ones inserted whole; add the new spans' tags and metadata pairs to ``trace_tags`` and
   ``trace_metadata`` (``ON CONFLICT DO NOTHING``: every span of a trace usually carries the same);
3. refresh the full-text index of the traces whose text changed (SQLite FTS5; PostgreSQL keeps a
   generated ``tsvector`` column up to date by itself);
4. fold the changed traces into their turns (:mod:`.turns`);
5. apply the difference to sessions, users and projects (:mod:`.rollups`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, bindparam, select

from threadline.server.store import schema as t
from threadline.server.store.bulk import Bulk
from threadline.server.store.fulltext import create_search_table, index_text, unindex_text
from threadline.server.store.records import SPAN_COLUMNS_AT, SPAN_COLUMNS_END, SpanRecord
from threadline.server.store.rollups import News, Olds, RollupWriter
from threadline.server.store.turn_state import TRACE_COLUMNS, TRACE_FIELDS, TraceState, merge_spans, trace_row
from threadline.server.store.turns import TurnWriter

#: The columns of ``spans``: the project, then the record's fields from ``trace_id`` on.
_SPAN_COLUMNS = ("project_id", *(f.removesuffix("_json") for f in SpanRecord._fields[SPAN_COLUMNS_AT:SPAN_COLUMNS_END]))
_SQLITE_INSERT_SPAN = (
    f"INSERT INTO spans ({', '.join(_SPAN_COLUMNS)}) VALUES ({', '.join('?' * len(_SPAN_COLUMNS))})"
)
_SQLITE_INSERT_TRACE = (
    f"INSERT INTO traces ({', '.join(TRACE_COLUMNS)}) VALUES ({', '.join('?' * len(TRACE_COLUMNS))})"
)
_UPDATE_TRACE = f"UPDATE traces SET {', '.join(f'{n} = ?' for n in TRACE_FIELDS)} WHERE id = ?"


@dataclass(slots=True)
class BatchResult:
    """What one batch changed (for logs, tests and the live UI)."""

    spans: int = 0
    duplicates: int = 0
    new_traces: int = 0
    sessions: set[tuple[int, str]] = field(default_factory=set)


class BatchWriter:
    """Writes span batches for one store dialect."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._bulk = Bulk(dialect)
        self._insert = self._bulk.insert
        self._turns = TurnWriter(self._bulk)
        self._rollups = RollupWriter(self._bulk)
        self._project_id_sql = self._bulk.driver_sql(select(t.projects.c.id).where(
            t.projects.c.name == bindparam("name")))
        self._update_trace_sql = _UPDATE_TRACE.replace("?", "%s") if dialect == "postgresql" else _UPDATE_TRACE
        mark = "%s" if dialect == "postgresql" else "?"
        self._insert_tag_sql = (f"INSERT INTO trace_tags (project_id, trace_id, tag) VALUES ({mark}, {mark}, {mark}) "
                                "ON CONFLICT DO NOTHING")
        self._insert_metadata_sql = (f"INSERT INTO trace_metadata (project_id, trace_id, key, value) VALUES "
                                     f"({mark}, {mark}, {mark}, {mark}) ON CONFLICT DO NOTHING")

    # --- projects ---------------------------------------------------------------------------------
    def project_ids(self, tx: Connection, names: Iterable[str], now_ns: int) -> dict[str, int]:
        """Ids of the named projects, creating missing ones.

        Looked up on every batch (one indexed lookup per project), never cached: another process may have
        erased a project since the last batch.
        """
        wanted = sorted(set(names))  # a batch names one project, or a few: one compiled lookup each
        found = self._project_rows(tx, wanted)
        missing = [n for n in wanted if n not in found]
        if missing:
            tx.execute(
                self._insert(t.projects).on_conflict_do_nothing(index_elements=["name"]),
                [{"name": n, "spans": 0, "traces": 0, "sessions": 0, "users": 0, "created_ns": now_ns,
                  "settings": "{}"} for n in missing],
            )
            found.update(self._project_rows(tx, missing))
            for name in missing:  # a project's own full-text table comes with it (SQLite)
                create_search_table(tx, found[name])
        return found

    def _project_rows(self, tx: Connection, names: list[str]) -> dict[str, int]:
        found = {}
        for name in names:
            row = tx.exec_driver_sql(self._project_id_sql, {"name": name}).first()
            if row is not None:
                found[name] = row[0]
        return found

    # --- the batch --------------------------------------------------------------------------------
    def write(self, tx: Connection, records: Sequence[SpanRecord], now_ns: int) -> BatchResult:
        """Store ``records`` and update every rollup, inside the caller's transaction."""
        result = BatchResult()
        if not records:
            return result
        pids = self.project_ids(tx, (r.project for r in records), now_ns)
        unique: dict[tuple[int, str, str], SpanRecord] = {}
        for r in records:
            unique.setdefault((pids[r.project], r.trace_id, r.span_id), r)
        stored = self._stored_traces(tx, sorted({(key[0], key[1]) for key in unique}))
        inserted = self._insert_spans(tx, unique, stored)
        result.spans = len(inserted)
        result.duplicates = len(records) - len(inserted)
        if not inserted:
            return result
        grouped: dict[tuple[int, str], list[SpanRecord]] = defaultdict(list)
        for key in inserted:
            grouped[(key[0], key[1])].append(unique[key])
        by_trace = {key: sorted(grouped[key], key=_start) for key in sorted(grouped)}  # a fixed lock order
        olds, news = self._merge_traces(tx, by_trace, stored)
        self._insert_labels(tx, by_trace)
        result.new_traces = sum(1 for old in olds.values() if old is None)
        self._update_search(tx, olds, news)
        turn_olds, turn_news = self._turns.apply(tx, olds, news)
        self._rollups.apply(tx, olds, news, turn_olds, turn_news, inserted, now_ns)
        result.sessions = {(n.project_id, n.session_id) for n in news.values() if n.session_id}
        return result

    def _stored_traces(self, tx: Connection, keys: list[tuple[int, str]]) -> dict[tuple[int, str], TraceState]:
        """The stored rollups of these traces (on PostgreSQL locked until commit, in key order)."""
        found: dict[tuple[int, str], TraceState] = {}
        per_project: dict[int, list[str]] = defaultdict(list)
        for pid, tid in keys:
            per_project[pid].append(tid)
        for pid, tids in per_project.items():
            for row in self._bulk.rows_in(tx, "traces", TRACE_COLUMNS, "trace_id", pid, tids,
                                          lock=self.dialect == "postgresql"):
                state = TraceState(*row)
                found[(pid, state.trace_id)] = state
        return found

    def _insert_spans(
        self, tx: Connection, unique: dict[tuple[int, str, str], SpanRecord],
        stored: dict[tuple[int, str], TraceState],
    ) -> set[tuple[int, str, str]]:
        """Insert the spans that are not stored yet; return the keys of those inserted."""
        if self.dialect == "sqlite":
            return self._insert_spans_sqlite(tx, unique, stored)
        rows = [dict(zip(_SPAN_COLUMNS, (key[0], *_span_row(r)), strict=True)) for key, r in unique.items()]
        # RETURNING is exact even with concurrent writers: a conflicting row waits for the other
        # transaction and is then skipped.
        stmt = self._insert(t.spans).on_conflict_do_nothing(
            index_elements=["project_id", "trace_id", "span_id"]
        ).returning(t.spans.c.project_id, t.spans.c.trace_id, t.spans.c.span_id)
        return {(row[0], row[1], row[2]) for row in self._bulk.returning(tx, stmt, rows)}

    def _insert_spans_sqlite(
        self, tx: Connection, unique: dict[tuple[int, str, str], SpanRecord],
        stored: dict[tuple[int, str], TraceState],
    ) -> set[tuple[int, str, str]]:
        # A span is stored in the transaction that creates or updates its trace's row, and SQLite
        # serializes writers: only spans of traces that have a row can be stored already, and
        # which of those are, read inside the transaction, is exact. A plain executemany is much
        # cheaper than INSERT … RETURNING.
        maybe_stored = [key for key in unique if (key[0], key[1]) in stored]
        existing = self._bulk.existing(tx, "spans", ("project_id", "trace_id", "span_id"), maybe_stored) \
            if maybe_stored else set()
        fresh = [key for key in unique if key not in existing] if existing else list(unique)
        if fresh:
            tx.exec_driver_sql(_SQLITE_INSERT_SPAN, [(key[0], *_span_row(unique[key])) for key in fresh])
        return set(fresh)

    def _merge_traces(
        self, tx: Connection, by_trace: dict[tuple[int, str], list[SpanRecord]],
        stored: dict[tuple[int, str], TraceState],
    ) -> tuple[Olds, News]:
        """Fold the new spans into their traces' rows: stored rows are updated, new rows inserted whole.

        Returns each trace's row before this batch (``None`` for a new trace) and after it.
        """
        olds: Olds = {}
        news: News = {}
        created: list[TraceState] = []
        for key, spans in by_trace.items():
            state = stored.get(key)
            if state is None:
                state = TraceState(0, key[0], key[1])
                merge_spans(state, spans, fresh=True)
                created.append(state)
            else:
                olds[key] = state.copy()
                merge_spans(state, spans, fresh=False)
                news[key] = state
        conflicts = self._insert_traces(tx, created)
        for state in created:
            key = (state.project_id, state.trace_id)
            if key in conflicts:  # PostgreSQL: another process created it meanwhile; merge into its row
                row = conflicts[key]
                olds[key] = row.copy()
                merge_spans(row, by_trace[key], fresh=False)
                news[key] = row
            else:
                olds[key] = None
                news[key] = state
        changed = [s for k, s in news.items() if olds[k] is not None]
        if changed:
            tx.exec_driver_sql(self._update_trace_sql, [(*(getattr(s, n) for n in TRACE_FIELDS), s.id)
                                                        for s in changed])
        return olds, news

    def _insert_traces(self, tx: Connection, created: list[TraceState]) -> dict[tuple[int, str], TraceState]:
        """Insert new trace rows, giving each its id. On PostgreSQL, returns the stored rows (locked)
        of those another process created since they were looked up: the batch merges into them."""
        if not created:
            return {}
        if self.dialect == "sqlite":
            # Writers are serialized: the ids after the largest one are free (they become the
            # rowids of the full-text index too).
            first = (tx.exec_driver_sql("SELECT max(id) FROM traces").scalar() or 0) + 1
            for offset, state in enumerate(created):
                state.id = first + offset
            tx.exec_driver_sql(_SQLITE_INSERT_TRACE, [trace_row(s) for s in created])
            return {}
        stmt = self._insert(t.traces).on_conflict_do_nothing(index_elements=["project_id", "trace_id"]).returning(
            t.traces.c.project_id, t.traces.c.trace_id, t.traces.c.id)
        ids = {(row[0], row[1]): row[2] for row in self._bulk.returning(tx, stmt, [
            {"project_id": s.project_id, "trace_id": s.trace_id, **{n: getattr(s, n) for n in TRACE_FIELDS}}
            for s in created])}
        for state in created:
            state.id = ids.get((state.project_id, state.trace_id), 0)
        missing = sorted((s.project_id, s.trace_id) for s in created if s.id == 0)
        return self._stored_traces(tx, missing) if missing else {}

    def _insert_labels(self, tx: Connection, by_trace: dict[tuple[int, str], list[SpanRecord]]) -> None:
        """Add the tags and metadata pairs of the new spans to their traces (already there: skipped)."""
        tags: set[tuple[int, str, str]] = set()
        pairs: set[tuple[int, str, str, str]] = set()
        for (pid, tid), spans in by_trace.items():
            for r in spans:
                if r.tags:
                    tags.update((pid, tid, tag) for tag in r.tags)
                if r.metadata:
                    pairs.update((pid, tid, key, value) for key, value in r.metadata)
        if tags:
            tx.exec_driver_sql(self._insert_tag_sql, sorted(tags))
        if pairs:
            tx.exec_driver_sql(self._insert_metadata_sql, sorted(pairs))

    def _update_search(
        self, tx: Connection, olds: Olds, news: News) -> None:
        if self.dialect != "sqlite":
            return  # PostgreSQL: generated tsvector column
        changed = [s for k, s in news.items() if olds[k] is None or (olds[k].input, olds[k].output) != (  # type: ignore[union-attr]
            s.input, s.output)]
        for pid in sorted({s.project_id for s in changed}):  # one full-text table per project
            # The index keeps no copy of the text (external content): the text it indexed before is
            # the trace's old text, which it is told to forget before the new text is added.
            stale = [(s.id, old.input or "", old.output or "") for s in changed if s.project_id == pid and (
                old := olds[(s.project_id, s.trace_id)]) is not None and (old.input or old.output)]
            unindex_text(tx, pid, stale)
            index_text(tx, pid, [(s.id, s.input or "", s.output or "") for s in changed if s.project_id == pid and (
                s.input or s.output)])

def _span_row(record: SpanRecord) -> tuple[object, ...]:
    """The record's values for the columns of ``spans`` after ``project_id``."""
    return tuple(record)[SPAN_COLUMNS_AT:SPAN_COLUMNS_END]


def _start(record: SpanRecord) -> int:
    return record.start_ns


