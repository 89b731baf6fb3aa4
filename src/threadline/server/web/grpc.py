"""OTLP/gRPC transport: ``TraceService/Export`` on its own port, sharing the ingest service.

One ingest path for both transports: gRPC's own per-message decompression is off, so a message
reaches the handler as sent (at most ``THREADLINE_MAX_REQUEST_BYTES``) and a gzip body is inflated
in a decode process under the same cap as OTLP/HTTP (``THREADLINE_MAX_DECOMPRESSED_BYTES``), never
in the server process. Calls take the same admission ticket as HTTP requests; refusals carry the
``google.rpc.Code`` of :mod:`~threadline.server.ingest.outcomes`, and retryable ones a
``google.rpc.RetryInfo`` (the key OTLP exporters read) so exporters back off as asked.
"""

from __future__ import annotations

import time
from concurrent import futures
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from threadline import conventions as cv
from threadline.server.auth.gate import Gate, Outcome
from threadline.server.auth.roles import Action
from threadline.server.ingest import outcomes
from threadline.server.ingest.otlp import PROTOBUF
from threadline.server.ingest.outcomes import INGEST_ERRORS
from threadline.server.ingest.service import IngestService

_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_GZIP_MAGIC = b"\x1f\x8b"  # an ExportTraceServiceRequest starts with field 1 (0x0a), never with this
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _identity(data: bytes) -> bytes:
    return data


class _TraceService(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, service: IngestService, gate: Gate) -> None:
        self.ingest = service
        self.gate = gate
        delay = service.settings.retry_after_seconds
        self.retry_metadata = (
            ("google.rpc.retryinfo-bin", RetryInfo(retry_delay=Duration(seconds=delay)).SerializeToString()),
            ("grpc-retry-pushback-ms", str(delay * 1000)),
        )
        self.handler = grpc.unary_unary_rpc_method_handler(
            self._export, request_deserializer=_identity, response_serializer=_identity
        )

    def service(self, handler_call_details: Any) -> Any:
        return self.handler if handler_call_details.method == _METHOD else None

    def _export(self, body: bytes, context: Any) -> bytes:
        metadata = dict(context.invocation_metadata() or ())
        project_header = metadata.get(cv.PROJECT_HEADER)
        allowed_projects = None
        if self.gate.enabled:
            principal = self.gate.identify(metadata.get("authorization"))
            verdict = self.gate.check(principal, Action.INGEST, (project_header or "").strip() or None)
            if verdict.outcome is Outcome.UNAUTHENTICATED:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, verdict.message)
            if not verdict.allowed:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, verdict.message)
            allowed_projects = principal.projects if principal is not None else None
        encoding = "gzip" if body[:2] == _GZIP_MAGIC else None
        try:
            with self.ingest.admit(len(body)):
                outcome = self.ingest.export(body, PROTOBUF, content_encoding=encoding, project_header=project_header,
                                             allowed_projects=allowed_projects, admitted_at=time.monotonic())
        except INGEST_ERRORS as exc:
            answer = outcomes.answer_for(exc)
            if answer.retry:
                context.set_trailing_metadata(self.retry_metadata)
            context.abort(_CODES[answer.grpc_code], outcomes.message_for(exc, answer))
        response = ExportTraceServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_spans = outcome.rejected
            response.partial_success.error_message = outcome.error_message
        return response.SerializeToString()


def start_grpc_server(service: IngestService, gate: Gate, host: str, port: int, max_message_bytes: int,
                      tls: tuple[bytes, bytes] | None = None) -> grpc.Server:
    """Start an OTLP/gRPC server (gzip accepted) bound to ``host:port``.

    ``tls``: the PEM certificate chain and PEM private key to serve TLS with (plain text without).
    """
    # Twice the admitted requests get a thread, so the excess is answered UNAVAILABLE with retry
    # info by the handler; past that, gRPC itself refuses (RESOURCE_EXHAUSTED) before receiving.
    calls = 2 * service.settings.ingest_max_pending_requests
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=calls, thread_name_prefix="threadline-grpc"),
        options=[("grpc.max_receive_message_length", max_message_bytes), ("grpc.so_reuseport", 0),
                 ("grpc.per_message_decompression", 0)],
        maximum_concurrent_rpcs=calls,
    )
    server.add_generic_rpc_handlers((_TraceService(service, gate),))
    try:
        if tls is not None:
            certificate_chain, private_key = tls
            credentials = grpc.ssl_server_credentials([(private_key, certificate_chain)])
            bound = server.add_secure_port(f"{host}:{port}", credentials)
        else:
            bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise OSError(f"cannot bind OTLP/gRPC to {host}:{port}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot bind OTLP/gRPC to {host}:{port}")
    server.start()
    return server
