"""docs/getting-started.md works as written: ``make serve`` (without its first-run install, which needs
the network), the Python snippet, the curl commands and the command-line examples, against the server
that ``make serve`` started on free loopback ports."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "getting-started.md"
VENV_BIN = Path(sys.executable).parent
DOC_PORT = "127.0.0.1:6006"


def blocks(language: str) -> list[str]:
    """The fenced code blocks of one language in the guide."""
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def commands(prefix: str) -> list[str]:
    """Every line of the guide's bash blocks that starts with ``prefix``."""
    return [line.strip() for block in blocks("bash") for line in block.splitlines() if line.startswith(prefix)]


def test_the_guide_has_no_placeholders() -> None:
    code = "\n".join(blocks("bash") + blocks("python"))
    assert re.findall(r"<[A-Za-z][^>\n]*>", code) == []
    assert "git clone" not in code or re.search(r"git clone \S+://", code)


@dataclass
class Served:
    """The server ``make serve`` started, where it keeps its data, and what make printed first."""

    port: int
    home: Path
    workdir: Path
    banner: str
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def shell(self, line: str) -> subprocess.CompletedProcess[str]:
        """Run one line of the guide (on this server's port) with bash, in a directory holding ``.venv``."""
        return subprocess.run(["bash", "-o", "pipefail", "-c", line.replace(DOC_PORT, f"127.0.0.1:{self.port}")],
                              cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``make serve`` as the guide says, with the ports and home moved to a temporary place."""
    if shutil.which("make") is None:
        pytest.fail("make is not installed")
    tmp = tmp_path_factory.mktemp("getting-started")
    home, workdir = tmp / "home", tmp / "work"
    workdir.mkdir()
    (workdir / ".venv").symlink_to(VENV_BIN.parent)  # the guide's relative .venv/bin/… paths
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    env.update(THREADLINE_HOME=str(home), THREADLINE_PORT=str(port), THREADLINE_GRPC_PORT=str(free_port()),
               THREADLINE_OTLP_HTTP_PORT=str(free_port()), THREADLINE_DECODE_WORKERS="1")
    log_path = tmp / "make-serve.log"
    with log_path.open("wb") as log:
        # -o: the venv is there already; its (re)install would need the network.
        proc = subprocess.Popen(["make", "--no-print-directory", "-o", ".venv/.server-stamp", "serve"], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"make serve exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"make serve did not become healthy:\n{log_path.read_text()}")
            time.sleep(0.1)  # polling the health endpoint, not waiting for a guessed moment
        yield Served(port, home, workdir, log_path.read_text(), {**env, "THREADLINE_ENDPOINT":
                                                                   f"http://127.0.0.1:{port}/v1/traces"})
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def test_make_serve_says_where_and_what_next(served: Served) -> None:
    lines = served.banner.splitlines()
    assert f"Threadline:   http://127.0.0.1:{served.port}/ (send OTLP to .../v1/traces)" in lines
    assert f"Data:         {served.home}/threadline.db (SQLite)" in lines
    demo = next(line for line in lines if line.startswith("Demo data:"))
    assert f"THREADLINE_PORT={served.port} make demo" in demo
    command = next(line for line in lines if line.startswith("The command:")).split()[2]
    assert Path(command) == ROOT / ".venv" / "bin" / "threadline"
    result = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "serve" in result.stdout
    # Printed before the server starts (make echoes the command that starts it).
    assert lines.index(demo) < lines.index(".venv/bin/threadline serve")


@dataclass
class FirstSession:
    """The guide's Python snippet, run as the guide says, and the questions it asks."""

    questions: list[str]


@pytest.fixture(scope="module")
def first_session(served: Served) -> FirstSession:
    (python,) = blocks("python")
    found = re.search(r"for question in (\[.*?\]):", python)
    assert found is not None, "the snippet's questions moved: update this test"
    (served.workdir / "first_steps.py").write_text(python)
    sent = served.shell(".venv/bin/python first_steps.py")
    assert sent.returncode == 0, sent.stderr
    return FirstSession(list(ast.literal_eval(found.group(1))))


def test_the_first_session_arrives(served: Served, first_session: FirstSession) -> None:
    """What the curl commands ask, with httpx (runs without curl and jq)."""
    questions = first_session.questions
    with httpx.Client(base_url=served.base_url, timeout=30) as client:
        sessions = client.get("/v1/projects/first-steps/sessions").json()["data"]
        detail = client.get("/v1/projects/first-steps/sessions/conversation-1").json()
    assert [(s["session_id"], s["turns"], s["first_input"]) for s in sessions] == [
        ("conversation-1", len(questions), questions[0])]
    assert sessions[0]["last_output"] == f"(bot) you said: {questions[-1]}"
    assert [t["input"] for t in detail["turns"]] == questions
    assert [t["output"] for t in detail["turns"]] == [f"(bot) you said: {q}" for q in questions]


def json_stream(text: str) -> list[object]:
    """The JSON values jq printed one after the other."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        while text[at].isspace():
            at += 1
        value, at = decoder.raw_decode(text, at)
        values.append(value)
    return values


def test_the_curl_commands_run_as_written(served: Served, first_session: FirstSession) -> None:
    lines = commands("curl ")
    assert len(lines) == 2
    if shutil.which("curl") is None or shutil.which("jq") is None:
        pytest.skip("curl or jq is not installed (test_the_first_session_arrives asks the same with httpx)")
    summary = served.shell(lines[0])
    assert summary.returncode == 0, summary.stderr
    assert json_stream(summary.stdout) == [{
        "session_id": "conversation-1", "turns": len(first_session.questions),
        "first_input": first_session.questions[0], "last_output": f"(bot) you said: {first_session.questions[-1]}"}]
    turns = served.shell(lines[1])
    assert turns.returncode == 0, turns.stderr
    values = json_stream(turns.stdout)
    assert all(isinstance(v, dict) and set(v) == {"index", "input", "output"} for v in values)
    assert [v["input"] for v in values if isinstance(v, dict)] == first_session.questions


def test_the_command_line_examples_run_as_written(served: Served, first_session: FirstSession) -> None:
    results = {}
    for line in commands(".venv/bin/threadline"):
        result = served.shell(line)
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        results[line.split()[1]] = result
    assert results["doctor"].stdout.splitlines()[-1] == "ok"
    assert "(the newest)" in results["doctor"].stdout
    exported = [json.loads(line) for line in (served.workdir / "first-steps.jsonl").read_text().splitlines()]
    assert [(e["session_id"], len(e["turns"])) for e in exported] == [("conversation-1", len(first_session.questions))]
    assert "ada" in results["metrics"].stdout
