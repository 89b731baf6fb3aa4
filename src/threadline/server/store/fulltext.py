"""Full-text search over turn text: SQLite FTS5 or PostgreSQL ``tsvector`` (dialect lives here).

:func:`matching_trace_ids` turns a user's free-text query into a selectable of ``traces.id``
values; the query layer composes it into its own statements. User text never reaches the FTS
query language unquoted: every word becomes a quoted term (the last one a prefix), all required.
"""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, Select, func, literal_column, select, text

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


def matching_trace_ids(dialect: str, project_id: int, query: str) -> Select[tuple[int]]:
    """``SELECT traces.id`` of the project's traces whose input or output matches ``query``."""
    words = terms(query)
    if not words:
        raise EmptySearch(f"the search {query!r} has no word to look for")
    if dialect == "sqlite":
        fts = text("SELECT rowid FROM trace_text WHERE trace_text MATCH :fts_query").bindparams(
            fts_query=_fts5_query(words)
        ).columns(rowid=t.traces.c.id.type)
        sub = fts.subquery("fts")
        return select(t.traces.c.id).where(
            t.traces.c.project_id == project_id, t.traces.c.id.in_(select(sub.c.rowid))
        )
    condition: ColumnElement[bool] = literal_column("traces.search").op("@@")(
        func.to_tsquery("simple", " & ".join(f"{_pg_quote(w)}" for w in words[:-1]) +
                        (" & " if len(words) > 1 else "") + f"{_pg_quote(words[-1])}:*")
    )
    return select(t.traces.c.id).where(t.traces.c.project_id == project_id, condition)


def _pg_quote(word: str) -> str:
    return "'" + word.replace("'", "''").replace("\\", "\\\\") + "'"
