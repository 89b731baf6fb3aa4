"""Ingest benchmark: Threadline's span throughput *until queryable* against a plain insert loop.

Baseline: one thread decodes the same OTLP payloads (protobuf parse → one tuple per span with hex
ids, name, times and the attributes as JSON) and inserts them with ``executemany`` in a single
transaction (SQLite in WAL mode with ``synchronous=FULL`` like the server; PostgreSQL through
psycopg). That is the ceiling of "just store the spans" on this machine.

Threadline: a real ``threadline serve`` subprocess; many concurrent OTLP/HTTP clients post the
payloads; the clock stops when the REST API shows every span (project span count) and the sessions
list answers. Peak RSS of the server and its decode workers is sampled from /proc.

With ``--auth both`` (the default) Threadline runs twice per round, with authentication off and
on (an ingest key on every request, checked against the database), to show what auth costs.

    python -m bench.ingest [--db sqlite|postgres|both] [--spans 20000] [--threads 12] [--rounds 3]
                           [--client requests|httpx] [--auth off|on|both]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from rich.console import Console
from rich.table import Table

from bench.harness import (
    CLIENTS,
    backends,
    create_key,
    exit_on_sigterm,
    footprint,
    machine,
    postgres_schema,
    running_server,
    send,
    wait_queryable,
)
from bench.payloads import Batch, generate

Row = tuple[str, str, str, str, int, int, int, int, str, str]
CREATE = ("CREATE TABLE spans (trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT, name TEXT, "
          "kind INTEGER, start_ns BIGINT, end_ns BIGINT, status INTEGER, attributes TEXT, events TEXT, "
          "PRIMARY KEY (trace_id, span_id))")


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which) if which else None


def decode(body: bytes) -> list[Row]:
    """Parse one OTLP request into one row per span."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    rows: list[Row] = []
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {kv.key: _value(kv.value) for kv in span.attributes}
                events = [{"name": e.name, "time": e.time_unix_nano,
                           "attributes": {kv.key: _value(kv.value) for kv in e.attributes}} for e in span.events]
                rows.append((span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), span.name,
                             span.kind, span.start_time_unix_nano, span.end_time_unix_nano, span.status.code,
                             json.dumps(attributes), json.dumps(events)))
    return rows


def baseline_sqlite(batches: list[Batch]) -> float:
    """Seconds for the plain loop into a fresh SQLite file (WAL, synchronous=FULL, one transaction)."""
    with tempfile.TemporaryDirectory(prefix="threadline-baseline-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "baseline.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(CREATE)
        started = time.perf_counter()
        conn.execute("BEGIN")
        for batch in batches:
            conn.executemany("INSERT OR IGNORE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?)", decode(batch.body))
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return elapsed


def baseline_postgres(batches: list[Batch]) -> float:
    """Seconds for the plain loop into a fresh PostgreSQL schema (psycopg executemany, one transaction)."""
    import psycopg

    with postgres_schema() as (url, _schema), psycopg.connect(url) as conn:
        conn.execute(CREATE)
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur:
            for batch in batches:
                cur.executemany("INSERT INTO spans VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                                decode(batch.body))
        conn.commit()
        return time.perf_counter() - started


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh database URL for the server on ``backend``."""
    if backend == "postgres":
        with postgres_schema() as (url, _schema):
            yield url
    else:
        with tempfile.TemporaryDirectory(prefix="threadline-bench-db-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'threadline.db'}"


def threadline_run(backend: str, batches: list[Batch], threads: int, client: str = "requests",
                   auth: bool = False) -> dict[str, float]:
    """Send ``batches`` to a fresh server; acknowledged and until-queryable throughput, peak RSS.

    ``auth``: the server requires keys; the senders use an ingest key, the poller a viewer key.
    """
    total = sum(b.spans for b in batches)
    with database(backend) as url:
        env, send_headers, read_headers = {}, None, None
        if auth:
            env = {"THREADLINE_AUTH": "true"}
            send_headers = {"authorization": f"Bearer {create_key(url, 'ingest')}"}
            read_headers = {"authorization": f"Bearer {create_key(url, 'viewer')}"}
        with running_server(url, env=env) as server:
            started = time.perf_counter()
            result = send(f"{server.base_url}/v1/traces", batches, threads=threads, client=client,
                          headers=send_headers)
            wait_queryable(server.base_url, total, headers=read_headers)
            queryable = time.perf_counter() - started
            time.sleep(0.5)  # one more RSS sample after the work
            disk = footprint(url)
            return {"acked": result.acked, "ack_seconds": result.seconds, "queryable_seconds": queryable,
                    "retries": result.retries, "peak_rss": server.peak_rss, "disk_per_span": disk.per_span(),
                    "spans_per_span": disk.per_span(disk.tables.get("spans", 0))}


def main(argv: list[str] | None = None) -> None:
    """Run the ingest benchmark and print a table."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=12, help="concurrent OTLP/HTTP clients")
    parser.add_argument("--batch", type=int, default=300, help="spans per OTLP request")
    parser.add_argument("--client", choices=CLIENTS, default="requests",
                        help="HTTP client of the senders: requests (the OpenTelemetry Python exporter's) or httpx")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side; the best of each is reported")
    parser.add_argument("--auth", choices=("off", "on", "both"), default="both",
                        help="run Threadline with authentication off, on (ingest key per request) or both")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    console = Console(width=150)
    console.print(f"machine: {machine()}")
    batches = generate(args.spans, batch_spans=args.batch)
    size = sum(len(b.body) for b in batches)
    console.print(f"payload: {args.spans} spans in {len(batches)} requests, {size / args.spans / 1024:.1f} KiB/span, "
                  f"{size / 1024**2:.0f} MiB")
    table = Table(title=f"Ingest, {args.spans} spans, best of {args.rounds} rounds")
    for column in ("database", "auth", "baseline loop spans/s", "Threadline acked spans/s", "until queryable spans/s",
                   "ratio to baseline", "503 retries", "peak RSS MB", "disk B/span (spans table)"):
        table.add_column(column, justify="right")
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.auth]
    for backend in backends(args.db):
        base_seconds: list[float] = []
        runs: dict[bool, list[dict[str, float]]] = {mode: [] for mode in modes}
        for _ in range(args.rounds):  # alternate, keep the best of each: the machine may be busy
            base_seconds.append(baseline_sqlite(batches) if backend == "sqlite" else baseline_postgres(batches))
            for mode in modes:
                runs[mode].append(threadline_run(backend, batches, args.threads, args.client, auth=mode))
        base_rate = args.spans / min(base_seconds)
        rates = {}
        for mode in modes:
            best = min(runs[mode], key=lambda r: r["queryable_seconds"])
            queryable_rate = rates[mode] = args.spans / best["queryable_seconds"]
            table.add_row(backend, "on" if mode else "off", f"{base_rate:,.0f}",
                          f"{best['acked'] / best['ack_seconds']:,.0f}", f"{queryable_rate:,.0f}",
                          f"{queryable_rate / base_rate:.0%}", f"{best['retries']:.0f}",
                          f"{max(r['peak_rss'] for r in runs[mode]) / 1024**2:.0f}",
                          f"{best['disk_per_span']:,.0f} ({best['spans_per_span']:,.0f})")
        if len(rates) == 2:
            console.print(f"{backend}: with auth on, until-queryable throughput is {rates[True] / rates[False]:.1%} "
                          "of auth off")
    console.print(table)


if __name__ == "__main__":
    main()
