"""Acknowledged means committed: ``kill -9`` (or SIGTERM) mid-ingest loses no span that got a 200.

Several clients (OTLP/HTTP on both ports and OTLP/gRPC) send batches with unique ids and record
which requests were acknowledged; the server is SIGKILLed while they are still sending; a new
server on the same database must show every acknowledged span, with rollups that agree with the
spans (a commit is all or nothing, rollups included).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable

import grpc
import httpx
import pytest

from support.otlp import BASE_NS, PROTOBUF, SpanMaker, TurnSpec, hex_span_id, hex_trace_id, protobuf_body
from support.server import ServerProcess

from .rest import Api

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROJECT = "durable"


class Acknowledged:
    """Span ids of acknowledged requests, shared by the sender threads."""

    def __init__(self) -> None:
        self.spans: set[tuple[str, str]] = set()
        self.requests = 0
        self.lock = threading.Lock()

    def add(self, ids: set[tuple[str, str]]) -> None:
        with self.lock:
            self.spans |= ids
            self.requests += 1


def sender(server: ServerProcess, worker: int, acked: Acknowledged, killed: threading.Event) -> None:
    """Send 3-turn batches until the server is gone; record what got a 200 / OK."""
    maker = SpanMaker(PROJECT)
    n = 0
    with httpx.Client(timeout=30) as client, grpc.insecure_channel(server.grpc_target) as channel:
        export = channel.unary_unary(EXPORT)
        while True:
            traces = maker.turns([
                TurnSpec(f"w{worker} q{n}.{i}", f"a{i}", session_id=f"w{worker}-s{(n + i) % 4}",
                         user_id=f"user-{worker % 2}", prompt_tokens=3, completion_tokens=2)
                for i in range(3)
            ], start_ns=BASE_NS + n * 10_000_000_000)
            spans = [s for t in traces for s in t]
            ids = {(hex_trace_id(s), hex_span_id(s)) for s in spans}
            body = protobuf_body(spans)
            n += 1
            if worker % 3 == 2:
                try:
                    export(body, timeout=30)
                except grpc.RpcError as exc:
                    if killed.is_set():
                        # a stopping gRPC server cancels calls it has not dispatched yet (CANCELLED
                        # is retryable in OTLP); nothing unacknowledged counts either way
                        assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), exc
                        return
                    assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc  # a full queue, while alive
                    continue
                acked.add(ids)
                continue
            url = server.otlp_http_url if worker % 3 else server.base_url + "/v1/traces"
            try:
                response = client.post(url, content=body, headers={"content-type": PROTOBUF})
            except httpx.TransportError as exc:
                assert killed.is_set(), f"the server dropped a connection while alive: {exc!r}"
                return
            assert response.status_code in (200, 503), response.text
            if response.status_code == 200:
                acked.add(ids)


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
def test_stopping_during_ingest_loses_no_acknowledged_span(
    db_url: str, server_factory: Callable[..., ServerProcess], how: str,
) -> None:
    server = server_factory(db_url)
    acked = Acknowledged()
    killed = threading.Event()
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            sender(server, worker, acked, killed)
        except BaseException as exc:  # reported by the test, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while acked.requests < 40 and time.monotonic() < deadline and not errors:
        time.sleep(0.02)
    assert acked.requests >= 40 or errors, "the senders never got going"
    killed.set()  # from now on, a failed request is expected
    if how == "kill -9":
        server.kill()  # SIGKILL while requests are in flight
    else:
        server.stop()  # graceful: in-flight requests finish (200 or 503), queued spans are committed
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert not errors, errors

    restarted = server_factory(db_url)
    api = Api(restarted.base_url)
    stored = api.span_ids(PROJECT)
    missing = acked.spans - stored
    assert not missing, f"{len(missing)} acknowledged spans were lost, e.g. {sorted(missing)[:3]}"
    project = api.project(PROJECT)
    assert project["spans"] == len(stored) >= len(acked.spans)

    # the rollups committed with the spans: every session's counts agree with its stored spans
    spans = api.spans(PROJECT)
    traces: dict[str, set[str]] = defaultdict(set)
    span_count: dict[str, int] = defaultdict(int)
    for span in spans:
        traces[span["session_id"]].add(span["trace_id"])
        span_count[span["session_id"]] += 1
    sessions = api.sessions(PROJECT)
    assert set(sessions) == set(traces)
    for session_id, summary in sessions.items():
        assert (summary["turns"], summary["spans"]) == (len(traces[session_id]), span_count[session_id])
        assert summary["tokens"]["total"] == 5 * len(traces[session_id])
    assert project["sessions"] == len(sessions)
    assert project["traces"] == sum(len(t) for t in traces.values())
