"""OTLP status codes of a real server (DESIGN §2): 200 + partial success, 400, 413, 415, 503.

The shared server of this module runs with small size limits (``limited_server``); the queue
tests start their own server with a one-span write queue. No response is ever a 500.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.trace import ReadableSpan

from support.otlp import (
    JSON,
    PROTOBUF,
    SpanMaker,
    TurnSpec,
    encode_request,
    gzipped,
    hex_span_id,
    hex_trace_id,
    to_otlp_json,
)
from support.server import ServerProcess

from .conftest import MAX_DECOMPRESSED_BYTES, MAX_REQUEST_BYTES
from .rest import Api

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def post(url: str, body: bytes, content_type: str | None = PROTOBUF, **headers: str) -> httpx.Response:
    """POST an OTLP body; a 500 fails the test wherever it happens."""
    if content_type is not None:
        headers["content-type"] = content_type
    response = httpx.post(url, content=body, headers=headers, timeout=60)
    assert response.status_code != 500, response.text
    return response


def rpc_status(response: httpx.Response) -> Status:
    """The ``google.rpc.Status`` body of an error response, in the request's encoding."""
    if response.headers["content-type"].startswith(JSON):
        status = Status(code=response.json()["code"], message=response.json()["message"])
    else:
        status = Status.FromString(response.content)
    assert status.message, "an error status must say what is wrong"
    return status


def grpc_export(target: str | grpc.Channel, body: bytes, **kwargs: object) -> grpc.StatusCode:
    """Call ``TraceService/Export`` with raw bytes (on a new or the given channel); the status code."""
    if isinstance(target, str):
        with grpc.insecure_channel(target) as channel:
            return grpc_export(channel, body, **kwargs)
    try:
        target.unary_unary(EXPORT)(body, timeout=60, **kwargs)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), exc
        return code
    return grpc.StatusCode.OK


def valid_turn(project: str, n: int) -> list[ReadableSpan]:
    """A two-span trace of ``project``'s session ``s{n % 3}``."""
    return SpanMaker(project).turn(TurnSpec(f"q{n}", f"a{n}", session_id=f"s{n % 3}", user_id="u",
                                            prompt_tokens=1, completion_tokens=1))


# --- 200 with partial success ----------------------------------------------------------------------

def test_partial_success_protobuf(limited_server: ServerProcess) -> None:
    maker = SpanMaker("partial-proto")
    good = maker.turn(TurnSpec("q", "a", session_id="partial"))
    bad = maker.turn(TurnSpec("x", "y"))
    request = encode_request(good + bad)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[2].span_id = b"\x01\x02\x03"  # wrong length (the bad trace's LLM span)
    spans[3].trace_id = bytes(16)  # all-zero trace id (the bad trace's root)
    response = post(limited_server.base_url + "/v1/traces", request.SerializeToString())
    assert response.status_code == 200
    assert response.headers["content-type"] == PROTOBUF
    result = ExportTraceServiceResponse.FromString(response.content)
    assert result.partial_success.rejected_spans == 2
    assert "span_id" in result.partial_success.error_message
    assert "trace_id" in result.partial_success.error_message
    api = Api(limited_server.base_url)
    assert api.project("partial-proto")["spans"] == 2
    assert len(api.trace("partial-proto", hex_trace_id(good[0]))["spans"]) == 2

    # the same over gRPC: OK with partial_success in the response message
    good_grpc = maker.turn(TurnSpec("q", "a", session_id="partial-grpc"))
    request = encode_request(good_grpc + bad)
    request.resource_spans[0].scope_spans[0].spans[3].trace_id = bytes(16)
    with grpc.insecure_channel(limited_server.grpc_target) as channel:
        reply = channel.unary_unary(EXPORT)(request.SerializeToString(), timeout=60)
    assert ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans == 1
    assert api.project("partial-proto")["spans"] == 5  # + 2 good, + the bad trace's valid LLM span


