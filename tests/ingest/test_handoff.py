"""The hand-off socket between decode processes and the writer: jobs arrive whole, strangers don't."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from multiprocessing import AuthenticationError, Pipe
from multiprocessing.connection import Connection, answer_challenge, wait
from pathlib import Path

import pytest

from threadline.server.ingest import messages
from threadline.server.ingest.handoff import JobListener, JobReader, JobSender, WriterAddress, WriterUnreachable
from threadline.server.ingest.writer_process import CommitLoop, WriterConfig
from threadline.server.store.engine import open_store
from threadline.server.store.payload import encode_span
from threadline.server.store.records import SpanRecord, pack_records

EMPTY = encode_span(None, None, None, "[]", {})  # a span payload with no text


def records(n: int, text: str) -> list[SpanRecord]:
    return [SpanRecord(project="p", session_id="s", user_id=None, is_llm=False, error=None, trace_id=f"{i:032x}",
                       span_id=f"{i + 1:016x}", parent_span_id=None, name="n", kind="CHAIN", start_ns=i, end_ns=i + 1,
                       status="OK", status_message=None, input=text, output=None, model=None, prompt_tokens=0,
                       completion_tokens=0, total_tokens=0, cost=0.0, payload=EMPTY,
                       turn_key=None, tags=("t",), metadata=(("k", "v"),))
            for i in range(n)]


def accept_one(listener: JobListener) -> Connection | None:
    """Accept the next connection as the writer's event loop does and wait for its greeter: the
    connection once it has authenticated, ``None`` once it was dropped."""
    assert wait([listener.sock], 10), "nobody connected within 10 s"
    before = listener.greeting
    listener.accept()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        wait([listener.arrivals], 0.05)
        greeted = listener.greeted()
        if greeted:
            (client,) = greeted
            return client
        if listener.greeting == before:  # done greeting it, and it was not handed over: dropped
            greeted = listener.greeted()
            return greeted[0] if greeted else None
    raise AssertionError("the greeting took more than 10 s")


def closed_on(sock: socket.socket, seconds: float = 5) -> bool:
    """Whether the writer closes ``sock`` within ``seconds`` (whatever it sent before)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_jobs_arrive_whole_and_in_order(tmp_path: Path) -> None:
    address = WriterAddress.new(str(tmp_path))
    listener = JobListener(address)
    assert Path(address.path).stat().st_mode & 0o777 == 0o600
    sender = JobSender(address)
    big = "é" * 1_100_000  # non-ASCII, and packed jobs of over 4 MB: larger than the socket buffers
    jobs = [(7, records(3, "small")), (8, records(2, big)), (9, records(1, "")), (10, records(3, big)),
            (11, records(1, "after"))]
    thread = threading.Thread(target=lambda: [sender.send(j, pack_records(r)) for j, r in jobs])
    thread.start()
    client = accept_one(listener)
    assert client is not None
    reader = JobReader(client)
    received = [reader.read() for _ in jobs]
    thread.join()
    assert [(job.job_id, job.records) for job in received if job] == jobs
    sender.close()
    assert reader.read() is None  # the sender has gone
    listener.close()
    assert not Path(address.path).exists()


def test_a_client_that_fails_the_challenge_is_refused(tmp_path: Path) -> None:
    address = WriterAddress.new(str(tmp_path))
    listener = JobListener(address)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address.path)
    impostor = Connection(sock.detach())
    outcome: list[BaseException] = []

    def answer_wrongly() -> None:
        try:
            answer_challenge(impostor, b"not the key")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=answer_wrongly)
    thread.start()
    assert accept_one(listener) is None
    thread.join()
    assert [type(exc) for exc in outcome] == [AuthenticationError]
    with pytest.raises((EOFError, OSError)):  # closed on it: what it sends next is never read as a job
        impostor.send_bytes(struct.pack("<q", 1))
        impostor.send_bytes(pack_records(records(1, "sneaky")))
        impostor.recv_bytes()
    impostor.close()
    assert listener.greeted() == []
    listener.close()


def test_a_raw_client_sending_garbage_is_refused(tmp_path: Path) -> None:
    address = WriterAddress.new(str(tmp_path))
    listener = JobListener(address)
    assert Path(address.path).stat().st_mode & 0o077 == 0  # only this user may connect at all
    stranger = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stranger.connect(address.path)
    stranger.sendall(b"x" * 32 + pack_records(records(1, "garbage")))
    assert accept_one(listener) is None
    assert closed_on(stranger)  # after the challenge, closed on it before anything it sent was read as a job
    stranger.close()
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
        received.append(JobReader(client).read())

    thread = threading.Thread(target=serve)
    thread.start()
    sender.send(1, pack_records(records(1, "late")))
    thread.join()
    assert received and received[0] is not None
    sender.close()
    started[0].close()


def test_a_sender_gives_up_when_no_writer_comes(tmp_path: Path) -> None:
    sender = JobSender(WriterAddress.new(str(tmp_path)), connect_timeout=0.3)
    with pytest.raises(WriterUnreachable, match="not reachable"):
        sender.send(1, pack_records(records(1, "x")))


