"""Decode OTLP trace export requests (protobuf or OTLP/JSON, optionally gzip) into plain spans.

Pure functions: bytes in, :class:`DecodedSpan` values out. Transport concerns (status codes,
size caps on the wire, gRPC) live in ``web``; both HTTP and gRPC call :func:`decode_request`.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from threadline import conventions as cv

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
OTEL_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS_CODES = ("UNSET", "OK", "ERROR")
_TRUNCATION_MARK = "…[truncated by Threadline: {n} characters]"
#: Times are stored as signed 64-bit nanoseconds (until 2262); OTLP's fixed64 can say more.
MAX_TIME_NS = 2**63 - 1
_PLACEMENT_KEYS = cv.PLACEMENT_KEYS
_INPUT_MESSAGES = cv.LLM_INPUT_MESSAGES + "."


#: A request body: bytes as received, or a view of a reused receive buffer (decode processes).
Body = bytes | bytearray | memoryview


#: Longest project name (characters); a longer one is refused, never cut (cut names could merge).
MAX_PROJECT_CHARS = 256


class DecodeError(ValueError):
    """The body is not a valid OTLP trace export request (HTTP 400 / gRPC INVALID_ARGUMENT)."""


class PayloadTooLarge(ValueError):
    """The body exceeds a size cap, before or after decompression (HTTP 413)."""


class UnsupportedContentType(ValueError):
    """Neither protobuf nor JSON (HTTP 415)."""


class ProjectNotAllowed(PermissionError):
    """The request holds spans of a project its API key may not write to (HTTP 403 / PERMISSION_DENIED)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied while decoding, so hostile input is never amplified."""

    max_decompressed_bytes: int = 128 * 1024 * 1024
    max_attribute_chars: int = 256 * 1024
    max_attributes_per_span: int = 2048
    max_events_per_span: int = 128
    max_depth: int = 8


@dataclass(slots=True)
class DecodedSpan:
    """One span as sent, with ids as lower-case hex and attributes as plain Python values."""

    project: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    otel_kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    dropped_attributes: int = 0


@dataclass(slots=True)
class DecodedRequest:
    """Valid spans plus the count and reasons of rejected ones (partial success)."""

    spans: list[DecodedSpan]
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def error_message(self) -> str:
        """A short message for ``partial_success.error_message``."""
        shown = "; ".join(self.errors[:5])
        more = len(self.errors) - 5
        return shown + (f"; and {more} more" if more > 0 else "")


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, or raise :class:`UnsupportedContentType`."""
    value = (content_type or "").split(";", 1)[0].strip().lower()
    if value in (PROTOBUF, "application/protobuf", "application/vnd.google.protobuf"):
        return PROTOBUF
    if value == JSON:
        return JSON
    raise UnsupportedContentType(
        f"unsupported Content-Type {content_type!r}: send application/x-protobuf or application/json"
    )


