"""OTLP/gRPC transport: ``TraceService/Export`` on its own port, sharing the ingest service."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from threadline import conventions as cv
from threadline.server.auth.gate import Gate, Outcome
from threadline.server.auth.roles import Action
from threadline.server.ingest.decoders import WorkerLost
from threadline.server.ingest.otlp import (
    PROTOBUF,
    DecodeError,
    PayloadTooLarge,
    ProjectNotAllowed,
    UnsupportedContentType,
)
from threadline.server.ingest.service import IngestService
from threadline.server.ingest.writer import QueueFull, StoreUnavailable

_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _identity(data: bytes) -> bytes:
    return data


class _TraceService(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, service: IngestService, gate: Gate) -> None:
        self.ingest = service
        self.gate = gate
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
        try:
            outcome = self.ingest.export(
                body, PROTOBUF, content_encoding=None, project_header=project_header, allowed_projects=allowed_projects
            )
        except (DecodeError, UnsupportedContentType) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except PayloadTooLarge as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except ProjectNotAllowed as exc:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except (QueueFull, StoreUnavailable, WorkerLost) as exc:
            context.set_trailing_metadata((("grpc-retry-pushback-ms", "2000"),))
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; retry later")
        response = ExportTraceServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_spans = outcome.rejected
            response.partial_success.error_message = outcome.error_message
        return response.SerializeToString()


def start_grpc_server(service: IngestService, gate: Gate, host: str, port: int, max_message_bytes: int
                      ) -> grpc.Server:
    """Start an OTLP/gRPC server (gzip accepted) bound to ``host:port``."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="threadline-grpc"),
        options=[("grpc.max_receive_message_length", max_message_bytes), ("grpc.so_reuseport", 0)],
    )
    server.add_generic_rpc_handlers((_TraceService(service, gate),))
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise OSError(f"cannot bind OTLP/gRPC to {host}:{port}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot bind OTLP/gRPC to {host}:{port}")
    server.start()
    return server
