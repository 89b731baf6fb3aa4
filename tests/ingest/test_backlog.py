"""The write backlog admission measures: the writer's rate while busy, not since its first commit.

A real writer process on a migrated SQLite database, real jobs handed over through its socket.
"""

from __future__ import annotations

import time
from pathlib import Path

from test_handoff import records

from threadline.server.ingest.handoff import JobSender
from threadline.server.ingest.writer import SpanWriter
from threadline.server.ingest.writer_process import WriterConfig
from threadline.server.store.engine import open_store
from threadline.server.store.migrate import upgrade
from threadline.server.store.records import pack_records


def test_a_burst_after_a_quiet_start_is_measured_against_the_writers_speed(tmp_path: Path) -> None:
    """One small job committed, then a burst of ten times as many spans handed over: the backlog
    is about ten times what the small job took, not ten seconds (its rate taken over at least a
    second since the first commit answered new servers' first bursts with 503s)."""
    url = f"sqlite:///{tmp_path / 'backlog.db'}"
    store = open_store(url)
    upgrade(store)
    store.dispose()
    writer = SpanWriter(WriterConfig(database_url=url, sqlite_synchronous="FULL", commit_max_spans=5000,
                                     commit_linger_seconds=0.0, log_level="warning"), queue_max_spans=100_000)
    writer.start()
    sender = JobSender(writer.address)
    try:
        job_id, committed = writer.expect()
        started = time.monotonic()
        sender.send(job_id, pack_records(records(100, "hello")))
        writer.handed_over(job_id, 100)
        committed.result(timeout=60)
        took = time.monotonic() - started  # at least the writer's busy time for 100 spans
        assert writer.backlog_seconds() == 0.0  # nothing queued
        burst, _ = writer.expect()
        writer.handed_over(burst, 1000)  # handed over, not sent: it stays queued while we look
        waited = time.monotonic()
        backlog = writer.backlog_seconds()
        assert backlog <= 10 * took + (time.monotonic() - waited) + 0.01, (backlog, took)
        assert backlog > 0
        writer.forget(burst)
        assert writer.backlog_seconds() == 0.0
    finally:
        sender.close()
        writer.stop()
