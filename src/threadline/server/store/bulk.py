"""Bulk write primitives of the batch writer, per dialect.

- :meth:`Bulk.driver_sql` compiles a Core statement once into the driver's SQL with named
  parameters, so a list of dicts runs as a plain ``executemany`` without SQLAlchemy's per-row
  parameter processing (a large share of the writer's time otherwise).
- :meth:`Bulk.returning` runs ``INSERT … RETURNING`` for many rows through psycopg's own
  ``executemany(returning=True)`` (pipeline mode, one short statement); SQLAlchemy's multi-row
  VALUES statements would be re-parsed by psycopg each time.
- :meth:`Bulk.rows_in` reads the rows of many keys at once (chunked ``IN`` lists on SQLite, an
  array on PostgreSQL); :meth:`Bulk.existing` answers "which of these keys are stored" with it.
  On SQLite writers are serialized (``BEGIN IMMEDIATE``), so the answer read inside the
  transaction is exact; on PostgreSQL ``ON CONFLICT DO NOTHING RETURNING`` is used instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, insert
from sqlalchemy.dialects import postgresql, sqlite

_CHUNK = 500


class Bulk:
    """Dialect-aware bulk statements, with a cache of compiled SQL."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self._compiled: dict[tuple[int, tuple[str, ...]], tuple[Any, str]] = {}
        self._plain_inserts: dict[str, Any] = {}

    def driver_sql(self, stmt: Any, columns: Sequence[str] | None = None) -> str:
        """The driver SQL of ``stmt`` (for an INSERT, ``columns`` names the values given)."""
        key = (id(stmt), tuple(columns or ()))
        if key not in self._compiled:
            if self.dialect == "sqlite":
                dialect: Any = sqlite.dialect(paramstyle="named")
            else:
                dialect = postgresql.psycopg.dialect(paramstyle="pyformat")  # type: ignore[no-untyped-call]
            compiled = stmt.compile(dialect=dialect, column_keys=list(columns) if columns else None)
            self._compiled[key] = (stmt, str(compiled))  # keep stmt alive: its id is the key
        return self._compiled[key][1]

    def returning(self, tx: Connection, stmt: Any, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Execute ``stmt`` (an INSERT … RETURNING) for every row on PostgreSQL; the returned rows."""
        cursor = tx.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(self.driver_sql(stmt, list(rows[0])), rows, returning=True)
            out: list[tuple[Any, ...]] = []
            while True:
                out.extend(tuple(r) for r in cursor.fetchall())
                if not cursor.nextset():
                    return out
        finally:
            cursor.close()

    def rows_in(self, tx: Connection, table: str, columns: Sequence[str], key: str, project_id: int,
                values: Iterable[Any], *, lock: bool = False) -> list[tuple[Any, ...]]:
        """``columns`` of the rows of ``table`` in one project whose ``key`` is among ``values``.

        Driver SQL, compiled once per shape: SQLite ``IN`` lists of at most 500 values,
        PostgreSQL ``= ANY(array)``. ``lock`` (PostgreSQL) locks the rows until commit, taken
        in ``key`` order so concurrent writers cannot deadlock on them.
        """
        ordered = sorted(set(values))
        select_list = ", ".join(columns)
        if self.dialect == "postgresql":
            sql = (f"SELECT {select_list} FROM {table} WHERE project_id = %s AND {key} = ANY(%s) ORDER BY {key}"
                   + (" FOR UPDATE" if lock else ""))
            return [tuple(r) for r in tx.exec_driver_sql(sql, (project_id, ordered))]
        found: list[tuple[Any, ...]] = []
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start:start + _CHUNK]
            sql = f"SELECT {select_list} FROM {table} WHERE project_id = ? AND {key} IN ({','.join('?' * len(chunk))})"
            found.extend(tuple(r) for r in tx.exec_driver_sql(sql, (project_id, *chunk)))
        return found

    def existing(self, tx: Connection, table: str, columns: Sequence[str], keys: Iterable[tuple[Any, ...]]
                 ) -> set[tuple[Any, ...]]:
        """Stored ``columns`` tuples of ``table`` whose first two columns match some of ``keys``
        (``keys`` start with the project id and the value looked up by ``IN``)."""
        by_project: dict[Any, set[Any]] = defaultdict(set)
        for key in keys:
            by_project[key[0]].add(key[1])
        found: set[tuple[Any, ...]] = set()
        for pid, values in by_project.items():
            found.update(self.rows_in(tx, table, columns, columns[1], pid, values))
        return found

    def create_missing(self, tx: Connection, table: Table, keys: tuple[str, ...], rows: list[dict[str, Any]]
                       ) -> list[tuple[Any, ...]]:
        """Insert the rows whose key is not stored yet; the keys of the rows created."""
        if self.dialect == "postgresql":
            stmt = self.insert(table).on_conflict_do_nothing(index_elements=list(keys)).returning(
                *(table.c[k] for k in keys))
            return self.returning(tx, stmt, rows)
        wanted = {tuple(row[k] for k in keys): row for row in rows}
        stored = self.existing(tx, table.name, keys, wanted)
        created = [key for key in wanted if key not in stored]
        if created:
            fresh = [wanted[k] for k in created]
            tx.exec_driver_sql(self.driver_sql(self._plain_insert(table), list(fresh[0])), fresh)
        return created

    def _plain_insert(self, table: Table) -> Any:
        if table.name not in self._plain_inserts:
            self._plain_inserts[table.name] = insert(table)
        return self._plain_inserts[table.name]
