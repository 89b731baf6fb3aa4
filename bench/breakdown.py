"""Where ingest time goes: each stage of the server's pipeline timed alone, in one thread.

Runs Threadline's own functions on the benchmark payloads (no HTTP, no processes): decode
(``otlp.decode_request``), normalize, packing and unpacking the records for the writer process,
and the store's batch writer (one transaction per request, and group commits). Compare with the baseline loop of
``bench.ingest`` to see which stage keeps ingest from the baseline's throughput.

    python -m bench.breakdown [--db sqlite|postgres|both] [--spans 20000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.harness import backends, machine, postgres_schema
from bench.ingest import baseline_postgres, baseline_sqlite, decode
from bench.payloads import generate
from threadline.server.ingest.normalize import normalize
from threadline.server.ingest.otlp import PROTOBUF, Limits, decode_request
from threadline.server.ingest.prepare import prepare
from threadline.server.store.engine import open_store
from threadline.server.store.records import RecordPacker, SpanRecord, unpack_records
from threadline.server.store.write import BatchWriter


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _packed(records: list[SpanRecord]) -> bytearray:
    """One request's records packed as a decode process packs them: each as it is made."""
    packer = RecordPacker()
    for record in records:
        packer.add(record)
    return packer.packed()


def _write(url: str, groups: list[list[SpanRecord]]) -> float:
    store = open_store(url)
    writer = BatchWriter(store.dialect)
    try:
        started = time.perf_counter()
        for group in groups:
            with store.write() as tx:
                writer.write(tx, group, time.time_ns())
        return time.perf_counter() - started
    finally:
        store.dispose()


def main(argv: list[str] | None = None) -> None:
    """Time every ingest stage on the same payloads and print spans/s per stage."""
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--spans", type=int, default=20_000)
    args = parser.parse_args(argv)
    console = Console(width=150)
    console.print(f"machine: {machine()}")
    batches = generate(args.spans)
    limits = Limits()
    bodies = [b.body for b in batches]
    n = args.spans
    stages: list[tuple[str, float]] = []
    stages.append(("baseline: protobuf parse → tuples + JSON", _timed(lambda: [decode(b) for b in bodies])))
    decoded = [decode_request(b, PROTOBUF, project_header="bench", limits=limits).spans for b in bodies]
    stages.append(("Threadline decode (otlp.decode_request)",
                   _timed(lambda: [decode_request(b, PROTOBUF, project_header="bench", limits=limits)
                                   for b in bodies])))
    stages.append(("Threadline normalize", _timed(lambda: [[normalize(s) for s in spans] for spans in decoded])))
    records = [prepare(b, PROTOBUF, None, "bench", limits, 32 * 1024)[0] for b in bodies]
    stages.append(("pack records (decode process, RecordPacker)", _timed(lambda: [_packed(r) for r in records])))
    packed = [_packed(r) for r in records]
    stages.append(("unpack records (writer process)", _timed(lambda: [unpack_records(p) for p in packed])))
    per_request = [unpack_records(p) for p in packed]
    grouped: list[list[SpanRecord]] = []
    for records in per_request:
        if not grouped or len(grouped[-1]) >= 5000:
            grouped.append([])
        grouped[-1].extend(records)
    for backend in backends(args.db):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                stages.append(("baseline insert loop, sqlite (decode + executemany, 1 tx)", baseline_sqlite(batches)))
                stages.append(("BatchWriter.write, sqlite, 1 tx per request",
                               _write(f"sqlite:///{Path(tmp) / 'a.db'}", per_request)))
                stages.append(("BatchWriter.write, sqlite, group commits of 5000",
                               _write(f"sqlite:///{Path(tmp) / 'b.db'}", grouped)))
        else:
            stages.append(("baseline insert loop, postgres (decode + executemany, 1 tx)", baseline_postgres(batches)))
            with postgres_schema() as (url, _):
                stages.append(("BatchWriter.write, postgres, 1 tx per request", _write(url, per_request)))
            with postgres_schema() as (url, _):
                stages.append(("BatchWriter.write, postgres, group commits of 5000", _write(url, grouped)))
    table = Table(title=f"Ingest stages, one thread, {n} spans")
    for column in ("stage", "seconds", "spans/s", "µs/span"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for label, seconds in stages:
        table.add_row(label, f"{seconds:.2f}", f"{n / seconds:,.0f}", f"{seconds / n * 1e6:,.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
