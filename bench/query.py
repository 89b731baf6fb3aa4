"""Query benchmark: REST API latency of the session and user views on a large project.

Fills a database with ``--spans`` spans (default 1,000,000, about 60,000 sessions of 10,000 users)
through a real ``threadline serve`` (the same OTLP path as production), then times each query many
times over HTTP and prints p50/p95/p99 in milliseconds. ``--reuse PATH`` keeps the filled SQLite
file between runs (filled on the first run, reused afterwards), ``--reuse-schema NAME`` a PostgreSQL
schema. A second project of :data:`SMALL_SESSIONS` sessions shares the database: its searches show
that a small project's queries cost what it holds, not what its neighbour holds.

    python -m bench.query [--db sqlite|postgres|both] [--spans 1000000] [--reuse PATH] [--reuse-schema NAME]
                          [--repeat 200] [--budget 30] [--only metrics]
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

#: A small project sharing the database with the big one: its searches must cost what it holds.
SMALL_PROJECT = "bench-small"
SMALL_SESSIONS = 10

Query = tuple[str, Callable[[random.Random], tuple[str, dict[str, Any]]]]


@contextmanager
def database(backend: str, reuse: Path | None, reuse_schema: str | None = None) -> Iterator[str]:
    """The server's database URL: the reused SQLite file, a temporary one, the reused PostgreSQL
    schema or a fresh one."""
    if backend == "postgres":
        with postgres_schema(keep=reuse_schema) as (url, _schema):
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


def fill_small(base_url: str) -> int:
    """Send :data:`SMALL_SESSIONS` whole conversations to :data:`SMALL_PROJECT` (once); its span count."""
    present = project_spans(base_url, SMALL_PROJECT)
    if present:
        return present
    traffic = TrafficGenerator(10_000, seed=7, batch_spans=100, concurrent_sessions=SMALL_SESSIONS,
                               project=SMALL_PROJECT, max_sessions=SMALL_SESSIONS)
    sent = send(f"{base_url}/v1/traces", list(traffic), threads=2, headers={"x-project-name": SMALL_PROJECT})
    deadline = time.monotonic() + 120
    while project_spans(base_url, SMALL_PROJECT) < sent.acked:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{SMALL_PROJECT}: {sent.acked} spans acknowledged but not all queryable")
        time.sleep(0.2)
    return sent.acked


def analyze(url: str, console: Console) -> None:
    """``VACUUM (ANALYZE)`` the schema's tables, as autovacuum does after a bulk load (it is off on
    some machines, this one included; without statistics the planner misjudges selectivities)."""
    import psycopg

    from bench.harness import POSTGRES_URL

    schema = url.rsplit("search_path%3D", 1)[1]
    started = time.perf_counter()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))]
        for table in tables:
            conn.execute(f'VACUUM (ANALYZE) "{schema}"."{table}"')
    console.print(f"postgres: VACUUM (ANALYZE) of {len(tables)} tables in {time.perf_counter() - started:.0f}s "
                  "(what autovacuum does after a bulk load)")


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
        *small_search_queries(),
    ]


def small_search_queries() -> list[Query]:
    """Searches in the small project next to the big one: a word, a rare word, a one-letter prefix."""
    small = f"/v1/projects/{SMALL_PROJECT}/sessions"

    def search(word: str) -> Callable[[random.Random], tuple[str, dict[str, Any]]]:
        return lambda r: (small, {"q": word})

    return [(f"small project: search q={word}", search(word)) for word in (COMMON_WORD, RARE_WORD, "r")]


#: The issue-12 targets: (label fragment, p50 ms at most).
TARGETS = (("metrics by session", 500.0), ("metrics by user", 500.0), ("metrics by day", 500.0),
           ("small project: search", 20.0))


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
    parser.add_argument("--reuse-schema", default=None, metavar="NAME",
                        help="PostgreSQL schema to fill once and reuse (kept afterwards)")
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
            url = stack.enter_context(database(backend, args.reuse if backend == "sqlite" else None,
                                                     args.reuse_schema))
            server = stack.enter_context(running_server(url))
            seconds = fill(server.base_url, args.spans, args.threads, console)
            small = fill_small(server.base_url)
            if backend == "postgres":
                analyze(url, console)
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
            console.print(f"{backend}: project {SMALL_PROJECT!r} beside it: {SMALL_SESSIONS} sessions, {small:,} spans")
            results = time_queries(server.base_url, args.repeat, args.budget, args.only)
            table = Table(title=f"Query latency over HTTP, {backend}, {project['spans']:,} spans")
            for column in ("query", "requests", "p50 ms", "p95 ms", "p99 ms", "mean ms"):
                table.add_column(column, justify="right" if column != "query" else "left")
            for label, timings in results:
                table.add_row(label, str(len(timings)), *(f"{percentile(timings, q):.1f}" for q in (0.5, 0.95, 0.99)),
                              f"{statistics.fmean(timings):.1f}")
            console.print(table)
            for fragment, limit in TARGETS:
                p50s = [percentile(timings, 0.5) for label, timings in results if fragment in label]
                if p50s:
                    verdict = "met" if max(p50s) < limit else "MISSED"
                    console.print(f"target {fragment}: p50 < {limit:.0f} ms — worst p50 {max(p50s):.1f} ms, {verdict}")
            console.print(f"server peak RSS {server.peak_rss / 1024**2:.0f} MB")


if __name__ == "__main__":
    main()