def test_partial_success_json(limited_server: ServerProcess) -> None:
    maker = SpanMaker("partial-json")
    good = maker.turn(TurnSpec("q", "a", session_id="partial"))
    bad = maker.turn(TurnSpec("x", "y"))
    document = to_otlp_json(encode_request(good + bad))
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[2]["traceId"] = "0" * 32
    spans[3]["spanId"] = "abcdef"  # 3 bytes
    response = post(limited_server.otlp_http_url, json.dumps(document).encode(), JSON)
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 2 and partial["errorMessage"]
    assert Api(limited_server.base_url).project("partial-json")["spans"] == 2


def test_hostile_numbers_are_bounded_never_a_500(limited_server: ServerProcess) -> None:
    """Times past 2262, infinite or int64-max token counts, absurd costs: stored bounded or rejected."""
    maker = SpanMaker("numbers")
    hostile: list[dict[str, AnyValue]] = [
        {"llm.token_count.prompt": AnyValue(string_value="1e400")},
        {"llm.token_count.prompt": AnyValue(double_value=float("inf"))},
        {"llm.token_count.prompt": AnyValue(int_value=2**63 - 1), "llm.token_count.total": AnyValue(int_value=-5)},
        {"llm.cost.total": AnyValue(double_value=1e308)},
        {"llm.cost.total": AnyValue(double_value=float("nan"))},
    ]
    for n, attributes in enumerate(hostile * 2):  # twice: the rollups must survive adding them up
        request = encode_request(maker.turn(TurnSpec(f"q{n}", "a", session_id="numbers", prompt_tokens=1)))
        llm = request.resource_spans[0].scope_spans[0].spans[0]
        llm.attributes.extend(KeyValue(key=key, value=value) for key, value in attributes.items())
        response = post(limited_server.otlp_http_url, request.SerializeToString())
        assert response.status_code == 200, (attributes, response.text)
    late = maker.turn(TurnSpec("late", "a", session_id="numbers", tool="clock"))  # llm, tool, agent
    request = encode_request(late)
    llm, tool, root = request.resource_spans[0].scope_spans[0].spans
    llm.start_time_unix_nano = 2**64 - 1
    tool.end_time_unix_nano = 2**63
    root.events.add(name="far", time_unix_nano=2**64 - 1)
    response = post(limited_server.otlp_http_url, request.SerializeToString())
    assert response.status_code == 200
    assert ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans == 2

    api = Api(limited_server.base_url)
    session = api.session("numbers", "numbers")
    assert len(session["turns"]) == 11
    assert [s["name"] for s in api.trace("numbers", hex_trace_id(late[0]))["spans"]] == ["agent"]
    assert session["tokens"]["prompt"] < 2**63 - 1
    assert 0 <= session["cost_usd"] < 1e300
    assert api.users("numbers") == {}
    assert api.spans("numbers")  # every listing still serializes


def test_nul_characters_are_stored_not_a_poison_batch(limited_server: ServerProcess) -> None:
    """PostgreSQL text cannot hold NUL: it must not turn a batch into a 503 that never ends."""
    maker = SpanMaker("nul\x00project")
    spans = maker.turn(TurnSpec("in\x00put", "out\x00put", session_id="s\x00id", user_id="u\x00id",
                                model="m\x00del", fail=True))
    request = encode_request(spans)
    llm, root = request.resource_spans[0].scope_spans[0].spans
    llm.name, llm.status.message = "ll\x00m", "bad\x00thing"
    llm.attributes.add(key="k\x00", value=AnyValue(string_value="v\x00"))
    llm.events.add(name="e\x00", time_unix_nano=root.start_time_unix_nano)
    response = post(limited_server.base_url + "/v1/traces", request.SerializeToString())
    assert response.status_code == 200, response.text
    api = Api(limited_server.base_url)
    assert "nul\ufffdproject" in api.projects()
    session = api.session("nul\ufffdproject", "s\ufffdid")
    assert session["user_ids"] == ["u\ufffdid"]
    (turn,) = session["turns"]
    assert (turn["input"], turn["output"], turn["status"]) == ("in\ufffdput", "out\ufffdput", "error")
    assert len(api.trace("nul\ufffdproject", hex_trace_id(spans[0]))["spans"]) == 2


