"""Ingest under pressure (issue 11): refusals come in time, in the OTLP shape, with the right code.

Real servers on both stores. A stopped writer (SIGSTOP) stands for a database that cannot keep
up: new requests get 503 + ``Retry-After`` (gRPC ``UNAVAILABLE`` with the retry info exporters
read) well before an exporter's 10 s timeout, ``/healthz`` and the API keep answering, and
nothing acknowledged is lost once the writer runs again. A batch the database refuses is a 400,
never retried forever; gzip over gRPC is inflated in a decode process, under the same cap as HTTP.
"""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from sqlalchemy import create_engine, text

from support.otlp import PROTOBUF, SpanMaker, TurnSpec, encode_request, export_grpc, hex_span_id, hex_trace_id
from support.server import ServerProcess

from .rest import Api
from .test_ingest_processes import ingest_processes

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def body_of(project: str, n: int, *, name: str | None = None) -> tuple[bytes, set[tuple[str, str]]]:
    maker = SpanMaker(project)
    spans = maker.turn(TurnSpec(question=f"question {n}", answer=f"answer {n}", session_id=f"{project}-{n % 4}",
                                user_id="u"))
    if name is not None:  # rename the root span (the poison pill of the constraint test)
        spans[-1]._name = name  # type: ignore[attr-defined]
    maker.shutdown()
    return encode_request(spans).SerializeToString(), {(hex_trace_id(s), hex_span_id(s)) for s in spans}


def post(server: ServerProcess, body: bytes, timeout: float = 30) -> httpx.Response:
    response = httpx.post(server.otlp_http_url, content=body, headers={"content-type": PROTOBUF}, timeout=timeout)
    assert response.status_code != 500, response.text
    return response


