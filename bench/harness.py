"""Shared machinery of the benchmarks: databases, a real server process, senders, RSS sampling."""

from __future__ import annotations

import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.payloads import PROJECT, Batch
from threadline.server.store.footprint import Footprint, measure

POSTGRES_URL = os.environ.get("THREADLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def backends(choice: str) -> list[str]:
    """``sqlite|postgres|both`` as a list of backends."""
    return ["sqlite", "postgres"] if choice == "both" else [choice]


def exit_on_sigterm() -> None:
    """Turn SIGTERM/SIGINT into SystemExit so servers and temporary databases are cleaned up."""
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def machine() -> str:
    """A one-line description of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem_kb = 0
    return f"{os.cpu_count()} CPU ({cpu}), {mem_kb / 1024**2:.0f} GB RAM, Python {platform.python_version()}"


@contextmanager
def postgres_schema(keep: str | None = None) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema: yields (URL with search_path, schema); dropped afterwards.

    ``keep``: this schema instead (made when missing, kept afterwards), to fill once and reuse.
    """
    import psycopg

    schema = keep or f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}", schema
    finally:
        if keep is None:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


def footprint(db_url: str) -> Footprint:
    """Bytes on disk of the server's database, per table and per span (``threadline doctor``'s measure)."""
    from threadline.server.store.engine import Store

    store = Store(db_url, pool_size=1)
    try:
        with store.read() as conn:
            return measure(conn)
    finally:
        store.dispose()


def footprint_line(found: Footprint, tables: int = 4) -> str:
    """``7,912 B/span on disk (spans 6,640, traces 265, …)``."""
    largest = ", ".join(f"{name} {found.per_span(size):,.0f}" for name, size in list(found.tables.items())[:tables])
    return f"{found.per_span():,.0f} B/span on disk ({largest})"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (from /proc/<pid>/status VmRSS)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
        todo += _children(current)
    return total


@dataclass
class ServerRun:
    """A ``threadline serve`` subprocess on free ports, with its peak RSS sampled in the background."""

    db_url: str
    home: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None
    peak_rss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> ServerRun:
        self.home.mkdir(parents=True, exist_ok=True)
        log = (self.home / "server.log").open("ab")
        env = {"THREADLINE_LOG_LEVEL": "warning", **os.environ, "THREADLINE_HOME": str(self.home), **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "threadline", "serve", "--db", self.db_url, "--port", str(self.port),
             "--grpc-port", "0", "--otlp-http-port", "0"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"threadline serve exited:\n{(self.home / 'server.log').read_text()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    threading.Thread(target=self._sample, daemon=True).start()
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("threadline serve did not become healthy")

    def _sample(self) -> None:
        assert self.proc is not None
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, rss_bytes(self.proc.pid))
            time.sleep(0.25)

    def stop(self) -> None:
        self._stop.set()
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def create_key(db_url: str, role: str) -> str:
    """A new API key of ``role`` on ``db_url``, made by ``threadline keys create`` as an operator would."""
    done = subprocess.run([sys.executable, "-m", "threadline", "keys", "create", "--name", f"bench-{role}",
                           "--role", role, "--db", db_url], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def running_server(db_url: str, home: Path | None = None, env: dict[str, str] | None = None
                   ) -> Iterator[ServerRun]:
    """Start a server on ``db_url`` (THREADLINE_HOME in a temp dir unless given); stop it afterwards."""
    tmp = None if home else tempfile.mkdtemp(prefix="threadline-bench-")
    server = ServerRun(db_url, home or Path(tmp or "."), dict(env or {}))
    try:
        yield server.start()
    finally:
        server.stop()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class SendResult:
    """What the senders saw: acknowledged spans, seconds until the last 200, 503 retries."""

    acked: int
    seconds: float
    retries: int


CLIENTS = ("requests", "httpx")


class _Poster:
    """One keep-alive OTLP/HTTP connection posting protobuf bodies; ``requests`` (urllib3) is the
    transport of the OpenTelemetry Python exporter, httpx a heavier alternative."""

    def __init__(self, url: str, client: str, extra_headers: dict[str, str] | None = None) -> None:
        self.url = url
        headers = {"content-type": "application/x-protobuf", "x-project-name": PROJECT, **(extra_headers or {})}
        if client == "httpx":
            self._httpx = httpx.Client(timeout=120, headers=headers)
        else:
            import requests

            self._session = requests.Session()
            self._session.headers.update(headers)

    def post(self, body: bytes) -> tuple[int, str, str | None]:
        """(status, text, Retry-After) of one POST."""
        if hasattr(self, "_httpx"):
            response = self._httpx.post(self.url, content=body)
            return response.status_code, response.text, response.headers.get("retry-after")
        reply = self._session.post(self.url, data=body, timeout=120)
        return reply.status_code, reply.text, reply.headers.get("retry-after")

    def close(self) -> None:
        if hasattr(self, "_httpx"):
            self._httpx.close()
        else:
            self._session.close()


def send(url: str, batches: Iterable[Batch], threads: int = 12,
         on_ack: Callable[[int], None] | None = None, client: str = "requests",
         headers: dict[str, str] | None = None) -> SendResult:
    """POST every batch as protobuf from ``threads`` concurrent clients; retry 503s after Retry-After.

    ``headers``: sent with every request (e.g. ``authorization``).
    """
    work: queue.Queue[Batch | None] = queue.Queue(maxsize=threads * 4)
    lock = threading.Lock()
    totals = {"acked": 0, "retries": 0}
    errors: list[str] = []

    def worker() -> None:
        poster = _Poster(url, client, headers)
        try:
            while (batch := work.get()) is not None:
                while True:
                    status, text, retry_after = poster.post(batch.body)
                    if status == 200:
                        with lock:
                            totals["acked"] += batch.spans
                            if on_ack is not None:
                                on_ack(batch.spans)
                        break
                    if status == 503:
                        with lock:
                            totals["retries"] += 1
                        time.sleep(float(retry_after or "1"))
                        continue
                    errors.append(f"{status}: {text[:300]}")
                    break
        finally:
            poster.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for batch in batches:
        work.put(batch)
    for _ in pool:
        work.put(None)
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    return SendResult(totals["acked"], elapsed, totals["retries"])


def project_spans(base_url: str, project: str = PROJECT, client: httpx.Client | None = None) -> int:
    """The span count of ``project`` as ``GET /v1/projects`` reports it (0 when absent)."""
    data = (client or httpx).get(f"{base_url}/v1/projects", timeout=30).json()["data"]
    return next((int(p["spans"]) for p in data if p["name"] == project), 0)


def wait_queryable(base_url: str, total_spans: int, timeout: float = 3600.0,
                   headers: dict[str, str] | None = None) -> None:
    """Poll the REST API until every span is counted and the sessions list answers.

    One keep-alive client for all polls: a new client per poll would load TLS certificates each
    time and take CPU from the server being measured.
    """
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=30, headers=headers) as client:
        while time.monotonic() < deadline:
            if project_spans(base_url, client=client) >= total_spans:
                page = client.get(f"{base_url}/v1/projects/{PROJECT}/sessions", params={"limit": 1})
                if page.status_code == 200 and page.json()["data"]:
                    return
            time.sleep(0.05)
    raise TimeoutError(f"spans not queryable after {timeout:.0f}s")
