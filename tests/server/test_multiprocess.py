"""Two ``threadline serve`` processes on one database (DESIGN §4: stateless processes).

Written for PostgreSQL; it runs on a shared SQLite file as well (writers queue on its lock).

Concurrent traffic reaches the same sessions and users through both processes: whole turns to
either one, turns whose root and LLM child go to *different* processes at the same time, and
batches resent to the other process. The final rollups must equal the numbers computed here
from what was sent.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan

from support.otlp import BASE_NS, PROTOBUF, SpanMaker, TurnSpec, hex_trace_id, protobuf_body
from support.server import ServerProcess

from .rest import Api

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROJECT = "shared-db"
USERS = ("ana", "bo", "cy")


@dataclass
class Sent:
    """One turn as sent: its spec, start time and spans."""

    spec: TurnSpec
    start_ns: int
    spans: list[ReadableSpan]


def send(server: ServerProcess, spans: list[ReadableSpan], via_grpc: bool, retries: list[int]) -> None:
    """Export until acknowledged; a 503 / UNAVAILABLE is retried as an OTLP exporter would."""
    body = protobuf_body(spans)
    for _ in range(50):
        if via_grpc:
            with grpc.insecure_channel(server.grpc_target) as channel:
                try:
                    channel.unary_unary(EXPORT)(body, timeout=60)
                    return
                except grpc.RpcError as exc:
                    assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc
        else:
            response = httpx.post(server.base_url + "/v1/traces", content=body,
                                  headers={"content-type": PROTOBUF}, timeout=60)
            assert response.status_code in (200, 503), response.text
            if response.status_code == 200:
                return
        retries.append(1)
        time.sleep(0.05)
    pytest.fail("an export was refused 50 times")


def test_two_processes_on_one_database_keep_exact_rollups(
    db_url: str, server_factory: Callable[..., ServerProcess],
) -> None:
    servers = (server_factory(db_url), server_factory(db_url))
    rng = random.Random(7)
    maker = SpanMaker(PROJECT)
    sent: list[Sent] = []
    for session in range(8):
        for turn in range(6):
            spec = TurnSpec(f"s{session} question {turn}", f"s{session} answer {turn}", session_id=f"conv-{session}",
                            user_id=USERS[(session + turn) % 3 if session % 2 else session % 3],
                            prompt_tokens=rng.randrange(1, 500), completion_tokens=rng.randrange(1, 200),
                            tool="lookup" if turn % 3 == 1 else None)
            start = BASE_NS + session * 3_600_000_000_000 + turn * 10_000_000_000
            sent.append(Sent(spec, start, maker.turn(spec, start)))

    tasks: list[tuple[int, list[ReadableSpan], bool]] = []  # (server, spans, via gRPC)
    for i, item in enumerate(sent):
        if i % 4 == 0:  # the LLM child to one process, the rest to the other, concurrently
            tasks.append((0, item.spans[:1], i % 8 == 0))
            tasks.append((1, item.spans[1:], i % 8 != 0))
        else:
            tasks.append((i % 2, item.spans, i % 3 == 0))
        if i % 5 == 0:  # the same spans again, through the other process
            tasks.append(((i + 1) % 2, item.spans, False))
    rng.shuffle(tasks)
    retries: list[int] = []
    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(send, servers[s], spans, g, retries) for s, spans, g in tasks]:
            future.result()

    # what the API must show, computed from what was sent
    by_session: dict[str, list[Sent]] = defaultdict(list)
    for item in sent:
        assert item.spec.session_id is not None
        by_session[item.spec.session_id].append(item)
    user_sessions: dict[str, set[str]] = defaultdict(set)
    user_turns: dict[str, int] = defaultdict(int)
    user_tokens: dict[str, int] = defaultdict(int)
    for item in sent:
        assert item.spec.user_id is not None and item.spec.session_id is not None
        user_sessions[item.spec.user_id].add(item.spec.session_id)
        user_turns[item.spec.user_id] += 1
        user_tokens[item.spec.user_id] += item.spec.total_tokens

    for server in servers:  # both processes read the same truth
        api = Api(server.base_url)
        project = api.project(PROJECT)
        assert (project["spans"], project["traces"], project["sessions"], project["users"]) == (
            sum(len(i.spans) for i in sent), len(sent), len(by_session), len(user_sessions))
        sessions = api.sessions(PROJECT)
        assert set(sessions) == set(by_session)
        for session_id, items in by_session.items():
            summary = sessions[session_id]
            assert summary["turns"] == len(items)
            assert summary["spans"] == sum(len(i.spans) for i in items)
            assert sorted(summary["user_ids"]) == sorted({i.spec.user_id for i in items if i.spec.user_id})
            assert summary["tokens"] == {"prompt": sum(i.spec.prompt_tokens for i in items),
                                         "completion": sum(i.spec.completion_tokens for i in items),
                                         "total": sum(i.spec.total_tokens for i in items)}
            assert (summary["first_input"], summary["last_output"]) == (items[0].spec.question,
                                                                        items[-1].spec.answer)
        detail = api.session(PROJECT, "conv-0")
        assert [t["trace_id"] for t in detail["turns"]] == [hex_trace_id(i.spans[0]) for i in by_session["conv-0"]]
        assert [t["tokens"]["total"] for t in detail["turns"]] == [i.spec.total_tokens for i in by_session["conv-0"]]
        users = api.users(PROJECT)
        assert {u: (s["sessions"], s["turns"], s["tokens"]["total"]) for u, s in users.items()} == {
            u: (len(user_sessions[u]), user_turns[u], user_tokens[u]) for u in user_sessions}
    for server in servers:
        assert "Traceback" not in server.log(), server.log()[-5000:]
    print(f"{len(tasks)} exports through 2 processes, {len(retries)} retried after 503/UNAVAILABLE")
