"""Turns: a session's traces grouped by turn key, kept up at ingest (the ``turns`` table).

After a batch has merged its spans into their ``traces`` rows, :class:`TurnWriter` folds each
changed trace into its turn (:meth:`~.turn_state.TurnState.add_trace`): the stored turn rows
are read once per batch (locked on PostgreSQL, in key order), changed in memory and written
back. A trace with no user message of its own (a tool run as a root span) joins the session's
turn in progress when it arrives. A trace can change turns — its root span, with plain-text
input, can arrive after an LLM span whose message list named another turn — and a turn that
loses a trace is rebuilt from its remaining traces (rare: one indexed read). The old and new turn rows are what
:mod:`.rollups` turns into session and user increments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, delete, select

from threadline.server.store import schema as t
from threadline.server.store.bulk import Bulk
from threadline.server.store.turn_state import (
    STORED_TURN_COLUMNS,
    TRACE_COLUMNS,
    TraceState,
    TurnState,
    fold_turn,
    turn_row,
)

#: A turn's key: (project id, session id, turn key).
TurnId = tuple[int, str, str]
#: Turn rows before / after a batch (``None``: no such turn).
TurnRows = dict[TurnId, TurnState | None]

_CHUNK = 400
_TURN_FIELDS = STORED_TURN_COLUMNS[3:]
_INSERT = (f"INSERT INTO turns ({', '.join(STORED_TURN_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(STORED_TURN_COLUMNS))})")
#: A turn's input and output are those of two of its traces (stored once, in ``traces``): read with the turn.
_TEXT_JOIN = ("LEFT JOIN traces i ON i.project_id = r.project_id AND i.trace_id = r.input_trace_id "
              "LEFT JOIN traces o ON o.project_id = r.project_id AND o.trace_id = r.last_trace_id")
_UPDATE = (f"UPDATE turns SET {', '.join(f'{n} = ?' for n in _TURN_FIELDS)} "
           "WHERE project_id = ? AND session_id = ? AND turn_key = ?")
_DELETE = "DELETE FROM turns WHERE project_id = ? AND session_id = ? AND turn_key = ?"
#: The session's latest turn that started no later than a time (the turn in progress then).
_IN_PROGRESS = ("SELECT start_ns, turn_key FROM turns WHERE project_id = ? AND session_id = ? AND start_ns <= ? "
                "AND traces > 0 ORDER BY start_ns DESC, turn_key DESC LIMIT 1")
_SET_KEY = "UPDATE traces SET turn_key = ? WHERE id = ?"


def turn_of(trace: TraceState | None) -> TurnId | None:
    """The turn a trace counts in (``None`` for a trace without a session)."""
    if trace is None or trace.session_id is None:
        return None
    return trace.project_id, trace.session_id, trace.turn_key or trace.trace_id


class TurnWriter:
    """Folds a batch's trace changes into ``turns`` (one store dialect)."""

    def __init__(self, bulk: Bulk) -> None:
        self._bulk = bulk
        self._postgres = bulk.dialect == "postgresql"
        self._insert = _INSERT.replace("?", "%s") if self._postgres else _INSERT
        self._update = _UPDATE.replace("?", "%s") if self._postgres else _UPDATE
        self._delete = _DELETE.replace("?", "%s") if self._postgres else _DELETE
        self._in_progress = _IN_PROGRESS.replace("?", "%s") if self._postgres else _IN_PROGRESS
        self._set_key = _SET_KEY.replace("?", "%s") if self._postgres else _SET_KEY

    def apply(self, tx: Connection, olds: dict[tuple[int, str], TraceState | None],
              news: dict[tuple[int, str], TraceState]) -> tuple[TurnRows, TurnRows]:
        """Fold the changed traces (``olds``/``news``: their rows before and after the batch, already
        stored) into their turns; the touched turns' rows before and after."""
        followers = [n for n in news.values() if n.follows and n.session_id is not None and n.turn_key is None]
        if followers:
            self._assign(tx, followers, news)
        moves: list[tuple[TurnId | None, TurnId | None, TraceState | None, TraceState]] = []
        touched: set[TurnId] = set()
        fresh: set[TurnId] = set()
        for key, new in news.items():
            old = olds[key]
            before, after = turn_of(old), turn_of(new)
            if before is None and after is None:
                continue
            touched.update(k for k in (before, after) if k is not None)
            moves.append((before, after, old, new))
            if old is None and after is not None and after[2] == new.trace_id:
                # A trace this batch created, a turn of its own: no other trace can be in that turn
                # yet (nor, on PostgreSQL, in another transaction: it would have the same trace).
                fresh.add(after)
        if not touched:
            return {}, {}
        ordered = sorted(touched - fresh)
        if self._postgres and ordered:  # rows to lock: create the missing ones first (placeholders)
            self._bulk.create_missing(tx, t.turns, ("project_id", "session_id", "turn_key"),
                                      [_placeholder(k) for k in ordered])
        stored = self._turns(tx, ordered) if ordered else {}
        old_rows: TurnRows = dict.fromkeys(fresh)
        for k in ordered:
            row = stored.get(k)
            old_rows[k] = row if row is not None and row.traces > 0 else None  # a placeholder counts nothing
        states: TurnRows = {k: (s.copy() if s is not None else None) for k, s in old_rows.items()}
        rebuild: set[TurnId] = set()
        for before, after, old, new in moves:
            if before is not None and before != after:
                rebuild.add(before)
            if after is not None:
                state = states[after]
                if state is None:
                    state = states[after] = TurnState(*after)
                state.add_trace(new, old if before == after else None)
        if rebuild:
            by_turn: dict[TurnId, list[TraceState]] = {k: [] for k in rebuild}
            for trace in self._traces(tx, sorted(rebuild)):
                tid = turn_of(trace)
                if tid in by_turn:
                    by_turn[tid].append(trace)
            for tid, traces in by_turn.items():
                states[tid] = fold_turn(*tid, traces)
        self._write(tx, stored, states)
        return old_rows, states

    def _assign(self, tx: Connection, followers: list[TraceState], news: dict[tuple[int, str], TraceState]) -> None:
        """Put each following trace (no user message of its own) in its session's turn in progress:
        the turn of the latest trace that starts a turn no later than it, among this batch's and the
        stored ones; with none, the trace is a turn of its own. Its ``traces`` row is updated."""
        starters: dict[tuple[int, str], list[tuple[int, str]]] = {}
        for n in news.values():
            if n.session_id is not None and not n.follows and n.turn_key is not None:
                starters.setdefault((n.project_id, n.session_id), []).append((n.start_ns, n.turn_key))
        updates = []
        for f in followers:
            assert f.session_id is not None
            best = max(((start, key) for start, key in starters.get((f.project_id, f.session_id), [])
                        if start <= f.start_ns), default=None)
            stored = tx.exec_driver_sql(self._in_progress, (f.project_id, f.session_id, f.start_ns)).first()
            if stored is not None and (best is None or stored[0] > best[0]):
                best = (stored[0], stored[1])
            f.turn_key = best[1] if best is not None else f.trace_id
            updates.append((f.turn_key, f.id))
        tx.exec_driver_sql(self._set_key, updates)

    def _turns(self, tx: Connection, keys: list[TurnId]) -> dict[TurnId, TurnState]:
        """The stored rows of these turns (locked until commit on PostgreSQL, in key order)."""
        rows = self._rows(tx, "turns", STORED_TURN_COLUMNS, keys, lock=self._postgres, text=True)
        return {(s.project_id, s.session_id, s.turn_key): s for s in (TurnState(*row) for row in rows)}

    def _traces(self, tx: Connection, keys: list[TurnId]) -> list[TraceState]:
        return [TraceState(*row) for row in self._rows(tx, "traces", TRACE_COLUMNS, keys, lock=False)]

    def _rows(self, tx: Connection, table: str, columns: Sequence[str], keys: list[TurnId], *, lock: bool,
              text: bool = False) -> list[tuple[Any, ...]]:
        """``columns`` of the ``table`` rows of these turns (an indexed lookup per key); ``text``:
        then the input of each row's ``input_trace_id`` and the output of its ``last_trace_id`` (turns)."""
        select_list = ", ".join(f"r.{c}" for c in columns) + (", i.input, o.output" if text else "")
        joined = f" {_TEXT_JOIN}" if text else ""
        on = "r.project_id = k.p AND r.session_id = k.s AND r.turn_key = k.t"
        if self._postgres:
            sql = (f"SELECT {select_list} FROM unnest(%s::int[], %s::text[], %s::text[]) AS k(p, s, t) "
                   f"JOIN {table} r ON {on}{joined}"
                   + (" ORDER BY r.session_id, r.turn_key FOR UPDATE OF r" if lock else ""))
            columns_of_keys = tuple(list(part) for part in zip(*keys, strict=True))
            return [tuple(row) for row in tx.exec_driver_sql(sql, columns_of_keys)]
        found: list[tuple[Any, ...]] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            values = ", ".join("(?, ?, ?)" for _ in chunk)
            sql = (f"SELECT {select_list} FROM (SELECT column1 AS p, column2 AS s, column3 AS t "
                   f"FROM (VALUES {values})) k CROSS JOIN {table} r ON {on}{joined}")
            found.extend(tuple(row) for row in tx.exec_driver_sql(sql, tuple(_flatten(chunk))))
        return found

    def _write(self, tx: Connection, stored: dict[TurnId, TurnState], states: TurnRows) -> None:
        inserts, updates, deletes = [], [], []
        for key, state in sorted(states.items()):
            if state is None:
                if key in stored:
                    deletes.append(key)
            elif key in stored:
                updates.append((*(getattr(state, n) for n in _TURN_FIELDS), *key))
            else:
                inserts.append(turn_row(state))
        if inserts:  # new turns (on PostgreSQL, those of new traces: the others have placeholders)
            tx.exec_driver_sql(self._insert, inserts)
        if updates:
            tx.exec_driver_sql(self._update, updates)
        if deletes:
            tx.exec_driver_sql(self._delete, deletes)


