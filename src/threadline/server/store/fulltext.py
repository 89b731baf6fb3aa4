"""Full-text search over turn text: SQLite FTS5 or PostgreSQL ``tsvector`` (dialect lives here).

:func:`matching_traces` turns a user's free-text query into a selectable of ``traces`` values;
the query layer composes it into its own statements. User text never reaches the FTS
query language unquoted: every word becomes a quoted term (the last one a prefix), all required.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, func, literal_column, select, text

from threadline.server.store import schema as t

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 16


class EmptySearch(ValueError):
    """The query has no searchable word (only punctuation or spaces)."""


def terms(query: str) -> list[str]:
    """The words of a free-text query, lower-cased, at most :data:`MAX_TERMS`."""
    return [w.lower() for w in _WORD.findall(query)][:MAX_TERMS]


def _fts5_query(words: list[str]) -> str:
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def matching_traces(dialect: str, project_id: int, query: str, column: str = "id") -> Select[tuple[Any]]:
    """``SELECT traces.<column>`` of the project's traces whose input or output matches ``query``.

    On SQLite the full-text index is read first and each hit is looked up by rowid; the unary
    ``+`` keeps the planner from walking the project's index of traces instead, which costs a
    scan of every turn of the project.
    """
    words = terms(query)
    if not words:
        raise EmptySearch(f"the search {query!r} has no word to look for")
    selected = t.traces.c[column]
    if dialect == "sqlite":
        hits = fts_hits(dialect, query)
        assert hits is not None
        return select(selected).where(t.traces.c.id.in_(hits), literal_column("+traces.project_id") == project_id)
    tsquery = " & ".join([*(_pg_quote(w) for w in words[:-1]), _pg_quote(words[-1]) + ":*"])
    condition: ColumnElement[bool] = literal_column("traces.search").op("@@")(func.to_tsquery("simple", tsquery))
    return select(selected).where(t.traces.c.project_id == project_id, condition)


def _pg_quote(word: str) -> str:
    return "'" + word.replace("'", "''").replace("\\", "\\\\") + "'"


def fts_hits(dialect: str, query: str) -> Select[tuple[int]] | None:
    """On SQLite, ``SELECT rowid`` of every turn (any project) matching ``query``; else ``None``."""
    if dialect != "sqlite":
        return None
    words = terms(query)
    if not words:
        raise EmptySearch(f"the search {query!r} has no word to look for")
    fts = text("SELECT rowid FROM trace_text WHERE trace_text MATCH :fts_query").bindparams(
        fts_query=_fts5_query(words)
    ).columns(rowid=t.traces.c.id.type)
    sub = fts.subquery("fts")
    return select(sub.c.rowid)


def count_hits(conn: Connection, project_id: int, query: str) -> int:
    """How many of the project's turns match ``query`` (cheap: answered from the index)."""
    hits = fts_hits(conn.dialect.name, query)
    if hits is None:
        matches = matching_traces(conn.dialect.name, project_id, query).subquery()
        return int(conn.execute(select(func.count()).select_from(matches)).scalar() or 0)
    return int(conn.execute(select(func.count()).select_from(hits.subquery())).scalar() or 0)
