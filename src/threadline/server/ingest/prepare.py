"""From request bytes to records in the writer's hands: decompress, decode, normalize, pack, hand over.

This is the CPU-heavy half of ingest; it runs in decode processes (:mod:`.decoders`), or in the
calling thread when none are configured (:class:`InlinePreparer`). The packed records go
straight to the writer process (:mod:`.handoff`); the caller gets a :class:`Prepared` summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from threadline.server.ingest.handoff import JobSender, WriterAddress
from threadline.server.ingest.normalize import normalize
from threadline.server.ingest.otlp import (
    Body,
    DecodedRequest,
    Limits,
    ProjectNotAllowed,
    decode_spans,
    decompress,
)
from threadline.server.store.records import RecordPacker, SpanRecord


@dataclass(frozen=True, slots=True)
class Prepared:
    """What became of one request: spans handed to the writer, and what was rejected (OTLP
    partial success)."""

    spans: int
    rejected: int
    error_message: str


def prepare(
    body: Body, media: str, content_encoding: str | None, project_header: str | None, limits: Limits,
    max_text_chars: int, allowed_projects: frozenset[str] | None = None,
) -> tuple[list[SpanRecord], int, str]:
    """Decompress, decode and normalize one export request: (records, rejected, error message).

    ``allowed_projects``: the projects the sender's API key may write to (``None``: any); a span
    of another project refuses the whole request. Raises the ``otlp`` errors.
    """
    outcome = DecodedRequest(spans=[])
    records = list(_records(body, media, content_encoding, project_header, limits, max_text_chars, allowed_projects,
                            outcome))
    return records, outcome.rejected, outcome.error_message()


def _records(
    body: Body, media: str, content_encoding: str | None, project_header: str | None, limits: Limits,
    max_text_chars: int, allowed_projects: frozenset[str] | None, outcome: DecodedRequest,
) -> Iterator[SpanRecord]:
    """The records of one request, each made as its span is decoded; rejected spans are counted
    in ``outcome``."""
    raw = decompress(body, content_encoding, limits.max_decompressed_bytes)
    # Each span is normalized as soon as it is decoded, so its decoded attributes are garbage before
    # the next one is: the process holds one request's stored form, not its decoded form as well.
    for span in decode_spans(raw, media, outcome, project_header=project_header, limits=limits):
        if allowed_projects is not None and span.project not in allowed_projects:
            raise ProjectNotAllowed(f"this API key may not send spans to project {span.project!r}; "
                                    "nothing was stored")
        yield normalize(span, max_text_chars=max_text_chars)


def prepare_and_hand_over(
    sender: JobSender, job_id: int, body: Body, media: str, content_encoding: str | None,
    project_header: str | None, limits: Limits, max_text_chars: int, allowed_projects: frozenset[str] | None = None,
) -> Prepared:
    """:func:`prepare` one request and hand its records to the writer as job ``job_id``.

    Each record is packed as soon as it is made (:class:`RecordPacker`): the request's records
    are never held as objects all at once.
    """
    outcome = DecodedRequest(spans=[])
    packer = RecordPacker()
    for record in _records(body, media, content_encoding, project_header, limits, max_text_chars, allowed_projects,
                           outcome):
        packer.add(record)
    if packer.count:
        sender.send(job_id, packer.packed())
    return Prepared(packer.count, outcome.rejected, outcome.error_message())


class Preparer(Protocol):
    """Prepares requests and hands them over: decode processes, or the calling thread."""

    def start(self) -> None:
        """Be ready for requests."""

    def run(self, job_id: int, body: Body, media: str, content_encoding: str | None,
            project_header: str | None, allowed_projects: frozenset[str] | None = None,
            wait: float | None = None, body_taken: Callable[[], None] | None = None) -> Prepared:
        """Prepare one request and hand it over as job ``job_id`` (blocking; ``wait``: longest wait
        for a free decode process; ``body_taken``: called once ``body`` is no longer needed here,
        before the request is prepared when a decode process does it)."""

    def close(self) -> None:
        """Stop after the requests under way."""


class InlinePreparer:
    """Prepares in the calling thread (``THREADLINE_DECODE_WORKERS=0``)."""

    def __init__(self, address: WriterAddress, limits: Limits, max_text_chars: int) -> None:
        self.limits = limits
        self.max_text_chars = max_text_chars
        self._sender = JobSender(address)  # shared by the request threads (it is thread-safe)

    def start(self) -> None:
        """Nothing to start."""

    def run(self, job_id: int, body: Body, media: str, content_encoding: str | None,
            project_header: str | None, allowed_projects: frozenset[str] | None = None,
            wait: float | None = None, body_taken: Callable[[], None] | None = None) -> Prepared:
        """Prepare one request and hand it over as job ``job_id`` (in this thread: nothing to wait for)."""
        try:
            return prepare_and_hand_over(self._sender, job_id, body, media, content_encoding, project_header,
                                         self.limits, self.max_text_chars, allowed_projects)
        finally:
            if body_taken is not None:
                body_taken()

    def close(self) -> None:
        """Close the connection to the writer."""
        self._sender.close()
