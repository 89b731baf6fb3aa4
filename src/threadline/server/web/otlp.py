"""OTLP/HTTP transport: ``POST /v1/traces`` with protobuf or JSON bodies, gzip, OTLP status codes."""

from __future__ import annotations

import json

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from threadline import conventions as cv
from threadline.server.auth.gate import Gate, Outcome
from threadline.server.auth.roles import Action
from threadline.server.ingest.decoders import WorkerLost
from threadline.server.ingest.otlp import (
    JSON,
    PROTOBUF,
    DecodeError,
    PayloadTooLarge,
    ProjectNotAllowed,
    UnsupportedContentType,
    media_type,
)
from threadline.server.ingest.service import IngestService
from threadline.server.ingest.writer import QueueFull, StoreUnavailable

router = APIRouter()


def _status_response(code: int, message: str, media: str, grpc_code: int, headers: dict[str, str] | None = None
                     ) -> Response:
    status = Status(code=grpc_code, message=message)
    body = json.dumps(json_format.MessageToDict(status)).encode() if media == JSON else status.SerializeToString()
    return Response(body, status_code=code, media_type=media, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes | bytearray:
    """The request body, at most ``limit`` bytes (else :class:`PayloadTooLarge`).

    With a ``Content-Length`` the body is read into one buffer of that size: a body of several
    megabytes is held once, not as chunks and then their join.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        expected = int(declared)
        if expected > limit:
            raise PayloadTooLarge(f"body of {declared} bytes exceeds the {limit}-byte limit")
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
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/v1/traces", include_in_schema=True, tags=["otlp"], summary="OTLP/HTTP trace export")
async def export_traces(request: Request) -> Response:
    """Receive an OTLP ``ExportTraceServiceRequest`` (protobuf or JSON, optionally gzip)."""
    service: IngestService = request.app.state.ingest
    gate: Gate = request.app.state.gate
    settings = service.settings
    content_type = request.headers.get("content-type")
    try:
        media = media_type(content_type)
    except UnsupportedContentType as exc:
        return _status_response(415, str(exc), PROTOBUF, 3)
    project_header = request.headers.get(cv.PROJECT_HEADER)
    principal = None
    if gate.enabled:  # checked before the body is read: a refused sender costs no decoding
        principal = await anyio.to_thread.run_sync(gate.identify, request.headers.get("authorization"))
        verdict = gate.check(principal, Action.INGEST, (project_header or "").strip() or None)
        if verdict.outcome is Outcome.UNAUTHENTICATED:
            return _status_response(401, verdict.message, media, 16, {"WWW-Authenticate": "Bearer"})
        if not verdict.allowed:
            return _status_response(403, verdict.message, media, 7)
    allowed_projects = principal.projects if principal is not None else None
    retry = {"Retry-After": str(settings.retry_after_seconds)}
    try:
        body = await _read_body(request, settings.max_request_bytes)
        outcome = await anyio.to_thread.run_sync(
            lambda: service.export(body, media, content_encoding=request.headers.get("content-encoding"),
                                   project_header=project_header, allowed_projects=allowed_projects))
    except PayloadTooLarge as exc:
        return _status_response(413, str(exc), media, 8)
    except UnsupportedContentType as exc:
        return _status_response(415, str(exc), media, 3)
    except DecodeError as exc:
        return _status_response(400, str(exc), media, 3)
    except ProjectNotAllowed as exc:
        return _status_response(403, str(exc), media, 7)
    except (QueueFull, StoreUnavailable, WorkerLost) as exc:
        return _status_response(503, f"{exc}; retry later", media, 14, retry)
    response = ExportTraceServiceResponse()
    if outcome.rejected:
        response.partial_success.rejected_spans = outcome.rejected
        response.partial_success.error_message = outcome.error_message
    if media == JSON:
        return Response(json.dumps(json_format.MessageToDict(response)), media_type=JSON)
    return Response(response.SerializeToString(), media_type=PROTOBUF)
