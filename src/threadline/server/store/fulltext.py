"""Full-text search over turn text: SQLite FTS5 or PostgreSQL ``tsvector`` (dialect lives here).

:func:`matching_traces` turns a user's free-text query into a selectable of ``traces`` values;
the query layer composes it into its own statements. User text never reaches the FTS
query language unquoted: every word becomes a quoted term (the last one a prefix), all required.

On SQLite each project has its own FTS5 table (:func:`search_table`, rowid = ``traces.id``),
made with the project's row: a search costs what the project's own index holds, so a small
project's search stays fast next to a big one (a global index made a one-letter prefix search of a
3-session project walk every project's matches). On PostgreSQL the generated ``tsvector`` column
is filtered by the project in the same statement.

A search is every word of the query, the last one as a prefix, in the input or the output: no
phrases, no columns, no ranking. So the FTS5 tables keep only which traces hold each word
(``detail=none``: no column or position lists, a quarter of the full index, migration 0015), and
a query word is what the tokenizer calls a word (letters and digits: ``_`` separates, as in
``unicode61``), never a phrase of several.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, exists, func, literal_column, select, text

from threadline.server.store import schema as t

#: A word as the ``unicode61`` tokenizer sees one: letters and digits (``\w`` without ``_``).
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
#: How a project's FTS5 table is made (migrations 0010 and 0015 make the same).
FTS5_OPTIONS = "tokenize='unicode61 remove_diacritics 2', detail=none"
MAX_TERMS = 16


class EmptySearch(ValueError):
    """The query has no searchable word (only punctuation or spaces)."""



def search_table(project_id: int) -> str:
    """The name of a project's SQLite full-text table (rowid = ``traces.id``)."""
    return f"trace_text_{int(project_id)}"


def search_source(project_id: int) -> str:
    """The view a project's full-text table reads its text from: the project's ``traces`` rows."""
    return f"trace_text_{int(project_id)}_source"


def create_search_table(tx: Connection, project_id: int) -> None:
    """Make the project's full-text table if it is missing (SQLite; nothing on PostgreSQL).

    The table indexes the turn text without a copy of it (FTS5 *external content*): the text
    stays in ``traces`` and the index reads it, when it needs to, through a view of the project's
    rows. Keeping the index in step is the writer's job (:func:`index_text`, :func:`unindex_text`).
    """
    if tx.dialect.name == "sqlite":
        pid = int(project_id)
        tx.exec_driver_sql(f"CREATE VIEW IF NOT EXISTS {search_source(pid)} AS "
                           f"SELECT id, input, output FROM traces WHERE project_id = {pid}")
        tx.exec_driver_sql(f"CREATE VIRTUAL TABLE IF NOT EXISTS {search_table(pid)} USING fts5(input, output, "
                           f"content='{search_source(pid)}', content_rowid='id', {FTS5_OPTIONS})")


def drop_search_table(tx: Connection, project_id: int) -> None:
    """Drop the project's full-text table and its view (SQLite; nothing on PostgreSQL)."""
    if tx.dialect.name == "sqlite":
        tx.exec_driver_sql(f"DROP TABLE IF EXISTS {search_table(project_id)}")
        tx.exec_driver_sql(f"DROP VIEW IF EXISTS {search_source(project_id)}")


def index_text(tx: Connection, project_id: int, rows: Sequence[tuple[int, str, str]]) -> None:
    """Add ``(traces.id, input, output)`` to the project's full-text index (SQLite)."""
    if rows:
        table = search_table(project_id)
        tx.exec_driver_sql(f"INSERT INTO {table} (rowid, input, output) VALUES (?, ?, ?)", list(rows))


def unindex_text(tx: Connection, project_id: int, rows: Sequence[tuple[int, str, str]]) -> None:
    """Remove ``(traces.id, input, output)`` from the project's full-text index (SQLite): the
    values must be the ones indexed (the index keeps no copy to look them up)."""
    if rows:
        table = search_table(project_id)
        tx.exec_driver_sql(f"INSERT INTO {table} ({table}, rowid, input, output) VALUES ('delete', ?, ?, ?)",
                           list(rows))


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
        hits = fts_hits(dialect, query, project_id)
        assert hits is not None
        return select(selected).where(t.traces.c.id.in_(hits), literal_column("+traces.project_id") == project_id)
    return select(selected).where(t.traces.c.project_id == project_id, _pg_condition(words))


def _pg_condition(words: list[str]) -> ColumnElement[bool]:
    if not words:
        raise EmptySearch("the search has no word to look for")
    tsquery = " & ".join([*(_pg_quote(w) for w in words[:-1]), _pg_quote(words[-1]) + ":*"])
    condition: ColumnElement[bool] = literal_column("traces.search").op("@@")(func.to_tsquery("simple", tsquery))
    return condition


def _pg_quote(word: str) -> str:
    return "'" + word.replace("'", "''").replace("\\", "\\\\") + "'"


def fts_hits(dialect: str, query: str, project_id: int) -> Select[tuple[int]] | None:
    """On SQLite, ``SELECT rowid`` of the project's traces matching ``query``; else ``None``."""
    if dialect != "sqlite":
        return None
    words = terms(query)
    if not words:
        raise EmptySearch(f"the search {query!r} has no word to look for")
    table = search_table(project_id)
    fts = text(f"SELECT rowid FROM {table} WHERE {table} MATCH :fts_query").bindparams(
        fts_query=_fts5_query(words)
    ).columns(rowid=t.traces.c.id.type)
    sub = fts.subquery("fts")
    return select(sub.c.rowid)


def count_hits(conn: Connection, project_id: int, query: str, at_most: int) -> int:
    """How many of the project's traces match ``query``, counting no further than ``at_most`` (so a
    common word costs no more than a rare one)."""
    hits = fts_hits(conn.dialect.name, query, project_id)
    if hits is None:
        hits = matching_traces(conn.dialect.name, project_id, query)
    limited = hits.limit(at_most).subquery()
    return int(conn.execute(select(func.count()).select_from(limited)).scalar() or 0)


def session_has_match(dialect: str, project_id: int, query: str, session_id: ColumnElement[Any]) -> Any:
    """A condition on a sessions row: one of its turns matches ``query`` (``session_id`` is the
    outer query's column).

    Meant for common words: the outer query walks sessions in its sort order and probes each one
    through the ``traces`` session index until a page is full, whatever the planner's statistics
    say. On PostgreSQL ``OFFSET 0`` keeps the probe a correlated subquery (the planner would
    otherwise turn it into a join over every matching turn, 0.3 s for a word in 15 % of 330,000
    turns when statistics are stale after a bulk load, against 5 ms probing).
    """
    tr = t.traces
    probe = select(tr.c.id).where(tr.c.project_id == project_id, tr.c.session_id == session_id)
    if dialect == "sqlite":
        hits = fts_hits(dialect, query, project_id)
        assert hits is not None
        return exists(probe.where(tr.c.id.in_(hits)))
    return exists(probe.where(_pg_condition(terms(query))).offset(0))
