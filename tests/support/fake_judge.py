"""A small local OpenAI-compatible chat-completions server acting as a deterministic LLM judge.

Verdicts are keyed on the prompt: the text of ``<turn_to_judge>`` (else of ``<conversation>``) is
"frustrated" when it contains one of :data:`FRUSTRATED_WORDS`; for other rails the second (bad)
label is chosen when it contains ``BAD ANSWER``. Failures can be injected (HTTP 500/429, garbage
answers, delays) to test retries; every request is recorded.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FRUSTRATED_WORDS = ("useless", "ridiculous", "!!!", "frustrating", "not what i asked")


def verdict(prompt: str) -> tuple[str, str]:
    """The label and explanation the fake judge gives for a prompt."""
    rails_line = re.search(r"Allowed labels: (.+?)\.\n", prompt)
    rails = [r.strip() for r in rails_line.group(1).split(",")] if rails_line else ["ok"]
    section = re.search(r"<turn_to_judge>\n(.*?)\n</turn_to_judge>", prompt, re.DOTALL) or re.search(
        r"<conversation>\n(.*?)\n</conversation>", prompt, re.DOTALL)
    text = (section.group(1) if section else prompt).lower()
    if "frustrated" in rails:
        hit = next((w for w in FRUSTRATED_WORDS if w in text), None)
        return ("frustrated", f"the user wrote {hit!r}") if hit else ("ok", "calm user")
    if "bad answer" in text and len(rails) > 1:
        return rails[1], "contains BAD ANSWER"
    return rails[0], "looks fine"


@dataclass
class FakeJudge:
    """Start with :meth:`start`; point ``THREADLINE_JUDGE_BASE_URL`` at :attr:`base_url`."""

    fail_next: int = 0
    fail_status: int = 500
    fail_always: bool = False
    garbage_next: int = 0
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def prompts(self) -> list[str]:
        with self._lock:
            return [r["messages"][-1]["content"] for r in self.requests]

    def start(self) -> FakeJudge:
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                with judge._lock:
                    judge.requests.append({**body, "authorization": self.headers.get("authorization")})
                    failing = judge.fail_always or judge.fail_next > 0
                    if judge.fail_next > 0:
                        judge.fail_next -= 1
                    garbage = not failing and judge.garbage_next > 0
                    if garbage:
                        judge.garbage_next -= 1
                with judge._lock:
                    judge.in_flight += 1
                    judge.max_in_flight = max(judge.max_in_flight, judge.in_flight)
                try:
                    if judge.delay:
                        time.sleep(judge.delay)
                finally:
                    with judge._lock:
                        judge.in_flight -= 1
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                if failing:
                    return self._send(judge.fail_status, {"error": {"message": "injected failure"}})
                prompt = body["messages"][-1]["content"]
                label, explanation = verdict(prompt)
                content = "I am not sure, maybe." if garbage else json.dumps(
                    {"label": label, "explanation": explanation})
                self._send(200, {
                    "id": "fake", "object": "chat.completion", "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": 10,
                              "total_tokens": len(prompt) // 4 + 10},
                })

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