def test_unencodable_and_oversized_ids_are_stored_not_a_poison_batch(limited_server: ServerProcess) -> None:
    """Lone surrogates (only JSON inside attributes can carry them) and ids too big to index."""
    rng = random.Random(5)
    huge_id = "".join(chr(rng.randrange(0x20000, 0x2A6DF)) for _ in range(1500))  # 4 bytes each, incompressible
    maker = SpanMaker("odd-text")
    cases = [
        {"metadata": '{"session_id": "lone\\ud800surrogate", "user_id": "\\udfff"}'},
        {"session.id": "json-output", "output.value": '{"output": "reply\\udc00"}',
         "output.mime_type": "application/json"},
        {"session.id": huge_id, "user.id": huge_id[::-1]},
    ]
    for attributes in cases:
        root = maker.span("root", attributes=attributes)
        root.end()
        response = post(limited_server.base_url + "/v1/traces", encode_request(maker.take()).SerializeToString())
        assert response.status_code == 200, (attributes, response.text)
    api = Api(limited_server.base_url)
    sessions = api.sessions("odd-text")
    assert len(sessions) == 3
    assert "lone\ufffdsurrogate" in sessions
    assert sessions["json-output"]["last_output"] == "reply\ufffd"
    (long_id,) = [sid for sid in sessions if sid not in ("lone\ufffdsurrogate", "json-output")]
    assert huge_id.startswith(long_id) and len(long_id.encode()) <= 1024
    assert api.session("odd-text", long_id)["turns"]
    assert len(api.users("odd-text")) == 2


# --- 400 -------------------------------------------------------------------------------------------

def test_undecodable_bodies_get_400_with_a_status(limited_server: ServerProcess) -> None:
    url = limited_server.base_url + "/v1/traces"
    for body in (b"\xff\xff\xff\xff", b"\x0a\x05\x0a", b"\x0a\x80\x80\x80\x80\x10"):
        response = post(url, body)
        assert response.status_code == 400, body
        assert response.headers["content-type"] == PROTOBUF
        assert rpc_status(response).code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    for text in (b"{not json", b"[1, 2]", b'{"resourceSpans": "x"}', b'{"resourceSpans": [{"scopeSpans": 3}]}',
                 b"\xff\xfe", b"[" * 50_000):
        response = post(url, text, JSON)
        assert response.status_code == 400, text[:40]
        assert response.headers["content-type"] == JSON
        assert rpc_status(response).code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    whole = gzipped(encode_request(valid_turn("truncated", 0)).SerializeToString())
    for cut in (b"not gzip at all", whole[:10], whole[:-8], whole[:-1]):  # never an empty 200
        response = post(url, cut, PROTOBUF, **{"content-encoding": "gzip"})
        assert response.status_code == 400, cut
        rpc_status(response)
    assert "truncated" not in Api(limited_server.base_url).projects()


def test_decoding_in_the_server_process_answers_the_same(
        db_url: str, server_factory: Callable[..., ServerProcess]) -> None:
    """``THREADLINE_DECODE_WORKERS=0`` decodes in the request's thread: a body that fails to decode
    is still a 400 (its buffer, still viewed by the failed decode, is not freed early), a good one
    is stored, on HTTP with and without a Content-Length."""
    server = server_factory(db_url, THREADLINE_DECODE_WORKERS="0")
    url = server.base_url + "/v1/traces"
    for body in (b"\x0a\x05\x12\x03\x12\x01\xff", b"\x0a\x80\x80\x80\x80\x10"):
        assert post(url, body).status_code == 400
        chunked = httpx.post(url, content=iter([body]), headers={"content-type": PROTOBUF}, timeout=30)
        assert chunked.status_code == 400, chunked.text
    assert post(url, encode_request(valid_turn("inline", 0)).SerializeToString()).status_code == 200
    assert "inline" in Api(server.base_url).projects()


# --- 413 -------------------------------------------------------------------------------------------

