"""Run a real ``threadline serve`` subprocess on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``threadline serve`` and where to reach it."""

    db_url: str
    home: Path
    port: int
    grpc_port: int
    otlp_http_port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def otlp_http_url(self) -> str:
        return f"http://127.0.0.1:{self.otlp_http_port}/v1/traces"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        env = {**os.environ, "THREADLINE_HOME": str(self.home), "THREADLINE_DECODE_WORKERS": "1", **self.extra_env}
        self.log_path = self.home / f"server-{self.port}.log"
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "threadline", "serve", "--db", self.db_url, "--port", str(self.port),
             "--grpc-port", str(self.grpc_port), "--otlp-http-port", str(self.otlp_http_port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"threadline serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"threadline serve did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the server (no chance to flush anything)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it does not exit."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago (all held open while picking)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def new_server(db_url: str, home: Path, **extra_env: str) -> ServerProcess:
    """A not-yet-started server on fresh ports."""
    port, grpc_port, otlp_http_port = free_ports(3)
    return ServerProcess(db_url=db_url, home=home, port=port, grpc_port=grpc_port,
                         otlp_http_port=otlp_http_port, extra_env=extra_env)
