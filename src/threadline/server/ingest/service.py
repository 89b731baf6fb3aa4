"""The ingest service: what every OTLP transport calls (HTTP on two ports, and gRPC).

``export`` blocks until the spans are committed, then reports how many were accepted and
rejected. Errors it raises map to status codes in the transports: ``otlp.DecodeError`` → 400,
``otlp.PayloadTooLarge`` → 413, ``otlp.UnsupportedContentType`` → 415, ``QueueFull`` /
``StoreUnavailable`` / ``prepare.WorkerLost`` → 503 + Retry-After (gRPC ``UNAVAILABLE``).
"""

from __future__ import annotations

from dataclasses import dataclass

from threadline.server.ingest.otlp import Limits
from threadline.server.ingest.prepare import Preparer
from threadline.server.ingest.writer import QueueFull, SpanWriter
from threadline.server.settings import Settings
from threadline.server.store.engine import Store


@dataclass(frozen=True, slots=True)
class ExportOutcome:
    """The result of one export request."""

    accepted: int
    rejected: int
    error_message: str


class IngestService:
    """Decode workers + the single writer, behind one blocking call."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.limits = Limits(
            max_decompressed_bytes=settings.max_decompressed_bytes,
            max_attribute_chars=settings.max_attribute_chars,
            max_attributes_per_span=settings.max_attributes_per_span,
        )
        self.preparer = Preparer(settings.effective_decode_workers(), self.limits, settings.max_text_chars)
        self.writer = SpanWriter(
            store, queue_max_spans=settings.queue_max_spans, commit_max_spans=settings.commit_max_spans,
            commit_linger_seconds=settings.commit_linger_ms / 1000,
        )

    def start(self) -> None:
        """Start the writer thread and the decode workers."""
        self.writer.start()
        self.preparer.warm_up()

    def stop(self) -> None:
        """Commit what is queued and stop the workers."""
        self.writer.stop()
        self.preparer.close()

    def export(
        self, body: bytes, media: str, *, content_encoding: str | None = None, project_header: str | None = None
    ) -> ExportOutcome:
        """Decode, normalize and durably store one export request (blocking)."""
        if self.writer.queued_spans >= self.settings.queue_max_spans:
            raise QueueFull("the write queue is full")
        with self.writer.incoming():
            prepared = self.preparer.run(body, media, content_encoding, project_header)
            future = self.writer.submit(prepared.records)
        future.result()
        return ExportOutcome(
            accepted=len(prepared.records), rejected=prepared.rejected, error_message=prepared.error_message
        )
