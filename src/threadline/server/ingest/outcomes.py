"""The one table from an ingest outcome to its answer on every transport.

OTLP/HTTP answers with an HTTP status and a ``google.rpc.Status`` body; OTLP/gRPC with a status
code (the same ``google.rpc.Code`` number). What an exporter does next depends on it: 4xx and
``INVALID_ARGUMENT`` are dropped, 503 / ``UNAVAILABLE`` retried after ``Retry-After`` / the retry
info. So data errors must never look transient (they would be resent forever) and overload must
never look like bad data (it would be lost).
"""

from __future__ import annotations

from dataclasses import dataclass

from threadline.server.ingest.admission import Overloaded
from threadline.server.ingest.decoders import WorkerFailed, WorkerLost
from threadline.server.ingest.handoff import WriterUnreachable
from threadline.server.ingest.otlp import DecodeError, PayloadTooLarge, ProjectNotAllowed, UnsupportedContentType
from threadline.server.ingest.writer import QueueFull, RejectedBatch, StoreUnavailable, WriterFailed


@dataclass(frozen=True, slots=True)
class Answer:
    """How one outcome is answered: HTTP status, ``google.rpc.Code`` number, whether to retry."""

    name: str
    http_status: int
    grpc_code: int
    retry: bool = False


BAD_DATA = Answer("bad_data", 400, 3)  # INVALID_ARGUMENT
UNSUPPORTED_MEDIA = Answer("unsupported_media", 415, 3)
TOO_LARGE = Answer("too_large", 413, 8)  # RESOURCE_EXHAUSTED without retry info: not retried
UNAUTHENTICATED = Answer("unauthenticated", 401, 16)
FORBIDDEN = Answer("forbidden", 403, 7)  # PERMISSION_DENIED
OVERLOADED = Answer("overloaded", 503, 14, retry=True)  # UNAVAILABLE
UNAVAILABLE = Answer("unavailable", 503, 14, retry=True)
FAILED = Answer("failed", 500, 13)  # INTERNAL: a bug of ours, not the client's data

#: Every error ingest can raise, in the order they are matched.
ERROR_ANSWERS: tuple[tuple[type[BaseException], Answer], ...] = (
    (DecodeError, BAD_DATA),
    (RejectedBatch, BAD_DATA),
    (UnsupportedContentType, UNSUPPORTED_MEDIA),
    (PayloadTooLarge, TOO_LARGE),
    (ProjectNotAllowed, FORBIDDEN),
    (Overloaded, OVERLOADED),
    (QueueFull, OVERLOADED),
    (StoreUnavailable, UNAVAILABLE),
    (WorkerLost, UNAVAILABLE),
    (WriterUnreachable, UNAVAILABLE),
    (WorkerFailed, FAILED),
    (WriterFailed, FAILED),
)

INGEST_ERRORS: tuple[type[BaseException], ...] = tuple(kind for kind, _ in ERROR_ANSWERS)
"""The exception classes a transport catches around an export (``except INGEST_ERRORS``)."""


def answer_for(error: BaseException) -> Answer:
    """The answer to give for ``error`` (one of :data:`INGEST_ERRORS`)."""
    for kind, answer in ERROR_ANSWERS:
        if isinstance(error, kind):
            return answer
    raise TypeError(f"not an ingest error: {error!r}")


def message_for(error: BaseException, answer: Answer) -> str:
    """The client-facing message: the error's own words, plus what to do for a retryable one."""
    text = str(error) or error.__class__.__name__
    return f"{text}; retry later" if answer.retry else text