def grpc_call(server: ServerProcess, body: bytes, timeout: float = 30, **kwargs: object
              ) -> tuple[grpc.StatusCode, dict[str, bytes | str]]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        try:
            channel.unary_unary(EXPORT)(body, timeout=timeout, **kwargs)
        except grpc.RpcError as exc:
            return exc.code(), dict(exc.trailing_metadata() or ())
    return grpc.StatusCode.OK, {}


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def pressured(db_url: str, server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A server whose admission waits at most 1 s (so a stalled writer is noticed quickly)."""
    return server_factory(db_url, THREADLINE_INGEST_MAX_WAIT_SECONDS="1", THREADLINE_RETRY_AFTER_SECONDS="1")


def test_a_stalled_writer_gets_503_in_time_and_loses_nothing(pressured: ServerProcess) -> None:
    api = Api(pressured.base_url)
    acknowledged: set[tuple[str, str]] = set()
    body, ids = body_of("stall", 0)
    assert post(pressured, body).status_code == 200
    acknowledged |= ids
    writer, _ = ingest_processes(pressured)
    answers: list[tuple[int, float, str | None]] = []
    lock = threading.Lock()

    def sender(n: int) -> None:
        body, ids = body_of("stall", n)
        started = time.monotonic()
        response = post(pressured, body, timeout=60)
        with lock:
            answers.append((response.status_code, time.monotonic() - started, response.headers.get("retry-after")))
            if response.status_code == 200:
                acknowledged.update(ids)

    with stopped(writer):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(sender, range(1, 41)))
        # While the writer is stopped the rest of the server answers at once.
        assert httpx.get(pressured.base_url + "/healthz", timeout=1.0).status_code == 200
        assert httpx.get(pressured.base_url + "/v1/projects", timeout=5.0).status_code == 200
        code, trailers = grpc_call(pressured, body_of("stall", 99)[0])
        assert code is grpc.StatusCode.UNAVAILABLE
        assert RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]).retry_delay.seconds == 1  # type: ignore[arg-type]
    statuses = {status for status, _, _ in answers}
    assert statuses <= {200, 503} and 503 in statuses, answers
    assert all(retry == "1" for status, _, retry in answers if status == 503)
    # Every answer came before an OTLP exporter's 10 s default timeout.
    assert max(elapsed for _, elapsed, _ in answers) < 10, sorted(answers, key=lambda a: -a[1])[:3]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not api.span_ids("stall") >= acknowledged:
        time.sleep(0.1)
    assert api.span_ids("stall") >= acknowledged
    body, _ = body_of("stall", 100)
    assert post(pressured, body).status_code == 200, "ingest recovers once the writer runs again"


def test_a_body_stops_counting_once_it_is_decoded(
        db_url: str, server_factory: Callable[..., ServerProcess]) -> None:
    """The bytes budget counts bodies until they are decoded: once a decode process is done with a
    request's body, the next request is admitted even while the first waits for its commit."""
    bodies = [body_of("handed", n) for n in range(2)]
    sizes = sorted(len(body) for body, _ in bodies)
    budget = sizes[1] + sizes[0] // 2  # room for one body, not two
    server = server_factory(db_url, THREADLINE_INGEST_MAX_PENDING_BYTES=str(budget),
                            THREADLINE_INGEST_MAX_WAIT_SECONDS="30")
    writer, _ = ingest_processes(server)
    # The decode process connects to the writer on its first request: before the writer stops.
    assert post(server, body_of("handed", 99)[0]).status_code == 200
    deadline = time.monotonic() + 20

    def until_admitted(body: bytes) -> list[str]:
        """Send ``body`` until it is admitted (then it waits for its commit: the client gives up
        after 2 s); the refusals met before."""
        refusals: list[str] = []
        while time.monotonic() < deadline:
            try:
                response = httpx.post(server.otlp_http_url, content=body, headers={"content-type": PROTOBUF},
                                      timeout=2)
            except httpx.TimeoutException:
                return refusals
            assert response.status_code == 503, response.text  # nothing is committed while the writer is stopped
            refusals.append(response.text)
        raise AssertionError(f"refused for 20 s while the other request waited for its commit: {refusals[-1:]}")

    with stopped(writer), ThreadPoolExecutor(2) as pool:
        # Both are admitted: whichever came second only while the first was being handed over.
        for future in [pool.submit(until_admitted, body) for body, _ in bodies]:
            future.result()
    # Both clients gave up, but both requests were handed over: they are committed now.
    api = Api(server.base_url)
    everything = bodies[0][1] | bodies[1][1]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not api.span_ids("handed") >= everything:
        time.sleep(0.1)
    assert api.span_ids("handed") >= everything


def queued_bytes(pids: list[int]) -> int:
    """Bytes waiting to be read on the Unix sockets of ``pids`` (``ss``'s Recv-Q)."""
    listing = subprocess.run(["ss", "-x", "-p", "-n"], capture_output=True, text=True, check=True).stdout
    waiting = 0
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if any(f"pid={pid}," in line for pid in pids) and fields[2].isdigit():
            waiting += int(fields[2])
    return waiting


def test_a_body_counts_while_a_decode_process_holds_it(
        db_url: str, server_factory: Callable[..., ServerProcess]) -> None:
    """Bodies in the decode processes count against the bytes budget too, so it bounds the memory
    of bodies whatever the number of decode processes: with both decode processes stopped and one
    request's body handed to one of them, a second request finds no room (503 at once) although
    the other decode process would take it."""
    (first, first_ids), (second, second_ids) = body_of("held", 0), body_of("held", 1)
    budget = max(len(first), len(second)) + min(len(first), len(second)) // 2  # room for one body, not two
    server = server_factory(db_url, THREADLINE_DECODE_WORKERS="2", THREADLINE_INGEST_MAX_PENDING_BYTES=str(budget),
                            THREADLINE_INGEST_MAX_WAIT_SECONDS="30", THREADLINE_RETRY_AFTER_SECONDS="1")
    _, decoders = ingest_processes(server)
    assert len(decoders) == 2
    with ThreadPoolExecutor(1) as pool:
        with stopped(decoders[0]), stopped(decoders[1]):
            answer = pool.submit(post, server, first, 60)
            deadline = time.monotonic() + 20
            while queued_bytes(decoders) < len(first):  # the first body waits in a decode process's socket
                assert time.monotonic() < deadline, "the first body never reached a decode process"
                assert not answer.done(), answer.result().text
                time.sleep(0.02)
            refused = post(server, second, timeout=10)
            assert refused.status_code == 503, refused.text
            assert refused.headers.get("retry-after") == "1"
            assert b"bytes" in refused.content  # the budget refused it, not the wait for a decode process
        assert answer.result().status_code == 200
    assert post(server, second).status_code == 200
    api = Api(server.base_url)
    assert api.span_ids("held") >= first_ids | second_ids


def test_healthz_answers_while_ingest_is_saturated(pressured: ServerProcess) -> None:
    writer, _ = ingest_processes(pressured)
    stop = threading.Event()

    def flood(n: int) -> None:
        while not stop.is_set():
            post(pressured, body_of("flood", n)[0], timeout=60)

    with stopped(writer), ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(flood, n) for n in range(6)]
        try:
            for _ in range(10):
                assert httpx.get(pressured.base_url + "/healthz", timeout=1.0).status_code == 200
                page = httpx.get(pressured.base_url + "/projects/flood/sessions", timeout=5.0)
                assert page.status_code in (200, 404)
        finally:
            stop.set()
    for future in futures:
        future.result()


