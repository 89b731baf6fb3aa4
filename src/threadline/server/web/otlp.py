"""OTLP/HTTP transport: ``POST /v1/traces`` with protobuf or JSON bodies, gzip, OTLP status codes.

A request is checked in the order that costs least to refuse: media type, credentials, then
admission (before the body is read when it has a ``Content-Length``), and only then read and
handed to a decode process. Every refusal is a ``google.rpc.Status`` body in the request's
encoding with the status that :mod:`~threadline.server.ingest.outcomes` gives it. The blocking
part runs on the ingest thread limiter, apart from the thread pool of the UI and API.
"""

from __future__ import annotations

import json
import logging
import time

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.requests import ClientDisconnect

from threadline import conventions as cv
from threadline.server.auth.gate import Gate, Outcome
from threadline.server.auth.roles import Action
from threadline.server.ingest import outcomes
from threadline.server.ingest.admission import Ticket
from threadline.server.ingest.otlp import JSON, PROTOBUF, DecodeError, PayloadTooLarge, media_type
from threadline.server.ingest.outcomes import INGEST_ERRORS, Answer
from threadline.server.ingest.service import IngestService

log = logging.getLogger("threadline.ingest")
router = APIRouter()


class Disconnects:
    """Clients that hung up before their body was read: counted, logged at debug (not an error)."""

    count = 0


def ingest_limiter(request: Request) -> anyio.CapacityLimiter:
    """The runtime's thread limiter for ingest (made on first use, inside the event loop)."""
    runtime = request.app.state.runtime
    limiter: anyio.CapacityLimiter | None = getattr(runtime, "ingest_limiter", None)
    if limiter is None:
        limiter = runtime.ingest_limiter = anyio.CapacityLimiter(runtime.settings.ingest_max_pending_requests)
    return limiter


def _status_response(answer: Answer, message: str, media: str, retry_after: int | None = None,
                     headers: dict[str, str] | None = None) -> Response:
    status = Status(code=answer.grpc_code, message=message)
    body = json.dumps(json_format.MessageToDict(status)).encode() if media == JSON else status.SerializeToString()
    extra = dict(headers or {})
    if answer.retry and retry_after is not None:
        extra["Retry-After"] = str(retry_after)
    return Response(body, status_code=answer.http_status, media_type=media, headers=extra)


