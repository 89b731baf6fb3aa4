"""The ingest service: what every OTLP transport calls (HTTP on two ports, and gRPC).

A transport first takes an admission :class:`~.admission.Ticket` with :meth:`IngestService.admit`
(refused at once when too much already waits: :class:`~.admission.Overloaded`), then calls
``export``, which blocks until the spans are committed and reports how many were accepted and
rejected. Every error it raises is one of :data:`.outcomes.INGEST_ERRORS`, answered on each
transport as :mod:`.outcomes` says.

Three kinds of processes share the work: the server process (HTTP and gRPC), decode processes
(:mod:`~threadline.server.ingest.decoders`) and one writer process
(:mod:`~threadline.server.ingest.writer_process`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from threadline.server.ingest.admission import Admission, Overloaded, Ticket
from threadline.server.ingest.decoders import DecodePool, DecodeSetup
from threadline.server.ingest.handoff import WriterUnreachable
from threadline.server.ingest.heap import HeapTrimmer
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
        self.admission = Admission(settings.ingest_max_pending_requests, settings.ingest_max_pending_bytes)
        self.max_wait = settings.ingest_max_wait_seconds
        self.trimmer = HeapTrimmer()  # the bodies this process held (see heap.py)
        # Longest wait for the commit once handed over: admission keeps the backlog under max_wait,
        # so this is reached only when the writer stalls. The answer is then 503 although the
        # spans may still be committed: resending them is safe (spans are stored once per id).
        self.commit_wait = 2 * settings.ingest_max_wait_seconds
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

    def admit(self, nbytes: int = 0) -> Ticket:
        """Admission for one request of ``nbytes`` (as sent; 0 if not known yet), before its body is
        read or decoded; :class:`Overloaded` when the write backlog would take longer than
        ``ingest_max_wait_seconds`` to commit, or the requests or bytes admitted are at their limits."""
        backlog = self.writer.backlog_seconds()
        if backlog > self.max_wait:
            self.admission.refused += 1
            raise Overloaded(f"the spans already queued need about {backlog:.0f} s to be written")
        return self.admission.admit(nbytes)

    def export(
        self, body: Body, media: str, *, content_encoding: str | None = None, project_header: str | None = None,
        allowed_projects: frozenset[str] | None = None, admitted_at: float | None = None,
        ticket: Ticket | None = None,
    ) -> ExportOutcome:
        """Decode, normalize and durably store one export request (blocking).

        ``allowed_projects``: the projects the sender may write to (``None``: any); a span of
        another project refuses the request (``otlp.ProjectNotAllowed``). ``admitted_at``
        (``time.monotonic()`` at admission): the wait for a decode process is bounded by what
        remains of ``ingest_max_wait_seconds`` since then. ``ticket``: the request's admission,
        when ``body`` is a ``bytearray`` this call may take over: it is emptied as soon as a decode
        process has it (the server process then holds only bodies waiting to be decoded), and its
        bytes are given back to admission once the decode process is done with it. The budget so
        bounds the bodies held by the server process and the decode processes together, not those
        waiting for their commit (the writer holds their packed records, bounded by its own queue).
        """
        waited = time.monotonic() - admitted_at if admitted_at is not None else 0.0
        self.trimmer.processed(len(body))  # trims what earlier requests left, before this one decodes

        def body_taken() -> None:
            if ticket is not None and isinstance(body, bytearray):
                # Frees it now, whoever still refers to it; unless still viewed (decoded in this
                # thread, an error on its way).
                with contextlib.suppress(BufferError):
                    body.clear()

        job_id, committed = self.writer.expect()
        try:
            with self.writer.incoming():
                prepared = self.preparer.run(job_id, body, media, content_encoding, project_header, allowed_projects,
                                             wait=max(0.05, self.max_wait - waited), body_taken=body_taken)
        except WriterUnreachable as exc:
            self.writer.forget(job_id)
            raise StoreUnavailable(str(exc)) from exc
        except BaseException:
            self.writer.forget(job_id)
            raise
        if ticket is not None:
            ticket.release_bytes()  # decoded: the body is gone from every process
        if not prepared.spans:
            self.writer.forget(job_id)
        else:
            self.writer.handed_over(job_id, prepared.spans)
            try:
                committed.result(timeout=self.commit_wait)
            except TimeoutError as exc:  # never an endless wait, whatever happened to the job
                self.writer.forget(job_id)
                raise StoreUnavailable(f"the spans were not committed within {self.commit_wait:.0f} s (they may "
                                       "still be; resending them is safe)") from exc
        return ExportOutcome(accepted=prepared.spans, rejected=prepared.rejected, error_message=prepared.error_message)
