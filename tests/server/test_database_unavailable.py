"""PostgreSQL goes away under a running server: 503 + Retry-After, never 500, never 200; then recovery.

The server reaches PostgreSQL through a TCP forwarder run by the test; stopping the forwarder
(and cutting the connections it carries) is the outage, restarting it on the same port the
recovery. Nothing acknowledged before, during or after may be lost.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import grpc
import httpx
import pytest

from support.otlp import PROTOBUF, SpanMaker, TurnSpec, hex_span_id, hex_trace_id, protobuf_body
from support.server import ServerProcess, free_port

from .rest import Api

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROJECT = "outage"


class Forwarder:
    """Proxy ``127.0.0.1:port`` → ``target_host:target_port`` with one thread per direction."""

    def __init__(self, port: int, target_host: str, target_port: int) -> None:
        self.port = port
        self.target = (target_host, target_port)
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> Forwarder:
        """Listen (again) on the same port and forward every connection."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every forwarded connection (both directions)."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def through(db_url: str, port: int) -> tuple[str, str, int]:
    """``db_url`` rewritten to go through ``127.0.0.1:port``; also the original host and port."""
    parts = urlsplit(db_url)
    assert parts.hostname and parts.port, db_url
    user = f"{parts.username}@" if parts.username else ""
    if parts.password:
        user = f"{parts.username}:{parts.password}@"
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}")), parts.hostname, parts.port


class Traffic:
    """Sends one small trace per call over HTTP or gRPC and keeps the acknowledged span ids."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.maker = SpanMaker(PROJECT)
        self.acknowledged: set[tuple[str, str]] = set()
        self.n = 0

    def send(self) -> int | grpc.StatusCode:
        """One export; the HTTP status, or the gRPC status code every third call."""
        self.n += 1
        spans = self.maker.turn(TurnSpec(f"q{self.n}", f"a{self.n}", session_id=f"s{self.n % 3}", user_id="u",
                                         prompt_tokens=1, completion_tokens=1))
        ids = {(hex_trace_id(s), hex_span_id(s)) for s in spans}
        if self.n % 3 == 0:
            with grpc.insecure_channel(self.server.grpc_target) as channel:
                try:
                    channel.unary_unary(EXPORT)(protobuf_body(spans), timeout=60)
                except grpc.RpcError as exc:
                    return exc.code()
            self.acknowledged |= ids
            return grpc.StatusCode.OK
        url = self.server.otlp_http_url if self.n % 2 else self.server.base_url + "/v1/traces"
        response = httpx.post(url, content=protobuf_body(spans), headers={"content-type": PROTOBUF}, timeout=60)
        assert response.status_code != 500, response.text
        if response.status_code == 200:
            self.acknowledged |= ids
        elif response.status_code == 503:
            assert int(response.headers["retry-after"]) >= 1
        return response.status_code


def outage_under_load(server: ServerProcess, forwarder: Forwarder) -> set[tuple[str, str]]:
    """Cut the database while three clients keep sending; the span ids that were acknowledged."""
    clients = [Traffic(server) for _ in range(3)]
    results: list[int | grpc.StatusCode] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def run(client: Traffic) -> None:
        try:
            while not done.is_set():
                results.append(client.send())
        except BaseException as exc:  # reported below
            errors.append(exc)

    def wait_for(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 120
        while not condition() and not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert condition(), errors

    def refused() -> int:
        return sum(r in (503, grpc.StatusCode.UNAVAILABLE) for r in results)

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(results) >= 9)
        forwarder.stop()
        wait_for(lambda: refused() >= 6)
        forwarder.start()
        recovered_at = len(results)
        wait_for(lambda: sum(r in (200, grpc.StatusCode.OK) for r in results[recovered_at:]) >= 9)
    finally:
        done.set()
        for thread in threads:
            thread.join(60)
    assert not errors, errors
    assert set(results) <= {200, 503, grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, set(results)
    return set().union(*(c.acknowledged for c in clients))


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_database_outage_gives_503_then_recovers(db_url: str, server_factory: Callable[..., ServerProcess]) -> None:
    port = free_port()
    url, host, pg_port = through(db_url, port)
    forwarder = Forwarder(port, host, pg_port).start()
    try:
        server = server_factory(url)
        traffic = Traffic(server)
        assert [traffic.send() for _ in range(6)] == [200, 200, grpc.StatusCode.OK] * 2

        forwarder.stop()
        during = [traffic.send() for _ in range(9)]
        assert set(during) <= {503, grpc.StatusCode.UNAVAILABLE}, during
        assert 503 in during and grpc.StatusCode.UNAVAILABLE in during
        for path in ("/healthz", "/v1/projects", f"/v1/projects/{PROJECT}/sessions"):
            response = httpx.get(server.base_url + path, timeout=60)
            assert response.status_code == 503, (path, response.text)
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"]["code"] == "store_unavailable"

        forwarder.start()
        for _ in range(20):  # the pool notices the database is back within a few requests
            if traffic.send() in (200, grpc.StatusCode.OK):
                break
        else:
            pytest.fail("exports did not succeed again after the database came back")
        after = [traffic.send() for _ in range(6)]
        assert set(after) <= {200, grpc.StatusCode.OK}, after

        api = Api(server.base_url)
        assert api.span_ids(PROJECT) == traffic.acknowledged
        sessions = api.sessions(PROJECT)
        assert sum(s["turns"] for s in sessions.values()) == len(traffic.acknowledged) // 2

        # the same again with requests in flight when the connections are cut
        acknowledged = outage_under_load(server, forwarder)
        stored = api.span_ids(PROJECT)
        assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged spans were lost"
        sessions = api.sessions(PROJECT)
        assert sum(s["turns"] for s in sessions.values()) == len(stored) // 2
        assert "Traceback" not in server.log(), server.log()[-5000:]
    finally:
        forwarder.stop()
