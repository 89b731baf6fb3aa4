"""Bytes on disk per table and per span: ``threadline doctor`` and the benchmarks.

SQLite: the ``dbstat`` virtual table when the library has it (pages of each table with its
indexes, full-text shadow tables under their index's name), else the file's page counts only.
PostgreSQL: ``pg_total_relation_size`` of each table of the current schema (heap, TOAST and
indexes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True, slots=True)
class Footprint:
    """What the database takes: total bytes, bytes per table (indexes included), stored spans."""

    total: int
    spans: int
    tables: dict[str, int] = field(default_factory=dict)
    method: str = ""

    def per_span(self, size: int | None = None) -> float:
        """Bytes per stored span of ``size`` (default: the whole database)."""
        return (self.total if size is None else size) / self.spans if self.spans else 0.0


def measure(conn: Connection) -> Footprint:
    """The footprint of the database ``conn`` is connected to (reads only)."""
    spans = int(conn.exec_driver_sql("SELECT coalesce(sum(spans), 0) FROM projects").scalar() or 0)
    if conn.dialect.name == "postgresql":
        relations = {str(name): int(size) for name, size in conn.exec_driver_sql(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' ORDER BY 2 DESC")}
        return Footprint(sum(relations.values()), spans, relations, "pg_total_relation_size")
    page_size = int(conn.exec_driver_sql("PRAGMA page_size").scalar() or 0)
    pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    try:
        rows = conn.exec_driver_sql(
            "SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat AS d "
            "LEFT JOIN sqlite_schema AS m ON m.name = d.name GROUP BY 1 ORDER BY 2 DESC").all()
    except DBAPIError:  # SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
        return Footprint(page_size * pages, spans, {}, "page counts")
    virtual = [str(name) for (name,) in conn.exec_driver_sql(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'")]
    tables: dict[str, int] = {}
    for name, size in rows:
        owner = next((v for v in virtual if str(name).startswith(v + "_")), str(name))  # FTS5 shadow tables
        tables[owner] = tables.get(owner, 0) + int(size)
    return Footprint(page_size * pages, spans, dict(sorted(tables.items(), key=lambda kv: -kv[1])), "dbstat")