def test_a_batch_the_database_refuses_is_a_400_and_its_neighbours_are_stored(
    db_url: str, server_factory: Callable[..., ServerProcess],
) -> None:
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    server = server_factory(db_url)  # migrated: now make the database refuse one span name
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text("CREATE TRIGGER poison BEFORE INSERT ON spans WHEN NEW.name = 'poison' "
                              "BEGIN SELECT RAISE(ABORT, 'poison span refused'); END"))
        else:
            conn.execute(text("ALTER TABLE spans ADD CONSTRAINT no_poison CHECK (name <> 'poison')"))
    engine.dispose()
    poison, _ = body_of("constraint", 0, name="poison")
    with ThreadPoolExecutor(4) as pool:  # sent together, so the writer may group them in one commit
        futures = [pool.submit(post, server, body_of("constraint", n)[0]) for n in range(1, 4)]
        refused = post(server, poison)
        fine = [f.result() for f in futures]
    assert refused.status_code == 400, refused.text
    assert "refused" in Status.FromString(refused.content).message
    assert [r.status_code for r in fine] == [200, 200, 200]
    code, _ = grpc_call(server, poison)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert len(Api(server.base_url).span_ids("constraint")) == 3 * 2


def test_gzip_over_grpc_is_inflated_in_a_decode_process(
    db_url: str, server_factory: Callable[..., ServerProcess],
) -> None:
    cap = 4 * 1024 * 1024
    server = server_factory(db_url, THREADLINE_MAX_DECOMPRESSED_BYTES=str(cap))
    maker = SpanMaker("grpc-gzip")
    spans = maker.turn(TurnSpec(question="zipped?", answer="zipped.", session_id="z"))
    assert export_grpc(spans, server.grpc_target, gzip_body=True).name == "SUCCESS"
    assert len(Api(server.base_url).span_ids("grpc-gzip")) == len(spans)
    assert server.proc is not None
    before = rss_kib(server.proc.pid)
    inflated = bytes(cap + 1024 * 1024)
    bomb = gzip.compress(inflated)  # about 5 KiB that inflate past the cap
    with ThreadPoolExecutor(8) as pool:  # compressed by the gRPC client, and sent already compressed
        codes = list(pool.map(lambda _: grpc_call(server, inflated, compression=grpc.Compression.Gzip)[0], range(8)))
        codes += list(pool.map(lambda _: grpc_call(server, bomb)[0], range(8)))
    assert set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    # Nothing was inflated in the server process: its memory grew by far less than one bomb.
    assert rss_kib(server.proc.pid) - before < cap // 1024, (before, rss_kib(server.proc.pid))
    maker.shutdown()


def received_bytes(pid: int) -> int:
    """Bytes waiting unread in the Unix sockets of process ``pid`` (``ss``'s Recv-Q): a request has
    reached a stopped process once this is above zero."""
    listing = subprocess.run(["ss", "-x", "-p", "-n"], capture_output=True, text=True, check=True).stdout
    return sum(int(line.split()[2]) for line in listing.splitlines()[1:] if f"pid={pid}," in line)


