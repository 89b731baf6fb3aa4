"""``threadline doctor`` reports bytes on disk per span and per table, on both backends."""

from __future__ import annotations

import re

from click.testing import CliRunner

from store.test_write import generate
from threadline.server.cli import cli
from threadline.server.store.engine import open_store
from threadline.server.store.footprint import measure
from threadline.server.store.write import BatchWriter


def test_doctor_reports_bytes_per_span_and_per_table(db_url: str) -> None:
    store = open_store(db_url)
    spans = generate(5)
    with store.write() as tx:
        BatchWriter(store.dialect).write(tx, spans, now_ns=1)
    with store.read() as conn:
        footprint = measure(conn)
    store.dispose()
    assert footprint.spans == len(spans) and footprint.tables["spans"] > 0
    assert sum(footprint.tables.values()) <= footprint.total
    assert footprint.method == ("dbstat" if db_url.startswith("sqlite") else "pg_total_relation_size")

    result = CliRunner().invoke(cli, ["doctor", "--db", db_url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    disk = re.search(r"^disk +[\d,.]+ MiB, ([\d,]+) spans, ([\d,]+) bytes per span", result.output, re.M)
    assert disk is not None, result.output
    assert int(disk[1].replace(",", "")) == len(spans)
    assert re.search(r"^  spans +[\d,.]+ MiB +[\d,]+ B/span$", result.output, re.M), result.output