async def _read_body(request: Request, limit: int, ticket: Ticket) -> bytearray:
    """The request body, at most ``limit`` bytes (else :class:`PayloadTooLarge`).

    With a ``Content-Length`` (already admitted) the body is read into one buffer of that size: a
    body of several megabytes is held once, not as chunks and then their join. Without one, each
    chunk is admitted as it arrives (:meth:`Ticket.grow`).
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        expected = int(declared)
        body = bytearray(expected)
        size = 0
        async for chunk in request.stream():
            if size + len(chunk) > expected:
                raise DecodeError(f"body is longer than its Content-Length of {expected} bytes")
            body[size:size + len(chunk)] = chunk
            size += len(chunk)
        if size < expected:
            raise DecodeError(f"body ended after {size} of its {expected} bytes")
        return body
    grown = bytearray()
    async for chunk in request.stream():
        if len(grown) + len(chunk) > limit:
            raise PayloadTooLarge(f"body exceeds the {limit}-byte limit")
        ticket.grow(len(chunk))
        grown += chunk
    return grown


def _otlp_answer(description: str, json_schema: dict[str, object]) -> dict[str, object]:
    return {"description": description, "content": {
        PROTOBUF: {"schema": {"type": "string", "format": "binary"}}, JSON: {"schema": json_schema}}}


_STATUS_SCHEMA: dict[str, object] = {
    "type": "object", "description": "google.rpc.Status (in the request's encoding)",
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "details": {"type": "array"}}}
#: OTLP answers: an ExportTraceServiceResponse, or a google.rpc.Status in the request's encoding.
OTLP_RESPONSES: dict[int | str, dict[str, object]] = {
    200: _otlp_answer("ExportTraceServiceResponse (partialSuccess names refused spans)", {
        "type": "object", "properties": {"partialSuccess": {"type": "object", "properties": {
            "rejectedSpans": {"type": "string"}, "errorMessage": {"type": "string"}}}}}),
    400: _otlp_answer("Undecodable body (or a body shorter than its Content-Length)", _STATUS_SCHEMA),
    401: _otlp_answer("No valid credentials (auth on)", _STATUS_SCHEMA),
    403: _otlp_answer("The key may not ingest into this project", _STATUS_SCHEMA),
    413: _otlp_answer("Body over THREADLINE_MAX_REQUEST_BYTES", _STATUS_SCHEMA),
    415: _otlp_answer("Neither application/x-protobuf nor application/json (answered in protobuf)", _STATUS_SCHEMA),
    503: _otlp_answer("Overloaded or the store is unavailable: retry after Retry-After", _STATUS_SCHEMA),
}


@router.post("/v1/traces", include_in_schema=True, tags=["otlp"], summary="OTLP/HTTP trace export",
             response_class=Response, responses=OTLP_RESPONSES, openapi_extra={"requestBody": {
                 "required": True, "description": "ExportTraceServiceRequest; Content-Encoding gzip accepted",
                 "content": {PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
                             JSON: {"schema": {"type": "object"}}}}})
async def export_traces(request: Request) -> Response:
    """Receive an OTLP ``ExportTraceServiceRequest`` (protobuf or JSON, optionally gzip)."""
    service: IngestService = request.app.state.ingest
    gate: Gate = request.app.state.gate
    settings = service.settings
    retry_after = settings.retry_after_seconds
    try:
        media = media_type(request.headers.get("content-type"))
    except INGEST_ERRORS as exc:
        return _status_response(outcomes.answer_for(exc), str(exc), PROTOBUF)
    limiter = ingest_limiter(request)
    project_header = request.headers.get(cv.PROJECT_HEADER)
    principal = None
    if gate.enabled:  # checked before the body is read: a refused sender costs no decoding
        principal = await anyio.to_thread.run_sync(gate.identify, request.headers.get("authorization"),
                                                   limiter=limiter)
        verdict = gate.check(principal, Action.INGEST, (project_header or "").strip() or None)
        if verdict.outcome is Outcome.UNAUTHENTICATED:
            return _status_response(outcomes.UNAUTHENTICATED, verdict.message, media,
                                    headers={"WWW-Authenticate": "Bearer"})
        if not verdict.allowed:
            return _status_response(outcomes.FORBIDDEN, verdict.message, media)
    allowed_projects = principal.projects if principal is not None else None
    declared = request.headers.get("content-length")
    size = int(declared) if declared and declared.isdigit() else 0
    try:
        if size > settings.max_request_bytes:
            raise PayloadTooLarge(f"body of {size} bytes exceeds the {settings.max_request_bytes}-byte limit")
        with service.admit(size) as ticket:
            admitted_at = time.monotonic()
            body = await _read_body(request, settings.max_request_bytes, ticket)
            outcome = await anyio.to_thread.run_sync(
                lambda: service.export(body, media, content_encoding=request.headers.get("content-encoding"),
                                       project_header=project_header, allowed_projects=allowed_projects,
                                       admitted_at=admitted_at, ticket=ticket),
                limiter=limiter)
    except ClientDisconnect:
        Disconnects.count += 1
        log.debug("an OTLP/HTTP client hung up before sending its whole body (%d so far)", Disconnects.count)
        return Response(status_code=400)  # nobody reads it
    except INGEST_ERRORS as exc:
        answer = outcomes.answer_for(exc)
        return _status_response(answer, outcomes.message_for(exc, answer), media, retry_after)
    response = ExportTraceServiceResponse()
    if outcome.rejected:
        response.partial_success.rejected_spans = outcome.rejected
        response.partial_success.error_message = outcome.error_message
    if media == JSON:
        return Response(json.dumps(json_format.MessageToDict(response)), media_type=JSON)
    return Response(response.SerializeToString(), media_type=PROTOBUF)
