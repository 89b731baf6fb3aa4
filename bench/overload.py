"""Overload benchmark: offer far more than can be written, and see how every answer comes back.

8 senders post large OTLP/HTTP batches back to back for ``--seconds`` (60) on a fresh server,
several times the rate the writer sustains. Each sender behaves like an OTLP exporter: 200 is
acknowledged, 503 waits ``Retry-After`` and resends the same batch, no answer within 10 s is a
timeout (the exporters' default) and is resent too. A reader polls the sessions list meanwhile.

Reported per database: the status mix, request latency p50/p99/max, peak RSS of all Threadline
processes, spans acknowledged against spans stored (by id, read from the database), and the read
API's p99 during the run. The targets (issue 11): every answer < 10 s, the excess answered 503
with ``Retry-After``, no other 5xx, peak RSS < 400 MB, 0 acknowledged spans missing, read p99 < 1 s.

    python -m bench.overload [--db sqlite|postgres|both] [--seconds 60] [--senders 8] [--batch 4000]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from bench.harness import PROJECT, backends, exit_on_sigterm, machine, running_server
from bench.ingest import database
from bench.payloads import Batch, TrafficGenerator

EXPORTER_TIMEOUT = 10.0


@dataclass
class Run:
    """What the senders and the reader saw."""

    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)  # indices of acknowledged batches
    missing_retry_after: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _ids(batch: Batch) -> set[tuple[str, str]]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(batch.body)
    return {(span.trace_id.hex(), span.span_id.hex()) for rs in request.resource_spans for ss in rs.scope_spans
            for span in ss.spans}


def _sender(url: str, batches: list[Batch], first: int, step: int, stop: threading.Event, run: Run) -> None:
    session = requests.Session()
    session.headers.update({"content-type": "application/x-protobuf", "x-project-name": PROJECT})
    index = first
    while not stop.is_set():
        batch = batches[index % len(batches)]
        started = time.perf_counter()
        try:
            reply = session.post(url, data=batch.body, timeout=EXPORTER_TIMEOUT)
            status, retry_after = str(reply.status_code), reply.headers.get("retry-after")
        except requests.Timeout:
            status, retry_after = "timeout", None
        except requests.ConnectionError:
            status, retry_after = "connection error", None
        elapsed = time.perf_counter() - started
        with run.lock:
            run.statuses[status] += 1
            run.latencies.append(elapsed)
            if status == "200":
                run.acked.add(index % len(batches))
            if status == "503" and not retry_after:
                run.missing_retry_after += 1
        if status == "200":
            index += step
        elif status == "503":
            stop.wait(float(retry_after or "1"))
        else:
            stop.wait(1.0)
    session.close()


def _reader(base_url: str, stop: threading.Event, run: Run) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.get(f"{base_url}/v1/projects/{PROJECT}/sessions", params={"limit": 50})
            with run.lock:
                run.reads.append(time.perf_counter() - started)
            stop.wait(0.25)


def _stored_ids(db_url: str) -> set[tuple[str, str]]:
    from threadline.server.store import schema as t
    from threadline.server.store.engine import Store

    store = Store(db_url, pool_size=1)
    try:
        with store.read() as conn:
            pid = conn.execute(select(t.projects.c.id).where(t.projects.c.name == PROJECT)).scalar()
            rows = conn.execute(select(t.spans.c.trace_id, t.spans.c.span_id).where(t.spans.c.project_id == pid))
            return {(r.trace_id, r.span_id) for r in rows}
    finally:
        store.dispose()


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


@dataclass
class Figures:
    """One run's line of the table."""

    statuses: str
    requests_per_second: float
    p50: float
    p99: float
    max: float
    peak_rss_mb: float
    acked: int
    acked_per_second: float
    missing: int
    read_p99: float
    no_retry_after: int


def overload(backend: str, batches: list[Batch], seconds: float, senders: int) -> Figures:
    """One run on a fresh server."""
    run = Run()
    with database(backend) as url, running_server(url) as server:
        stop = threading.Event()
        threads = [threading.Thread(target=_sender, args=(f"{server.base_url}/v1/traces", batches, i, senders,
                                                          stop, run), daemon=True) for i in range(senders)]
        threads.append(threading.Thread(target=_reader, args=(server.base_url, stop, run), daemon=True))
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        stop.wait(seconds)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        acked_ids: set[tuple[str, str]] = set()
        for index in run.acked:
            acked_ids |= _ids(batches[index])
        stored = _stored_ids(url)  # a 200 is sent after the commit: everything acknowledged is there now
        peak_rss = server.peak_rss
    return Figures(
        statuses=", ".join(f"{k} {v}" for k, v in sorted(run.statuses.items())),
        requests_per_second=sum(run.statuses.values()) / elapsed,
        p50=_quantile(run.latencies, 0.5), p99=_quantile(run.latencies, 0.99),
        max=max(run.latencies, default=float("nan")), peak_rss_mb=peak_rss / 1024**2,
        acked=len(acked_ids), acked_per_second=len(acked_ids) / elapsed, missing=len(acked_ids - stored),
        read_p99=_quantile(run.reads, 0.99), no_retry_after=run.missing_retry_after,
    )


def main(argv: list[str] | None = None) -> None:
    """Run the overload benchmark and print a table."""
    parser = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4000, help="spans per request")
    parser.add_argument("--distinct", type=int, default=24, help="distinct batches (resent: stored once)")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    console = Console(width=160)
    console.print(f"machine: {machine()}")
    batches = list(TrafficGenerator(args.batch * args.distinct, seed=11, batch_spans=args.batch))
    size = sum(len(b.body) for b in batches) / len(batches)
    console.print(f"{len(batches)} distinct requests of {args.batch} spans ({size / 1024**2:.1f} MiB each), "
                  f"{args.senders} senders for {args.seconds:.0f} s")
    table = Table(title="Overload: every answer, in time")
    for column in ("database", "answers", "requests/s", "latency p50 / p99 / max s", "503 without Retry-After",
                   "peak RSS MB", "acked spans (/s)", "acked missing", "read p99 ms"):
        table.add_column(column, justify="right")
    for backend in backends(args.db):
        r = overload(backend, batches, args.seconds, args.senders)
        table.add_row(backend, r.statuses, f"{r.requests_per_second:.1f}", f"{r.p50:.2f} / {r.p99:.2f} / {r.max:.2f}",
                      str(r.no_retry_after), f"{r.peak_rss_mb:.0f}", f"{r.acked:,} ({r.acked_per_second:,.0f})",
                      str(r.missing), f"{r.read_p99 * 1000:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