def test_a_silent_client_holds_up_nobody(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection that never answers the challenge waits aside; the next client is served
    meanwhile, and the silent one is dropped after the greeting timeout."""
    monkeypatch.setattr(JobListener, "GREETING_SECONDS", 2.0)
    address = WriterAddress.new(str(tmp_path))
    listener = JobListener(address)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(address.path)
    assert wait([listener.sock], 10)
    since = time.monotonic()
    listener.accept()  # returns at once: the challenge runs in a thread of its own
    assert listener.greeting == 1
    sender = JobSender(address)
    thread = threading.Thread(target=lambda: sender.send(3, pack_records(records(1, "meanwhile"))))
    thread.start()
    client = accept_one(listener)
    assert client is not None
    job = JobReader(client).read()
    thread.join()
    assert job is not None and job.job_id == 3
    if time.monotonic() - since < JobListener.GREETING_SECONDS:
        assert listener.greeting == 1  # the silent one is still waiting, harmlessly
    assert closed_on(silent, JobListener.GREETING_SECONDS + 5)  # then dropped
    deadline = time.monotonic() + 5
    while listener.greeting and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listener.greeting == 0 and listener.greeted() == []
    sender.close()
    silent.close()
    listener.close()


def test_the_key_never_crosses_the_socket(tmp_path: Path) -> None:
    """A raw socket stands in for the writer and relays to the real one, keeping what crosses."""
    (tmp_path / "writer").mkdir()
    writer_address = WriterAddress.new(str(tmp_path / "writer"))
    listener = JobListener(writer_address)
    relay_address = WriterAddress(str(tmp_path / "relay.sock"), writer_address.key)
    relay = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    relay.bind(relay_address.path)
    relay.listen(1)
    crossed = {"to writer": bytearray(), "to client": bytearray()}

    def pump() -> None:
        client, _ = relay.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(writer_address.path)
        peers = {client: (upstream, crossed["to writer"]), upstream: (client, crossed["to client"])}
        while peers:
            readable, _, _ = select.select(list(peers), [], [], 10)
            assert readable
            for sock in readable:
                other, seen = peers[sock]
                data = sock.recv(1 << 20)
                if not data:
                    other.shutdown(socket.SHUT_WR)
                    del peers[sock]
                    continue
                seen += data
                other.sendall(data)
        client.close()
        upstream.close()

    relaying = threading.Thread(target=pump)
    relaying.start()
    sender = JobSender(relay_address)
    sending = threading.Thread(target=lambda: sender.send(5, pack_records(records(1, "watched"))))
    sending.start()
    client = accept_one(listener)
    assert client is not None
    reader = JobReader(client)
    job = reader.read()
    sending.join()
    assert job is not None and job.job_id == 5  # the whole exchange went through the relay
    sender.close()
    assert reader.read() is None
    client.close()
    relaying.join()
    assert b"watched" in crossed["to writer"]
    for seen in crossed.values():
        assert writer_address.key not in seen
        assert writer_address.key.hex().encode() not in seen
    relay.close()
    listener.close()


def test_a_buffer_grown_for_a_large_message_is_let_go_once_done_with() -> None:
    ours, theirs = Pipe(duplex=True)
    reader = messages.MessageReader(ours)
    small, large = b"s" * 1000, bytes(range(256)) * (messages.MessageReader.KEEP_BYTES // 256 + 4096)
    def send() -> None:
        for message in (small, large, small):
            theirs.send_bytes(message)

    sending = threading.Thread(target=send)
    sending.start()
    kept = reader.held
    assert reader.read() == small
    reader.done()
    assert reader.held == kept  # a small buffer is reused
    view = reader.read()
    assert reader.held >= len(large)
    reader.done()
    assert reader.held == kept  # the large one is not kept for the next message ...
    assert view == large  # ... and what still refers to it stays readable
    del view
    assert reader.read() == small
    sending.join()
    ours.close()
    theirs.close()


def test_the_writer_stops_a_group_at_its_byte_bound(tmp_path: Path) -> None:
    address = WriterAddress.new(str(tmp_path))
    listener = JobListener(address)
    store = open_store(f"sqlite:///{tmp_path / 'w.db'}", ingest_writer=True)
    control, _control_end = Pipe(duplex=False)
    _acks_end, acks = Pipe(duplex=False)
    config = WriterConfig(database_url="", sqlite_synchronous="FULL", commit_max_spans=1_000_000,
                          commit_linger_seconds=0.0, log_level="warning")
    loop = CommitLoop(config, store, listener, control, acks, None)
    sender = JobSender(address)
    jobs = [(i, records(40, "x" * 300)) for i in range(1, 6)]  # 5 × ~20 KB: within any socket buffer
    sizes = [len(pack_records(r)) for _, r in jobs]
    loop.COMMIT_MAX_BYTES = sizes[0] * 2 + 1  # three jobs reach it, two do not
    def send() -> None:
        for job_id, job_records in jobs:
            sender.send(job_id, pack_records(job_records))

    sending = threading.Thread(target=send)
    sending.start()
    client = accept_one(listener)
    assert client is not None
    loop.clients[client] = JobReader(client)
    sending.join()  # all five are in the socket's buffer: the writer could take them in one group
    try:
        assert [job.job_id for job in loop._gather()] == [1, 2, 3]
        assert [job.job_id for job in loop._gather()] == [4, 5]
    finally:
        loop._acknowledger.stop()
        sender.close()
        client.close()
        listener.close()
        store.dispose()
