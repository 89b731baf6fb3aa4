"""Finding turns inside one conversation: full-text search over the whole session, and the page
cursor that opens a long session at a given turn (search results, "jump to latest turn")."""

from __future__ import annotations

from sqlalchemy import Connection, select

from threadline.server.query import cursor as cursors
from threadline.server.query.errors import InvalidQuery
from threadline.server.query.projects import project_id
from threadline.server.store import schema as t
from threadline.server.store.fulltext import EmptySearch, matching_traces


def matching_turns(conn: Connection, project: str, session_id: str, q: str) -> list[int]:
    """Positions (0-based, in the session's turn order) of every turn one of whose traces matches
    ``q`` (every word, the last as a prefix), however long the session."""
    pid = project_id(conn, project)
    if pid is None:
        return []
    tr, tu = t.traces, t.turns
    try:
        hits = matching_traces(conn.dialect.name, pid, q, "turn_key").where(tr.c.session_id == session_id)
    except EmptySearch as exc:
        raise InvalidQuery(str(exc)) from exc
    keys = set(conn.execute(hits).scalars())
    if not keys:
        return []
    order = conn.execute(select(tu.c.turn_key).where(tu.c.project_id == pid, tu.c.session_id == session_id)
                         .order_by(*t.TURN_ORDER)).scalars()
    return [index for index, key in enumerate(order) if key in keys]


def turn_cursor_at(conn: Connection, project: str, session_id: str, index: int) -> str | None:
    """The ``turn_cursor`` of a session page that starts at turn ``index`` (``None``: the first page)."""
    if index <= 0:
        return None
    pid = project_id(conn, project)
    if pid is None:
        return None
    tu = t.turns
    row = conn.execute(select(tu.c.start_ns, tu.c.turn_key).where(tu.c.project_id == pid,
                                                                  tu.c.session_id == session_id)
                       .order_by(*t.TURN_ORDER).offset(index - 1).limit(1)).first()
    if row is None:
        raise InvalidQuery(f"the session has no turn {index + 1}")
    return cursors.encode(row.start_ns, row.turn_key, index)
