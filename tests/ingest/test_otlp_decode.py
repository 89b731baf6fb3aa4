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
    wire_resource_spans,
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


# --- protobuf bodies are read a span at a time: the same spans as protobuf's own whole-message parse ---

def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def _unknown_fields() -> bytes:
    """Fields of every wire type under numbers OTLP does not use (a newer sender's additions)."""
    return (_varint(90 << 3 | 0) + _varint(150)  # varint
            + _varint(91 << 3 | 1) + b"\x01" * 8  # fixed64
            + _varint(92 << 3 | 2) + _varint(3) + b"abc"  # length-delimited
            + _varint(93 << 3 | 5) + b"\x02" * 4)  # fixed32


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _envelope() -> bytes:
    """Two resource groups (the first with its resource sent in two parts), three scopes, unknown
    fields at every level, spans with events and every attribute type."""
    first = request([{"name": "a", "attrs": {"session.id": "s1", "n": 3}},
                     {"name": "b", "span": "33" * 8}], {"openinference.project.name": "bot"})
    scope = first.resource_spans[0].scope_spans[0]
    event = scope.spans[0].events.add()
    event.name, event.time_unix_nano = "exception", 1_700_000_000_100_000_000
    scope.spans[0].events[0].attributes.add(key="exception.message").value.string_value = "boom ✓"
    scope.spans[1].attributes.add(key="ratio").value.double_value = 0.5
    scope.spans[1].attributes.add(key="flag").value.bool_value = True
    rs = first.resource_spans[0]
    resource_a, resource_b = rs.resource.__class__(), rs.resource.__class__()
    resource_a.attributes.add(key="service.name").value.string_value = "svc"
    resource_b.attributes.add(key="openinference.project.name").value.string_value = "bot"
    scopes = [ss.SerializeToString() + _unknown_fields() for ss in rs.scope_spans]
    second = request([{"name": "c", "span": "44" * 8, "attrs": {"user.id": "u"}}])
    second_scope = second.resource_spans[0].scope_spans[0]
    group_one = (_len_field(1, resource_a.SerializeToString()) + _len_field(2, scopes[0]) + _unknown_fields()
                 + _len_field(1, resource_b.SerializeToString()) + _len_field(2, second_scope.SerializeToString()))
    group_two = request([{"name": "d", "trace": "55" * 16}], {"openinference.project.name": "ops"}).resource_spans[0]
    return (_len_field(1, group_one) + _unknown_fields() + _len_field(1, group_two.SerializeToString()))


def _oracle(body: bytes) -> list[tuple[object, list[object]]]:
    whole = ExportTraceServiceRequest.FromString(body)
    return [(rs.resource, [span for ss in rs.scope_spans for span in ss.spans]) for rs in whole.resource_spans]


def _walked(body: bytes | memoryview) -> list[tuple[object, list[object]]]:
    return [(resource, [span for spans in scopes for span in spans]) for resource, scopes in wire_resource_spans(body)]


def test_the_wire_walk_finds_what_a_whole_parse_finds() -> None:
    body = _envelope()
    expected = _oracle(body)
    assert [len(spans) for _, spans in expected] == [3, 1]  # the fixture is what it says
    assert _walked(body) == expected
    assert _walked(memoryview(bytearray(body))) == expected  # a decode process's receive buffer
    decoded = decode_request(body, PROTOBUF)
    assert [(s.project, s.name) for s in decoded.spans] == [("bot", "a"), ("bot", "b"), ("bot", "c"), ("ops", "d")]
    assert decoded.spans[0].events[0]["attributes"] == {"exception.message": "boom ✓"}
    assert decoded.spans[1].attributes == {"ratio": 0.5, "flag": True}


def test_a_cut_body_is_refused_exactly_when_a_whole_parse_refuses_it() -> None:
    body = _envelope()
    refused = 0
    for end in range(len(body)):
        cut = body[:end]
        try:
            expected = _oracle(cut)
        except Exception:
            refused += 1
            with pytest.raises(DecodeError):
                _walked(cut)
        else:  # cut at a field boundary: a smaller valid request
            assert _walked(cut) == expected
    assert refused > len(body) // 2


@pytest.mark.parametrize("garbage", [b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x0b\x00", b"\x00\x01",
                                     b"\x0a\x05\x12\x03\x12\x01\xff"])
def test_invalid_wire_data_is_a_decode_error(garbage: bytes) -> None:
    with pytest.raises(DecodeError, match="not a valid protobuf"):
        decode_request(garbage, PROTOBUF)