def decompress(body: Body, content_encoding: str | None, limit: int) -> Body:
    """Undo ``Content-Encoding: gzip`` (or deflate) without ever inflating past ``limit`` bytes."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise PayloadTooLarge(f"body of {len(body)} bytes exceeds the {limit}-byte limit")
        return body
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise UnsupportedContentType(f"unsupported Content-Encoding {content_encoding!r}: use gzip or none")
    wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise DecodeError(f"body is not valid {encoding}: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds the {limit}-byte limit")
    if not inflater.eof:
        raise DecodeError(f"{encoding} body is truncated: the compressed stream does not end")
    return out


def parse_request(body: Body, media: str) -> ExportTraceServiceRequest:
    """Parse protobuf or OTLP/JSON bytes into an ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest()
    if media == PROTOBUF:
        try:
            request.ParseFromString(body)  # type: ignore[arg-type]  # upb parses any buffer, no copy
        except (ProtobufDecodeError, RecursionError, ValueError) as exc:
            raise DecodeError(f"body is not a valid protobuf ExportTraceServiceRequest: {exc}") from exc
        return request
    try:
        document = json.loads(bytes(body) if isinstance(body, memoryview) else body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise DecodeError("OTLP/JSON body must be an object with a resourceSpans array")
    _hex_ids_to_base64(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
        raise DecodeError(f"body is not a valid OTLP/JSON ExportTraceServiceRequest: {exc}") from exc
    return request


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP/JSON carries ids as hex; protobuf's JSON mapping wants base64 for bytes fields."""
    for resource_spans in _list(document.get("resourceSpans", document.get("resource_spans"))):
        scope_list = resource_spans.get("scopeSpans", resource_spans.get("scope_spans")) if isinstance(
            resource_spans, dict) else None
        for scope_spans in _list(scope_list):
            if not isinstance(scope_spans, dict):
                continue
            for span in _list(scope_spans.get("spans")):
                if not isinstance(span, dict):
                    continue
                _convert_ids(span)
                for link in _list(span.get("links")):
                    if isinstance(link, dict):
                        _convert_ids(link)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _convert_ids(obj: dict[str, Any]) -> None:
    for key in ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"):
        value = obj.get(key)
        if isinstance(value, str):
            try:
                obj[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                obj[key] = ""  # invalid hex: the span is rejected individually


def any_value(value: AnyValue, limits: Limits, depth: int = 0) -> Any:
    """Convert an OTLP ``AnyValue`` into a bounded plain Python value."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return _bound(value.string_value, limits.max_attribute_chars)
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)  # JSON has no NaN/inf
    if kind == "bool_value":
        return value.bool_value
    if depth >= limits.max_depth:
        return None
    if kind == "array_value":
        return [any_value(v, limits, depth + 1) for v in value.array_value.values[: limits.max_attributes_per_span]]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value, limits, depth + 1)
                for kv in value.kvlist_value.values[: limits.max_attributes_per_span]}
    if kind == "bytes_value":
        return _bound(value.bytes_value.hex(), limits.max_attribute_chars)
    return None


def _bound(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + _TRUNCATION_MARK.format(n=len(text) - limit)


def attributes(kvs: Any, limits: Limits) -> tuple[dict[str, Any], int]:
    """Attributes as a dict, at most ``max_attributes_per_span``; also the number dropped.

    Over the cap, :func:`within_cap` chooses which to keep (the placement keys always). The
    common scalar cases are handled inline: this loop runs for every attribute of every span.
    A non-empty ``string_value`` can only be the set member of the value's oneof, so most
    attributes (strings) need no ``WhichOneof`` call.
    """
    out: dict[str, Any] = {}
    limit = limits.max_attribute_chars
    most = limits.max_attributes_per_span
    count = len(kvs)
    dropped = 0
    if count > most:
        kvs = within_cap(kvs, most)
        dropped = count - len(kvs)
    kv: KeyValue
    for kv in kvs:
        key = kv.key
        if len(key) > 1024:
            key = _bound(key, 1024)
        value = kv.value
        text = value.string_value
        if text:
            out[key] = text if len(text) <= limit else _bound(text, limit)
            continue
        kind = value.WhichOneof("value")
        if kind == "int_value":
            out[key] = value.int_value
        elif kind == "string_value":
            out[key] = text
        elif kind == "bool_value":
            out[key] = value.bool_value
        else:
            out[key] = any_value(value, limits)
    return out, dropped


def within_cap(kvs: Sequence[KeyValue], most: int) -> list[KeyValue]:
    """The attributes to keep of a list longer than ``most``, in their order.

    First every key of :data:`~threadline.conventions.PLACEMENT_KEYS` (session, user, project,
    kind, turn text, model, tokens, cost), wherever it comes: the span must still land in its
    conversation. Then the others in order, chat input messages (``llm.input_messages.*``) last
    and the *newest* of them: a long history overflows there, and the turn is named by its last
    user message and the one before it. Only the placement keys may take the count past
    ``most`` (when ``most`` is smaller than their number).
    """
    placement: dict[str, int] = {}  # key -> index of its last occurrence (the one a dict keeps)
    messages: list[int] = []
    others: list[int] = []
    for index, kv in enumerate(kvs):
        key = kv.key
        if key in _PLACEMENT_KEYS:
            placement[key] = index
        elif key.startswith(_INPUT_MESSAGES):
            messages.append(index)
        else:
            others.append(index)
    room = max(0, most - len(placement))
    chosen = [*placement.values(), *others[:room]]
    room -= min(room, len(others))
    if room:
        chosen.extend(messages[-room:])
    chosen.sort()
    return [kvs[index] for index in chosen]


def decode_request(
    body: Body, media: str, *, project_header: str | None = None, limits: Limits | None = None
) -> DecodedRequest:
    """Decode an export request body (already decompressed) into spans, rejecting invalid ones."""
    result = DecodedRequest(spans=[])
    result.spans.extend(decode_spans(body, media, result, project_header=project_header, limits=limits))
    return result


def decode_spans(
    body: Body, media: str, outcome: DecodedRequest, *, project_header: str | None = None,
    limits: Limits | None = None,
) -> Iterator[DecodedSpan]:
    """The valid spans of an export request body (already decompressed), one at a time; rejected
    spans are counted, with their reasons, in ``outcome``.

    One at a time, so a caller that turns each span into its stored form before asking for the
    next never holds the decoded attributes of a whole request (a 21 MiB request of 8,000 chat
    spans decodes to a few hundred MB of Python strings and dicts). A protobuf body is also
    parsed a span at a time (:func:`wire_resource_spans`), so neither is its parsed form held.
    """
    limits = limits or Limits()
    header_project = (project_header or "").strip() or None
    if header_project is not None and len(header_project) > MAX_PROJECT_CHARS:
        raise DecodeError(f"the {cv.PROJECT_HEADER} header names a project of {len(header_project)} characters; "
                          f"project names have at most {MAX_PROJECT_CHARS}")
    groups = wire_resource_spans(body) if media == PROTOBUF else _message_resource_spans(parse_request(body, media))
    for resource_message, scopes in groups:
        resource, _ = attributes(resource_message.attributes, limits)
        project = header_project or _project_from_resource(resource)
        if len(project) > MAX_PROJECT_CHARS:  # never cut: two long names would merge into one project
            refused = sum(1 for spans in scopes for _ in spans)
            outcome.rejected += refused
            outcome.errors.append(f"{refused} spans name a project of {len(project)} characters in "
                                  f"{cv.PROJECT_NAME}; project names have at most {MAX_PROJECT_CHARS}")
            continue
        for spans in scopes:
            for span in spans:
                decoded = _decoded(span, project, limits, outcome)
                if decoded is not None:
                    yield decoded


#: One ``ResourceSpans``: its resource, and its scopes' spans (each an iterable, parsed as it is read).
ResourceGroup = tuple[Resource, list[Iterable[Span]]]


def _message_resource_spans(request: ExportTraceServiceRequest) -> Iterator[ResourceGroup]:
    """The groups of a request parsed whole (OTLP/JSON)."""
    for resource_spans in request.resource_spans:
        yield resource_spans.resource, [scope_spans.spans for scope_spans in resource_spans.scope_spans]


def _decoded(span: Span, project: str, limits: Limits, outcome: DecodedRequest) -> DecodedSpan | None:
    """``span`` as a :class:`DecodedSpan`, or ``None`` (counted as rejected in ``outcome``) if invalid."""
    trace_id, span_id = span.trace_id, span.span_id
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    problem = _invalid(span, trace_id, span_id, start, end)
    if problem:
        outcome.rejected += 1
        outcome.errors.append(problem)
        return None
    attrs, dropped = attributes(span.attributes, limits)
    status = span.status
    code, kind, parent = status.code, span.kind, span.parent_span_id
    message = status.message
    events = span.events
    return DecodedSpan(
        project,
        trace_id.hex(),
        span_id.hex(),
        parent.hex() if len(parent) == 8 else None,
        _bound(span.name, 1024),
        OTEL_KINDS[kind] if 0 <= kind < len(OTEL_KINDS) else "UNSPECIFIED",
        start,
        max(start, end),
        STATUS_CODES[code] if 0 <= code < 3 else "UNSET",
        (_bound(message, 8192) if message else None),
        attrs,
        [
            {"name": _bound(e.name, 1024), "time_ns": min(int(e.time_unix_nano), MAX_TIME_NS),
             "attributes": attributes(e.attributes, limits)[0]}
            for e in events[: limits.max_events_per_span]
        ] if events else [],
        dropped,
    )


# --- protobuf bodies, read one span at a time -------------------------------------------------------
# ExportTraceServiceRequest.resource_spans = 1; ResourceSpans.resource = 1, .scope_spans = 2;
# ScopeSpans.spans = 2 (opentelemetry/proto/collector/trace/v1/trace_service.proto, trace/v1/trace.proto).
_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32 = 0, 1, 2, 5


def wire_resource_spans(body: Body) -> Iterator[ResourceGroup]:
    """The resource groups of a protobuf ``ExportTraceServiceRequest``, read from its wire format.

    Only the envelope (resource spans, scope spans) is walked here; each span is parsed on its
    own when its turn comes, so the parsed form of a whole request never exists at once (a 21 MiB
    request parsed whole takes about as much again). Fields this reader does not need are skipped
    as protobuf skips unknown fields; a resource sent in several parts is merged, as a parser
    merges repeated occurrences of a message field. Raises :class:`DecodeError` for a body that is
    not valid protobuf, as a whole-message parse would, when the walk reaches the fault.
    """
    view = memoryview(body).cast("B")
    for number, start, end in _fields(view, 0, len(view)):
        if number == 1:
            resource = Resource()
            scopes: list[Iterable[Span]] = []
            for inner, a, b in _fields(view, start, end):
                if inner == 1:
                    _parse_into(resource, view[a:b])
                elif inner == 2:
                    scopes.append(_scope_spans(view, a, b))
            yield resource, scopes


def _scope_spans(view: memoryview, start: int, end: int) -> Iterator[Span]:
    for number, a, b in _fields(view, start, end):
        if number == 2:
            span = Span()
            _parse_into(span, view[a:b])
            yield span


def _parse_into(message: Resource | Span, data: memoryview) -> None:
    try:
        message.MergeFromString(data)  # type: ignore[arg-type]  # upb parses any buffer
    except (ProtobufDecodeError, RecursionError, ValueError) as exc:
        raise DecodeError(f"body is not a valid protobuf ExportTraceServiceRequest: {exc}") from exc


def _fields(view: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """``(field number, value start, value end)`` of each length-delimited field in ``view[start:end]``;
    fields of the other wire types are skipped."""
    at = start
    while at < end:
        key, at = _varint(view, at, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise DecodeError("body is not a valid protobuf ExportTraceServiceRequest: field number 0")
        if wire == _WIRE_LEN:
            size, at = _varint(view, at, end)
            if at + size > end:
                raise DecodeError("body is not a valid protobuf ExportTraceServiceRequest: truncated field")
            yield number, at, at + size
            at += size
        elif wire == _WIRE_VARINT:
            _, at = _varint(view, at, end)
        elif wire == _WIRE_I64:
            at += 8
        elif wire == _WIRE_I32:
            at += 4
        else:  # groups (deprecated, never in OTLP) and invalid wire types
            raise DecodeError(f"body is not a valid protobuf ExportTraceServiceRequest: wire type {wire}")
        if at > end:
            raise DecodeError("body is not a valid protobuf ExportTraceServiceRequest: truncated field")


def _varint(view: memoryview, at: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while at < end and shift < 64:
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
    raise DecodeError("body is not a valid protobuf ExportTraceServiceRequest: truncated or overlong varint")


def _project_from_resource(resource: dict[str, Any]) -> str:
    name = resource.get(cv.PROJECT_NAME)
    if isinstance(name, str) and name.strip():
        return name.strip()
    return "default"


def _invalid(span: Any, trace_id: bytes, span_id: bytes, start: int, end: int) -> str | None:
    if len(trace_id) != 16 or not any(trace_id):
        return f"span {span.name[:64]!r}: trace_id must be 16 non-zero bytes"
    if len(span_id) != 8 or not any(span_id):
        return f"span {span.name[:64]!r}: span_id must be 8 non-zero bytes"
    if start == 0:
        return f"span {span.name[:64]!r}: start_time_unix_nano is required"
    if start > MAX_TIME_NS or end > MAX_TIME_NS:
        return f"span {span.name[:64]!r}: times must be before 2262 (signed 64-bit nanoseconds)"
    return None