def wait_until(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_killed_decode_process_is_a_503_in_the_otlp_shape_on_both_transports(
    db_url: str, server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(db_url, THREADLINE_INGEST_MAX_WAIT_SECONDS="30")
    for n, transport in enumerate(("http", "grpc")):
        assert post(server, body_of("decode-death", 10 + n)[0]).status_code == 200  # (a killed one is replaced)
        _, decoders = ingest_processes(server)
        assert len(decoders) == 1  # THREADLINE_DECODE_WORKERS=1 in tests
        body, _ = body_of("decode-death", n)
        with ThreadPoolExecutor(1) as pool:
            os.kill(decoders[0], signal.SIGSTOP)
            pending = pool.submit(post if transport == "http" else grpc_call, server, body)
            wait_until(lambda pid=decoders[0]: received_bytes(pid) > 0)  # the request is inside the process
            os.kill(decoders[0], signal.SIGKILL)
            answer = pending.result()
        if transport == "http":
            assert isinstance(answer, httpx.Response)
            assert answer.status_code == 503 and answer.headers["retry-after"]
            assert Status.FromString(answer.content).code == 14
        else:
            assert answer[0] is grpc.StatusCode.UNAVAILABLE and "google.rpc.retryinfo-bin" in answer[1]
    # The decode process is replaced: both transports work again.
    assert post(server, body_of("decode-death", 5)[0]).status_code == 200
    assert grpc_call(server, body_of("decode-death", 6)[0])[0] is grpc.StatusCode.OK


def current_writer(server: ServerProcess) -> int | None:
    """The writer's pid, or ``None`` while it is being replaced."""
    try:
        return ingest_processes(server)[0]
    except (AssertionError, OSError):  # mid-replacement: no writer yet, or a process gone while read
        return None


def test_a_killed_writer_is_a_503_in_the_otlp_shape_on_both_transports(
    db_url: str, server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(db_url, THREADLINE_INGEST_MAX_WAIT_SECONDS="30")
    for n, transport in enumerate(("http", "grpc")):
        # A request first, so the decode process is connected to this writer (the bytes of the next
        # one then wait in a socket the writer owns, which ``ss`` shows).
        assert post(server, body_of("writer-kill", 10 + n)[0]).status_code == 200
        writer, _ = ingest_processes(server)
        body, _ = body_of("writer-kill", n)
        with ThreadPoolExecutor(1) as pool:
            os.kill(writer, signal.SIGSTOP)
            pending = pool.submit(post if transport == "http" else grpc_call, server, body, 60)
            wait_until(lambda pid=writer: received_bytes(pid) > 0)  # handed over, not committed
            os.kill(writer, signal.SIGKILL)
            answer = pending.result()
        if transport == "http":
            assert isinstance(answer, httpx.Response)
            assert answer.status_code == 503 and Status.FromString(answer.content).code == 14
        else:
            assert answer[0] is grpc.StatusCode.UNAVAILABLE
        wait_until(lambda old=writer: current_writer(server) not in (None, old))  # replaced
    assert post(server, body_of("writer-kill", 5)[0]).status_code == 200


def test_a_silent_handoff_client_does_not_hold_up_commits(
    db_url: str, server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(db_url)
    writer, _ = ingest_processes(server)
    sockets = [line.split()[-1] for line in Path("/proc/net/unix").read_text().splitlines()[1:]
               if line.rstrip().endswith("writer.sock")]
    assert server.proc is not None
    owner = str(server.proc.pid)
    owners = {p: Path(p).parent / "owner.pid" for p in sockets}
    path = next(p for p, file in owners.items() if file.exists() and file.read_text() == owner)
    silent = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    try:
        for sock in silent:
            sock.connect(path)  # and never present the key
        started = time.monotonic()
        assert post(server, body_of("silent", 0)[0], timeout=4).status_code == 200
        assert time.monotonic() - started < 4
    finally:
        for sock in silent:
            sock.close()
    assert writer == ingest_processes(server)[0]


def test_hand_off_directories_of_killed_servers_are_removed_at_start(
    db_url: str, server_factory: Callable[..., ServerProcess],
) -> None:
    dead = tempfile.mkdtemp(prefix="threadline-writer-")
    Path(dead, "owner.pid").write_text("999999999")  # no such process
    alive = tempfile.mkdtemp(prefix="threadline-writer-")
    Path(alive, "owner.pid").write_text(str(os.getpid()))
    try:
        server_factory(db_url)
        assert not Path(dead).exists()
        assert Path(alive).exists()
    finally:
        for path in (dead, alive):
            if Path(path).exists():
                Path(path, "owner.pid").unlink()
                os.rmdir(path)