def test_oversize_bodies_get_413(limited_server: ServerProcess) -> None:
    url = limited_server.otlp_http_url
    too_big = random.Random(1).randbytes(MAX_REQUEST_BYTES + 1)
    response = post(url, too_big)
    assert response.status_code == 413
    assert rpc_status(response).message

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap must hold while streaming
        for _ in range(8):
            yield too_big[: MAX_REQUEST_BYTES // 4]

    response = httpx.post(url, content=chunks(), headers={"content-type": JSON}, timeout=60)
    assert response.status_code == 413
    assert response.headers["content-type"] == JSON


def test_gzip_bombs_get_413(limited_server: ServerProcess) -> None:
    bomb = gzip.compress(bytes(16 * MAX_DECOMPRESSED_BYTES), compresslevel=9)
    assert len(bomb) < MAX_REQUEST_BYTES
    for url in (limited_server.base_url + "/v1/traces", limited_server.otlp_http_url):
        for media in (PROTOBUF, JSON):
            response = post(url, bomb, media, **{"content-encoding": "gzip"})
            assert response.status_code == 413, response.text
            rpc_status(response)
    # just over the cap, decompressed, is too big as well; just under is fine
    assert post(limited_server.otlp_http_url, gzipped(b"\x00" * (MAX_DECOMPRESSED_BYTES + 1)),
                **{"content-encoding": "gzip"}).status_code in (400, 413)
    spans = valid_turn("bomb-neighbour", 0)
    ok = post(limited_server.otlp_http_url, gzipped(encode_request(spans).SerializeToString()),
              **{"content-encoding": "gzip"})
    assert ok.status_code == 200


def test_grpc_bomb_and_garbage(limited_server: ServerProcess) -> None:
    assert grpc_export(limited_server.grpc_target, b"\xff\xff\xff\xff") is grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_export(limited_server.grpc_target, random.Random(2).randbytes(4096)) is \
        grpc.StatusCode.INVALID_ARGUMENT
    bomb = bytes(4 * MAX_DECOMPRESSED_BYTES)
    assert grpc_export(limited_server.grpc_target, bomb, compression=grpc.Compression.Gzip) is \
        grpc.StatusCode.RESOURCE_EXHAUSTED


# --- 415 -------------------------------------------------------------------------------------------

def test_unsupported_media_get_415(limited_server: ServerProcess) -> None:
    url = limited_server.base_url + "/v1/traces"
    body = encode_request(valid_turn("never-stored", 0)).SerializeToString()
    for content_type in ("text/plain", None, "application/xml", "multipart/form-data; boundary=x"):
        response = post(url, body, content_type)
        assert response.status_code == 415, content_type
        rpc_status(response)
    for encoding in ("br", "zstd", "gzip, br"):
        response = post(url, body, PROTOBUF, **{"content-encoding": encoding})
        assert response.status_code == 415, encoding
        rpc_status(response)
    assert "never-stored" not in Api(limited_server.base_url).projects()


# --- hostile traffic next to valid traffic -----------------------------------------------------------

def test_garbage_and_bombs_do_not_disturb_valid_traffic(limited_server: ServerProcess) -> None:
    rng = random.Random(3)
    decodable_size = [rng.randbytes(rng.randrange(MAX_REQUEST_BYTES // 2, MAX_REQUEST_BYTES)) for _ in range(40)]
    oversize = [rng.randbytes(1024 * 1024) for _ in range(19)]
    garbage = decodable_size + oversize
    assert sum(map(len, garbage)) > 20 * 1024 * 1024
    bomb = gzip.compress(bytes(32 * MAX_DECOMPRESSED_BYTES), compresslevel=9)
    stop = threading.Event()
    statuses: list[int] = []
    bombs: list[int] = []
    acknowledged: set[tuple[str, str]] = set()

    def hostile(bodies: list[bytes], offset: int) -> None:
        for i, body in enumerate(bodies):
            media = JSON if (i + offset) % 3 == 0 else PROTOBUF
            if i % 4 == 0:  # streamed without Content-Length: the cap must hold while reading
                response = httpx.post(limited_server.base_url + "/v1/traces", content=iter([body[:4096], body[4096:]]),
                                      headers={"content-type": media}, timeout=60)
                assert response.status_code != 500
            else:
                response = post(limited_server.base_url + "/v1/traces", body, media)
            statuses.append(response.status_code)
            if i % 4 == 1:
                gzip_header = {"content-encoding": "gzip"}
                bombs.append(post(limited_server.otlp_http_url, bomb, media, **gzip_header).status_code)

    def valid(worker: int) -> None:
        n = 0
        while not stop.is_set() or n < 5:
            spans = valid_turn("steady", worker * 10_000 + n)
            url = limited_server.otlp_http_url if n % 2 else limited_server.base_url + "/v1/traces"
            response = post(url, encode_request(spans).SerializeToString())
            assert response.status_code == 200, response.text
            acknowledged.update((hex_trace_id(s), hex_span_id(s)) for s in spans)
            n += 1
            stop.wait(0.02)  # a steady trickle, not a flood: the hostile requests are the load here

    with ThreadPoolExecutor(6) as pool:
        steady = [pool.submit(valid, w) for w in range(2)]
        attacks = [pool.submit(hostile, garbage[i::4], i) for i in range(4)]
        for attack in attacks:
            attack.result()
        stop.set()
        for worker in steady:
            worker.result()

    assert len(statuses) == len(garbage)
    assert set(statuses) <= {400, 413}, sorted(set(statuses))
    assert bombs and set(bombs) == {413}
    assert statuses.count(400) == len(decodable_size)  # under the cap: read, decoded, refused
    assert Api(limited_server.base_url).span_ids("steady") == acknowledged


def test_a_dead_decode_worker_costs_one_503_not_every_request(limited_server: ServerProcess) -> None:
    assert limited_server.proc is not None
    children = Path(f"/proc/{limited_server.proc.pid}/task/{limited_server.proc.pid}/children").read_text().split()
    workers = [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert workers, "the server runs one decode worker process (THREADLINE_DECODE_WORKERS=1)"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
    statuses = [post(limited_server.base_url + "/v1/traces", encode_request(valid_turn("after-crash", n))
                     .SerializeToString()).status_code for n in range(4)]
    assert statuses[0] in (200, 503) and statuses[1:] == [200, 200, 200], statuses
    assert Api(limited_server.base_url).project("after-crash")["traces"] == statuses.count(200)


# --- 503 when the write queue is full ------------------------------------------------------------------

def test_full_queue_gets_503_with_retry_after_and_loses_nothing(
    db_url: str, server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(db_url, THREADLINE_QUEUE_MAX_SPANS="1")
    acknowledged: set[tuple[str, str]] = set()
    unavailable: list[httpx.Response] = []
    grpc_codes: list[grpc.StatusCode] = []
    lock = threading.Lock()

    def send(n: int) -> None:
        spans = valid_turn("queue", n)
        ids = {(hex_trace_id(s), hex_span_id(s)) for s in spans}
        body = encode_request(spans).SerializeToString()
        if n % 4 == 3:
            code = grpc_export(channel, body)
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE), code
            with lock:
                grpc_codes.append(code)
                if code is grpc.StatusCode.OK:
                    acknowledged.update(ids)
            return
        if n % 4 == 1:
            response = post(server.otlp_http_url, json.dumps(to_otlp_json(encode_request(spans))).encode(), JSON)
        else:
            response = post(server.base_url + "/v1/traces", body)
        assert response.status_code in (200, 503), response.text
        with lock:
            if response.status_code == 200:
                acknowledged.update(ids)
            else:
                unavailable.append(response)

    n = 0
    with ThreadPoolExecutor(24) as pool, grpc.insecure_channel(server.grpc_target) as channel:
        for _ in range(30):  # rounds of concurrent requests until both transports saw a full queue
            list(pool.map(send, range(n, n + 48)))
            n += 48
            if unavailable and grpc.StatusCode.UNAVAILABLE in grpc_codes:
                break
    print(f"{n} requests: {len(unavailable)} HTTP 503, {grpc_codes.count(grpc.StatusCode.UNAVAILABLE)} UNAVAILABLE")
    assert unavailable, "a one-span queue under 24 concurrent clients never filled up"
    assert grpc.StatusCode.UNAVAILABLE in grpc_codes
    for response in unavailable:
        assert int(response.headers["retry-after"]) >= 1
        assert rpc_status(response).code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert acknowledged
    assert Api(server.base_url).span_ids("queue") >= acknowledged
    assert "Traceback" not in server.log()
