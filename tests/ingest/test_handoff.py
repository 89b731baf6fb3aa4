"""The hand-off socket between decode processes and the writer: jobs arrive whole, strangers don't."""

from __future__ import annotations

import select
import socket
import threading
import time
from pathlib import Path

import pytest

from threadline.server.ingest.frames import FrameReader
from threadline.server.ingest.handoff import JobListener, JobSender, WriterAddress, WriterUnreachable, read_job
from threadline.server.store.payload import encode_span
from threadline.server.store.records import SpanRecord, pack_records

EMPTY = encode_span(None, None, None, "[]", {})  # a span payload with no text


def records(n: int, text: str) -> list[SpanRecord]:
    return [SpanRecord(project="p", session_id="s", user_id=None, is_llm=False, error=None, trace_id=f"{i:032x}",
                       span_id=f"{i + 1:016x}", parent_span_id=None, name="n", kind="CHAIN", start_ns=i, end_ns=i + 1,
                       status="OK", status_message=None, input=text, output=None, model=None, prompt_tokens=0,
                       completion_tokens=0, total_tokens=0, cost=0.0, payload=EMPTY,
                       turn_key=None)
            for i in range(n)]


def accept_one(listener: JobListener) -> socket.socket | None:
    """Accept the next connection and read its key as the writer's event loop does: the client once
    it has presented the right key, ``None`` once it was dropped."""
    listener.sock.settimeout(10)
    before = set(listener.greeting)
    listener.accept()
    (client,) = set(listener.greeting) - before
    while client in listener.greeting:
        readable, _, _ = select.select([client], [], [], 10)
        assert readable, "the client sent nothing within 10 s"
        ready = listener.greet(client)
        if ready is not None:
            return ready
    return None


def test_jobs_arrive_whole_and_in_order(tmp_path: Path) -> None:
    address = WriterAddress.new(str(tmp_path))
    listener = JobListener(address)
    sender = JobSender(address)
    big = "é" * 700_000  # frames larger than the socket buffers, non-ASCII text
    jobs = [(7, records(3, "small")), (8, records(2, big)), (9, records(1, ""))]
    thread = threading.Thread(target=lambda: [sender.send(j, pack_records(r)) for j, r in jobs])
    thread.start()
    client = accept_one(listener)
    assert client is not None
    reader = FrameReader(client)
    received = [read_job(reader) for _ in jobs]
    thread.join()
    assert [(job.job_id, job.records) for job in received if job] == jobs
    sender.close()
    assert read_job(reader) is None  # the sender has gone
    listener.close()
    assert not Path(address.path).exists()


def test_a_client_without_the_key_is_refused(tmp_path: Path) -> None:
    address = WriterAddress.new(str(tmp_path))
    listener = JobListener(address)
    assert Path(address.path).stat().st_mode & 0o077 == 0  # only this user may connect at all
    stranger = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stranger.connect(address.path)
    stranger.sendall(b"x" * 32)
    assert accept_one(listener) is None
    stranger.settimeout(5)
    assert stranger.recv(1) == b""  # closed on it, before anything it sent was read as a job
    listener.close()


def test_a_sender_waits_for_a_writer_that_is_starting(tmp_path: Path) -> None:
    address = WriterAddress.new(str(tmp_path))
    started: list[JobListener] = []

    def start_later() -> None:
        time.sleep(0.5)
        started.append(JobListener(address))

    threading.Thread(target=start_later).start()
    sender = JobSender(address, connect_timeout=20)
    received: list[object] = []

    def serve() -> None:
        while not started:
            time.sleep(0.01)
        client = accept_one(started[0])
        assert client is not None
        received.append(read_job(FrameReader(client)))

    thread = threading.Thread(target=serve)
    thread.start()
    sender.send(1, pack_records(records(1, "late")))
    thread.join()
    assert received and received[0] is not None
    started[0].close()


def test_a_sender_gives_up_when_no_writer_comes(tmp_path: Path) -> None:
    sender = JobSender(WriterAddress.new(str(tmp_path)), connect_timeout=0.3)
    with pytest.raises(WriterUnreachable, match="not reachable"):
        sender.send(1, pack_records(records(1, "x")))


def test_a_silent_client_holds_up_nobody(tmp_path: Path) -> None:
    """A connection that never presents its key waits aside; the next client is served meanwhile."""
    address = WriterAddress.new(str(tmp_path))
    listener = JobListener(address)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(address.path)
    listener.sock.settimeout(10)
    listener.accept()  # returns at once, without reading anything from it
    assert len(listener.greeting) == 1
    sender = JobSender(address)
    thread = threading.Thread(target=lambda: sender.send(3, pack_records(records(1, "meanwhile"))))
    thread.start()
    client = accept_one(listener)
    assert client is not None
    job = read_job(FrameReader(client))
    thread.join()
    assert job is not None and job.job_id == 3
    assert len(listener.greeting) == 1  # the silent one is still waiting, harmlessly
    sender.close()
    silent.close()
    listener.close()
    assert not listener.greeting
