"""The ingest processes of a real server (writer and decode processes) fail and recover cleanly.

A writer process that dies costs the requests it was holding a 503, is replaced, and loses no
acknowledged span; when the server process itself is killed, its ingest processes exit instead
of lingering on the database.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from support.otlp import PROTOBUF, SpanMaker, TurnSpec, encode_request, hex_span_id, hex_trace_id
from support.server import ServerProcess

from .rest import Api


def ingest_processes(server: ServerProcess) -> tuple[int, list[int]]:
    """(writer pid, decode pids): the server's spawned children; the writer is the one holding
    the hand-off socket (``writer.sock``)."""
    assert server.proc is not None
    pid = server.proc.pid
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    spawned = [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    named = {line.split()[6] for line in Path("/proc/net/unix").read_text().splitlines()[1:]
             if line.rstrip().endswith("writer.sock")}
    writers = []
    for child in spawned:
        inodes = set()
        for fd in Path(f"/proc/{child}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:  # closed (or the process exited) while we looked
                continue
            match = re.fullmatch(r"socket:\[(\d+)\]", target)
            if match:
                inodes.add(match.group(1))
        if inodes & named:
            writers.append(child)
    assert len(writers) == 1, (spawned, writers)
    return writers[0], [c for c in spawned if c != writers[0]]


def turn(project: str, n: int) -> tuple[bytes, set[tuple[str, str]]]:
    spans = SpanMaker(project).turn(TurnSpec(question=f"question {n}", answer=f"answer {n}",
                                             session_id=f"{project}-s{n % 3}", user_id="u"))
    return encode_request(spans).SerializeToString(), {(hex_trace_id(s), hex_span_id(s)) for s in spans}


def post(server: ServerProcess, body: bytes) -> int:
    response = httpx.post(server.base_url + "/v1/traces", content=body, headers={"content-type": PROTOBUF},
                          timeout=60)
    assert response.status_code in (200, 503), response.text
    if response.status_code == 503:
        assert int(response.headers["retry-after"]) >= 1
    return response.status_code


def test_a_dead_writer_is_replaced_and_loses_nothing_acknowledged(
    db_url: str, server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(db_url)
    acknowledged: set[tuple[str, str]] = set()
    for n in range(3):
        body, ids = turn("writer-death", n)
        assert post(server, body) == 200
        acknowledged |= ids
    writer, _ = ingest_processes(server)
    os.kill(writer, signal.SIGKILL)
    statuses = []
    deadline = time.monotonic() + 90
    n = 3
    while time.monotonic() < deadline and statuses.count(200) < 3:
        body, ids = turn("writer-death", n)
        status = post(server, body)
        statuses.append(status)
        if status == 200:
            acknowledged |= ids
        n += 1
    assert statuses.count(200) >= 3, statuses
    new_writer, _ = ingest_processes(server)
    assert new_writer != writer
    assert Api(server.base_url).span_ids("writer-death") >= acknowledged
    assert "Traceback" not in server.log()


def test_ingest_processes_exit_when_the_server_process_is_killed(
    db_url: str, server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(db_url)
    body, _ = turn("orphans", 0)
    assert post(server, body) == 200
    writer, decoders = ingest_processes(server)
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)  # the server process alone, not its group
    server.proc.wait(10)
    deadline = time.monotonic() + 30
    alive = [writer, *decoders]
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.1)
    assert not alive, f"ingest processes {alive} outlived the server process (writer {writer}, decoders {decoders})"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_default_number_of_decode_processes_follows_the_cpus(
        db_url: str, server_factory: Callable[..., ServerProcess]) -> None:
    """``THREADLINE_DECODE_WORKERS=-1`` (the default): one decode process per CPU beyond the first
    (at least one), but two on two CPUs with SQLite (decoding is the longest stage; one alone left
    the other CPU idle part of the time); and a request goes through them."""
    server = server_factory(db_url, THREADLINE_DECODE_WORKERS="-1")
    _, decoders = ingest_processes(server)
    cpus = os.cpu_count() or 1
    assert len(decoders) == (2 if cpus == 2 and db_url.startswith("sqlite") else max(1, cpus - 1))
    maker = SpanMaker("cpus")
    spans = maker.turn(TurnSpec(question="q", answer="a", session_id="s", user_id="u"))
    maker.shutdown()
    response = httpx.post(server.otlp_http_url, content=encode_request(spans).SerializeToString(),
                          headers={"content-type": PROTOBUF}, timeout=30)
    assert response.status_code == 200, response.text
    assert Api(server.base_url).span_ids("cpus") == {(hex_trace_id(s), hex_span_id(s)) for s in spans}