def rebuild_turns(tx: Connection, project_id: int, session_ids: Iterable[str]) -> None:
    """Rebuild every turn of these sessions from their traces (after an erase or a migration)."""
    tr = t.traces
    for sid in sorted(set(session_ids)):
        tx.execute(delete(t.turns).where(t.turns.c.project_id == project_id, t.turns.c.session_id == sid))
        rows = tx.execute(select(*(tr.c[c] for c in TRACE_COLUMNS)).where(
            tr.c.project_id == project_id, tr.c.session_id == sid)).all()
        groups: dict[str, list[TraceState]] = {}
        for row in rows:
            trace = TraceState(*row)
            groups.setdefault(trace.turn_key or trace.trace_id, []).append(trace)
        turns = [fold_turn(project_id, sid, key, traces) for key, traces in sorted(groups.items())]
        values = [dict(zip(STORED_TURN_COLUMNS, turn_row(turn), strict=True)) for turn in turns if turn is not None]
        if values:
            tx.execute(t.turns.insert(), values)


def _placeholder(key: TurnId) -> dict[str, Any]:
    """A turn row with no traces: on PostgreSQL, created so that it can be locked."""
    return dict(zip(STORED_TURN_COLUMNS, turn_row(TurnState(*key)), strict=True))


def _flatten(keys: list[TurnId]) -> Iterable[Any]:
    for key in keys:
        yield from key
