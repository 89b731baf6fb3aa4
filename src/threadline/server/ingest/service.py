"""The ingest service: what every OTLP transport calls (HTTP on two ports, and gRPC).

``export`` blocks until the spans are committed, then reports how many were accepted and
rejected. Errors it raises map to status codes in the transports: ``otlp.DecodeError`` → 400,
``otlp.PayloadTooLarge`` → 413, ``otlp.UnsupportedContentType`` → 415, ``QueueFull`` /
``StoreUnavailable`` / ``decoders.WorkerLost`` → 503 + Retry-After (gRPC ``UNAVAILABLE``).

Three kinds of processes share the work: the server process (HTTP and gRPC), decode processes
(:mod:`~threadline.server.ingest.decoders`) and one writer process
(:mod:`~threadline.server.ingest.writer_process`).
"""

from __future__ import annotations

from dataclasses import dataclass

from threadline.server.ingest.decoders import DecodePool, DecodeSetup
from threadline.server.ingest.handoff import WriterUnreachable
from threadline.server.ingest.otlp import Body, Limits
from threadline.server.ingest.prepare import InlinePreparer, Preparer
from threadline.server.ingest.writer import SpanWriter, StoreUnavailable
from threadline.server.ingest.writer_process import WriterConfig
from threadline.server.settings import Settings


@dataclass(frozen=True, slots=True)
class ExportOutcome:
    """The result of one export request."""

    accepted: int
    rejected: int
    error_message: str


class IngestService:
    """Decode processes + the single writer process, behind one blocking call."""

    #: Longest wait for the writer's answer once a request is handed over (a database lock held
    #: by another process is waited for 30 s at most; then the writer answers with an error).
    ANSWER_TIMEOUT = 300.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limits = Limits(
            max_decompressed_bytes=settings.max_decompressed_bytes,
            max_attribute_chars=settings.max_attribute_chars,
            max_attributes_per_span=settings.max_attributes_per_span,
        )
        self.writer = SpanWriter(
            WriterConfig(
                database_url=settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous,
                commit_max_spans=settings.commit_max_spans, commit_linger_seconds=settings.commit_linger_ms / 1000,
                log_level=settings.log_level,
            ),
            queue_max_spans=settings.queue_max_spans,
        )
        workers = settings.effective_decode_workers()
        self.preparer: Preparer = DecodePool(workers, DecodeSetup(
            self.writer.address, self.limits, settings.max_text_chars, settings.log_level,
        )) if workers else InlinePreparer(self.writer.address, self.limits, settings.max_text_chars)

    def start(self) -> None:
        """Start the writer process and the decode processes (the store must be migrated already)."""
        self.writer.start()
        self.preparer.start()

    def stop(self) -> None:
        """Let the decode processes finish, commit what they handed over, stop the writer."""
        self.preparer.close()
        self.writer.stop()

    def export(
        self, body: Body, media: str, *, content_encoding: str | None = None, project_header: str | None = None,
        allowed_projects: frozenset[str] | None = None,
    ) -> ExportOutcome:
        """Decode, normalize and durably store one export request (blocking).

        ``allowed_projects``: the projects the sender may write to (``None``: any); a span of
        another project refuses the request (``otlp.ProjectNotAllowed``).
        """
        job_id, committed = self.writer.expect()
        try:
            with self.writer.incoming():
                prepared = self.preparer.run(job_id, body, media, content_encoding, project_header, allowed_projects)
        except WriterUnreachable as exc:
            self.writer.forget(job_id)
            raise StoreUnavailable(str(exc)) from exc
        except BaseException:
            self.writer.forget(job_id)
            raise
        if not prepared.spans:
            self.writer.forget(job_id)
        else:
            self.writer.handed_over(job_id, prepared.spans)
            try:
                committed.result(timeout=self.ANSWER_TIMEOUT)
            except TimeoutError as exc:  # never an endless wait, whatever happened to the job
                self.writer.forget(job_id)
                raise StoreUnavailable("the writer did not confirm this request in time") from exc
        return ExportOutcome(accepted=prepared.spans, rejected=prepared.rejected, error_message=prepared.error_message)
