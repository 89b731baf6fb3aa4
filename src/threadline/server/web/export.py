"""The export model of a sessions list: its formats, its CSV columns, and how rows are streamed.

One home for what an exported session is: a JSON Lines line is the session exactly as the list
API's ``data`` items show it (:func:`session_record`; ``threadline export`` writes the same
record plus its ``turns``), and a CSV row is :data:`SESSION_CSV_COLUMNS`, declared once here.
CSV text cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return) are prefixed with ``'`` (OWASP "CSV injection").
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import Connection

from threadline.server.model import Page, SessionSummary
from threadline.server.store.engine import Store
from threadline.server.web.api.serialize import rfc3339, to_json

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ExportFormat:
    """A download format: its media type and file extension."""

    media_type: str
    extension: str


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "csv": ExportFormat("text/csv; charset=utf-8", "csv"),
    "jsonl": ExportFormat("application/x-ndjson; charset=utf-8", "jsonl"),
}
#: Rows read per query while streaming an export.
EXPORT_PAGE_SIZE = 500


def _json(value: Any) -> str:
    return json.dumps(to_json(value), ensure_ascii=False, separators=(",", ":"))


#: The CSV columns: header and value (lists and annotation summaries as JSON text).
SESSION_CSV_COLUMNS: tuple[tuple[str, Callable[[SessionSummary], Any]], ...] = (
    ("session_id", lambda s: s.session_id),
    ("project", lambda s: s.project),
    ("user_ids", lambda s: _json(s.user_ids)),
    ("start_time", lambda s: rfc3339(s.start_time)),
    ("end_time", lambda s: rfc3339(s.end_time)),
    ("duration_ms", lambda s: s.duration_ms),
    ("turns", lambda s: s.turns),
    ("spans", lambda s: s.spans),
    ("errors", lambda s: s.errors),
    ("prompt_tokens", lambda s: s.tokens.prompt),
    ("completion_tokens", lambda s: s.tokens.completion),
    ("total_tokens", lambda s: s.tokens.total),
    ("cost_usd", lambda s: s.cost_usd),
    ("latency_p50_ms", lambda s: s.latency_ms.p50),
    ("latency_p99_ms", lambda s: s.latency_ms.p99),
    ("first_input", lambda s: s.first_input),
    ("last_output", lambda s: s.last_output),
    ("annotations", lambda s: _json(s.annotations)),
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell: text a spreadsheet would evaluate gets a leading ``'``; ``None`` is empty."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def session_record(summary: SessionSummary) -> dict[str, Any]:
    """A session as JSON: the list API's ``SessionSummary`` object."""
    record: dict[str, Any] = to_json(summary)
    return record


def csv_lines(sessions: Iterable[SessionSummary]) -> Iterator[str]:
    """The header, then one CSV line per session."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(cells: Iterable[Any]) -> str:
        writer.writerow(cells)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(name for name, _ in SESSION_CSV_COLUMNS)
    for summary in sessions:
        yield line(csv_cell(value(summary)) for _, value in SESSION_CSV_COLUMNS)


def jsonl_lines(sessions: Iterable[SessionSummary]) -> Iterator[str]:
    """One JSON object per line per session."""
    for summary in sessions:
        yield json.dumps(session_record(summary), ensure_ascii=False) + "\n"


LINES: dict[str, Callable[[Iterable[SessionSummary]], Iterator[str]]] = {"csv": csv_lines, "jsonl": jsonl_lines}


def every_row(first: Page[T], more: Callable[[Connection, str], Page[T]], store: Store) -> Iterator[T]:
    """The rows of ``first`` (read while the request was checked), then of every page after it,
    read with a connection of the stream's own, a page at a time."""
    yield from first.data
    cursor = first.next_cursor
    if cursor is None:
        return
    with store.read() as conn:
        while cursor is not None:
            page = more(conn, cursor)
            yield from page.data
            cursor = page.next_cursor


def content_disposition(what: str, project: str, fmt: str, now: datetime | None = None) -> str:
    """``attachment`` with a file name like ``sessions-demo-20261201T2300Z.csv`` (ASCII, plus the
    project's own name in ``filename*``)."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%MZ")
    extension = EXPORT_FORMATS[fmt].extension
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", project).strip("._") or "project"
    ascii_name = f"{what}-{safe[:80]}-{stamp}.{extension}"
    full = quote(f"{what}-{project}-{stamp}.{extension}", safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{full}"
