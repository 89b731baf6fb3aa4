"""Pure decoding of OTLP requests: encodings, bounds, rejections."""

from __future__ import annotations

import gzip
import json

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from threadline.server.ingest.otlp import (
    JSON,
    PROTOBUF,
    DecodeError,
    Limits,
    PayloadTooLarge,
    UnsupportedContentType,
    decode_request,
    decompress,
    media_type,
)


def request(spans: list[dict[str, object]], resource: dict[str, str] | None = None) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for key, value in (resource or {}).items():
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = key, value
    ss = rs.scope_spans.add()
    for spec in spans:
        sp = ss.spans.add()
        sp.trace_id = bytes.fromhex(str(spec.get("trace", "11" * 16)))
        sp.span_id = bytes.fromhex(str(spec.get("span", "22" * 8)))
        sp.name = str(spec.get("name", "op"))
        sp.start_time_unix_nano = 1_700_000_000_000_000_000
        sp.end_time_unix_nano = 1_700_000_000_500_000_000
        for key, value in dict(spec.get("attrs", {})).items():  # type: ignore[call-overload]
            kv = sp.attributes.add()
            kv.key = key
            if isinstance(value, int):
                kv.value.int_value = value
            else:
                kv.value.string_value = str(value)
    return req


def test_protobuf_round_trip_and_project_from_resource() -> None:
    body = request([{"attrs": {"session.id": "s"}}], {"openinference.project.name": "bot"}).SerializeToString()
    decoded = decode_request(body, PROTOBUF)
    assert decoded.rejected == 0
    [span] = decoded.spans
    assert (span.project, span.trace_id, span.span_id, span.attributes["session.id"]) == (
        "bot", "11" * 16, "22" * 8, "s")


def test_header_project_overrides_resource() -> None:
    body = request([{}], {"openinference.project.name": "bot"}).SerializeToString()
    assert decode_request(body, PROTOBUF, project_header="ops").spans[0].project == "ops"
    assert decode_request(request([{}]).SerializeToString(), PROTOBUF).spans[0].project == "default"


def test_otlp_json_with_hex_ids_and_string_ints() -> None:
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "x",
        "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000",
        "attributes": [{"key": "llm.token_count.prompt", "value": {"intValue": "12"}}],
    }]}]}]}
    [span] = decode_request(json.dumps(document).encode(), JSON).spans
    assert span.trace_id == "5b8efff798038103d269b633813fc60c"
    assert span.attributes["llm.token_count.prompt"] == 12


def test_invalid_spans_are_rejected_individually() -> None:
    body = request([{"trace": "00" * 16}, {"span": "33" * 4}, {"name": "good"}]).SerializeToString()
    decoded = decode_request(body, PROTOBUF)
    assert [s.name for s in decoded.spans] == ["good"]
    assert decoded.rejected == 2
    assert "trace_id" in decoded.error_message() and "span_id" in decoded.error_message()


@pytest.mark.parametrize("body, media", [(b"\x0a\xff\xff\xff", PROTOBUF), (b"{nope", JSON), (b"[1,2]", JSON)])
def test_garbage_is_a_decode_error(body: bytes, media: str) -> None:
    with pytest.raises(DecodeError):
        decode_request(body, media)


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    with pytest.raises(PayloadTooLarge):
        decompress(bomb, "gzip", 1024 * 1024)
    assert decompress(gzip.compress(b"abc"), "gzip", 1024) == b"abc"


def test_content_types() -> None:
    assert media_type("application/x-protobuf") == PROTOBUF
    assert media_type("application/json; charset=utf-8") == JSON
    with pytest.raises(UnsupportedContentType):
        media_type("text/plain")
    with pytest.raises(UnsupportedContentType):
        decompress(b"x", "br", 10)


def test_huge_attribute_values_are_truncated_and_counts_capped() -> None:
    attrs: dict[str, object] = {f"k{i}": i for i in range(50)}
    attrs["big"] = "y" * 100_000
    body = request([{"attrs": attrs}]).SerializeToString()
    limits = Limits(max_attribute_chars=1000, max_attributes_per_span=20)
    [span] = decode_request(body, PROTOBUF, limits=limits).spans
    assert len(span.attributes) == 20
    assert span.dropped_attributes == 31
    big = request([{"attrs": {"big": "y" * 100_000}}]).SerializeToString()
    [one] = decode_request(big, PROTOBUF, limits=limits).spans
    assert len(str(one.attributes["big"])) < 1100


PLACEMENT = {
    "session.id": "long-chat", "user.id": "ann", "gen_ai.conversation.id": "conv",
    "openinference.span.kind": "LLM", "input.value": "last question", "llm.token_count.total": 42,
}


def long_history(messages: int) -> dict[str, object]:
    """A few ordinary attributes, then ``messages`` chat messages (role and content each)."""
    attrs: dict[str, object] = {"llm.model_name": "m", "llm.output_messages.0.message.content": "answer"}
    for i in range(messages):
        attrs[f"llm.input_messages.{i}.message.role"] = "user" if i % 2 == 0 else "assistant"
        attrs[f"llm.input_messages.{i}.message.content"] = f"message {i}"
    return attrs


def test_the_cap_keeps_the_placement_keys_even_when_they_come_last() -> None:
    attrs = long_history(2496)
    attrs.update(PLACEMENT)  # the 4,995th to 5,000th attribute
    assert len(attrs) == 5000
    resource = {f"r{i}": "v" for i in range(4999)} | {"openinference.project.name": "bot"}
    body = request([{"attrs": attrs}], resource).SerializeToString()
    [span] = decode_request(body, PROTOBUF, limits=Limits(max_attributes_per_span=2048)).spans
    assert span.project == "bot"
    assert len(span.attributes) == 2048
    assert span.dropped_attributes == 5000 - 2048
    assert {key: span.attributes[key] for key in PLACEMENT} == PLACEMENT
    assert span.attributes["llm.model_name"] == "m"
    assert span.attributes["llm.output_messages.0.message.content"] == "answer"
    # 7 placement keys (llm.model_name is one) and 1 other leave room for the newest 1,020 messages
    kept = [key for key in span.attributes if key.startswith("llm.input_messages.")]
    assert kept == [f"llm.input_messages.{i}.message.{part}" for i in range(1476, 2496) for part in ("role", "content")]
    assert span.attributes["llm.input_messages.2494.message.content"] == "message 2494"


def test_the_placement_keys_stay_even_past_a_tiny_cap() -> None:
    attrs = {**long_history(10), **PLACEMENT}
    [span] = decode_request(request([{"attrs": attrs}]).SerializeToString(), PROTOBUF,
                            limits=Limits(max_attributes_per_span=3)).spans
    placement = {**PLACEMENT, "llm.model_name": "m"}  # the model names the span too
    assert span.attributes == placement
    assert span.dropped_attributes == len(attrs) - len(placement)


def test_under_the_cap_nothing_is_chosen_or_dropped() -> None:
    attrs = {**PLACEMENT, **long_history(5)}
    [span] = decode_request(request([{"attrs": attrs}]).SerializeToString(), PROTOBUF,
                            limits=Limits(max_attributes_per_span=len(attrs))).spans
    assert list(span.attributes) == list(attrs)
    assert span.dropped_attributes == 0
