"""Query benchmark: REST API latency of the session and user views on a large project.

Fills a database with ``--spans`` spans (default 1,000,000, about 60,000 sessions of 10,000 users)
through a real ``threadline serve`` (the same OTLP path as production), then times each query many
times over HTTP and prints p50/p95/p99 in milliseconds. ``--reuse PATH`` keeps the filled SQLite
file between runs (filled on the first run, reused afterwards).

    python -m bench.query [--db sqlite|postgres|both] [--spans 1000000] [--reuse PATH] [--repeat 200] [--budget 30]
                          [--only metrics]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.harness import (
    backends,
    exit_on_sigterm,
    footprint,
    footprint_line,
    machine,
    postgres_schema,
    project_spans,
    running_server,
    send,
    wait_queryable,
)
from bench.payloads import COMMON_WORD, PROJECT, RARE_WORD, TrafficGenerator

Query = tuple[str, Callable[[random.Random], tuple[str, dict[str, Any]]]]


@contextmanager
def database(backend: str, reuse: Path | None) -> Iterator[str]:
    """The server's database URL: the reused SQLite file, a temporary one, or a fresh PostgreSQL schema."""
    if backend == "postgres":
        with postgres_schema() as (url, _schema):
            yield url
    elif reuse is not None:
        reuse.parent.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{reuse.resolve()}"
    else:
        with tempfile.TemporaryDirectory(prefix="threadline-bench-query-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'threadline.db'}"


def fill(base_url: str, spans: int, threads: int, console: Console) -> float:
    """Send ``spans`` generated spans and wait until queryable; returns seconds (0 when already filled)."""
    present = project_spans(base_url)
    if present >= spans:
        console.print(f"reusing {present:,} spans already stored")
        return 0.0
    if present:
        raise SystemExit(f"the database holds {present:,} of {spans:,} spans; delete it or pass the same --spans")
    started = time.perf_counter()
    with Progress(TextColumn("filling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("fill", total=spans)
        lock = threading.Lock()

        def acked(count: int) -> None:
            with lock:
                progress.advance(task, count)

        send(f"{base_url}/v1/traces", TrafficGenerator(spans, batch_spans=300), threads=threads, on_ack=acked)
    wait_queryable(base_url, spans)
    return time.perf_counter() - started


def sample_ids(client: httpx.Client) -> tuple[list[str], list[str], list[str]]:
    """Session, user and trace ids to open, taken from several orderings of the lists (the traces:
    those of 40 of the sessions)."""
    sessions: set[str] = set()
    for sort, order in (("start_time", "desc"), ("start_time", "asc"), ("tokens", "desc"), ("duration", "asc")):
        page = client.get(f"/v1/projects/{PROJECT}/sessions", params={"sort": sort, "order": order, "limit": 300})
        sessions |= {s["session_id"] for s in page.json()["data"]}
    users: set[str] = set()
    for sort in ("last_seen", "sessions"):
        page = client.get(f"/v1/projects/{PROJECT}/users", params={"sort": sort, "limit": 500})
        users |= {u["user_id"] for u in page.json()["data"]}
    traces: set[str] = set()
    for session_id in sorted(sessions)[:40]:
        detail = client.get(f"/v1/projects/{PROJECT}/sessions/{session_id}").json()
        traces |= {trace_id for turn in detail["turns"] for trace_id in turn["trace_ids"]}
    return sorted(sessions), sorted(users), sorted(traces)


def queries(sessions: list[str], users: list[str], traces: list[str]) -> list[Query]:
    """The timed requests: (label, rng → (path, params))."""
    base = f"/v1/projects/{PROJECT}"
    return [
        ("sessions list (start_time desc)", lambda r: (f"{base}/sessions", {})),
        ("sessions list (tokens desc)", lambda r: (f"{base}/sessions", {"sort": "tokens"})),
        ("sessions list (duration asc)", lambda r: (f"{base}/sessions", {"sort": "duration", "order": "asc"})),
        ("sessions list (errors desc)", lambda r: (f"{base}/sessions", {"sort": "errors"})),
        ("sessions of one user", lambda r: (f"{base}/sessions", {"user_id": r.choice(users)})),
        ("session detail", lambda r: (f"{base}/sessions/{r.choice(sessions)}", {})),
        ("trace detail (every span's payload)", lambda r: (f"{base}/traces/{r.choice(traces)}", {})),
        (f"search q={RARE_WORD} (~1% of turns)", lambda r: (f"{base}/sessions", {"q": RARE_WORD})),
        (f"search q={COMMON_WORD} (~15% of turns)", lambda r: (f"{base}/sessions", {"q": COMMON_WORD})),
        ("users list (last_seen desc)", lambda r: (f"{base}/users", {})),
        ("users list (sessions desc)", lambda r: (f"{base}/users", {"sort": "sessions"})),
        ("user detail", lambda r: (f"{base}/users/{r.choice(users)}", {})),
        *metrics_queries(base),
    ]


#: Metrics timed per group: the default metrics, and a p99 metric the groups are sorted by.
METRICS_P99 = ["count(turns)", "p99(latency)", "sum(tokens)"]


def metrics_queries(base: str) -> list[Query]:
    """``GET …/metrics`` grouped by session, user, model and day, with the default metrics and a p99."""
    out: list[Query] = []
    for group in ("session", "user", "model", "day"):
        default = {"group_by": group, "limit": 1000}
        p99 = {**default, "metric": METRICS_P99, "order_by": "p99(latency)"}
        out.append((f"metrics by {group} (default metrics, limit 1000)",
                    lambda r, params=default: (f"{base}/metrics", params)))
        out.append((f"metrics by {group} (p99(latency) sort, limit 1000)",
                    lambda r, params=p99: (f"{base}/metrics", params)))
    return out


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0–1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def time_queries(base_url: str, repeat: int, budget: float, only: list[str] | None = None
                 ) -> list[tuple[str, list[float]]]:
    """Milliseconds of up to ``repeat`` requests of each query (at most ``budget`` seconds per query);
    ``only``: just the queries whose label contains one of these strings."""
    rng = random.Random(5)
    results = []
    with httpx.Client(base_url=base_url, timeout=300) as client:
        sessions, users, traces = sample_ids(client)
        for label, build in queries(sessions, users, traces):
            if only and not any(part in label for part in only):
                continue
            timings: list[float] = []
            deadline = time.monotonic() + budget
            for i in range(repeat + 3):
                path, params = build(rng)
                started = time.perf_counter()
                response = client.get(path, params=params)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{label}: {response.status_code} {response.text[:300]}")
                if i >= 3 or elapsed > 1000:  # warm-up, unless already slow
                    timings.append(elapsed)
                if time.monotonic() > deadline and timings:
                    break
            results.append((label, timings))
    return results


def main(argv: list[str] | None = None) -> None:
    """Fill (or reuse) a large project and print query latencies."""
    parser = argparse.ArgumentParser(prog="python -m bench.query", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--reuse", type=Path, default=None, help="SQLite file to fill once and reuse")
    parser.add_argument("--repeat", type=int, default=200, help="timed requests per query")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per query at most (fewer requests)")
    parser.add_argument("--threads", type=int, default=12, help="concurrent OTLP/HTTP clients while filling")
    parser.add_argument("--only", action="append", default=None, metavar="TEXT",
                        help="time only the queries whose label contains TEXT (repeatable), e.g. --only metrics")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    console = Console(width=150)
    console.print(f"machine: {machine()}")
    for backend in backends(args.db):
        with ExitStack() as stack:
            url = stack.enter_context(database(backend, args.reuse if backend == "sqlite" else None))
            server = stack.enter_context(running_server(url))
            seconds = fill(server.base_url, args.spans, args.threads, console)
            with httpx.Client(base_url=server.base_url, timeout=60) as client:
                project = next(p for p in client.get("/v1/projects").json()["data"] if p["name"] == PROJECT)
            filled = f", filled in {seconds:.0f}s ({args.spans / seconds:,.0f} spans/s)" if seconds else ""
            size = ""
            if url.startswith("sqlite:///"):
                db = Path(url.removeprefix("sqlite:///"))
                size = f", {sum(p.stat().st_size for p in db.parent.glob(db.name + '*')) / 1024**3:.1f} GiB on disk"
            console.print(f"{backend}: {project['spans']:,} spans, {project['traces']:,} turns, "
                          f"{project['sessions']:,} sessions, {project['users']:,} users{size}{filled}")
            console.print(f"{backend}: {footprint_line(footprint(url), tables=6)}")
            results = time_queries(server.base_url, args.repeat, args.budget, args.only)
            table = Table(title=f"Query latency over HTTP, {backend}, {project['spans']:,} spans")
            for column in ("query", "requests", "p50 ms", "p95 ms", "p99 ms", "mean ms"):
                table.add_column(column, justify="right" if column != "query" else "left")
            for label, timings in results:
                table.add_row(label, str(len(timings)), *(f"{percentile(timings, q):.1f}" for q in (0.5, 0.95, 0.99)),
                              f"{statistics.fmean(timings):.1f}")
            console.print(table)
            console.print(f"server peak RSS {server.peak_rss / 1024**2:.0f} MB")


if __name__ == "__main__":
    main()
