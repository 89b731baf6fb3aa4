"""Small fake LLM providers on 127.0.0.1 for end-to-end framework tests (no internet).

One threaded HTTP server speaks three wire formats:

- OpenAI chat completions (``POST /v1/chat/completions`` and ``/chat/completions``), streaming
  (server-sent events, with a final usage chunk when ``stream_options.include_usage``) included;
  MistralAI's chat endpoint is the same path and shape;
- AWS Bedrock ``InvokeModel`` (``POST /model/{modelId}/invoke``) for an Anthropic Claude
  messages body, and ``Converse`` (``POST /model/{modelId}/converse``).

Answers are deterministic (``reply(last_user_text)``, by default ``"You said: …"``) and every
response carries real token counts (whitespace-separated words plus a per-message overhead),
recorded in :attr:`FakeProvider.exchanges` so tests can compare them with what Threadline stored.

Tool loops (OpenAI chat completions only): a test passes ``tool_rule(question)``, which names the
tool a user message needs (a :class:`ToolRequest`) or ``None``. When a request offers that tool in
``tools`` and its last message is the user's, the fake answers with ``tool_calls`` (content null,
``finish_reason`` ``"tool_calls"``; streamed in pieces as OpenAI does when ``stream`` is set);
once the last message is a ``tool`` result it answers in words, ``tool_reply(question, results)``.
Without a ``tool_rule`` nothing changes.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

Reply = Callable[[str], str]


@dataclass(frozen=True)
class ToolRequest:
    """A tool call the fake model asks for: the tool's name and its arguments."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class RequestedCall:
    """A tool call the fake put in a response, as the client received it."""

    id: str
    name: str
    arguments: str  # JSON, as in the OpenAI wire format


ToolRule = Callable[[str], ToolRequest | None]
ToolReply = Callable[[str, list[str]], str]


def count_tokens(text: str) -> int:
    """The fake's tokenizer: whitespace-separated words."""
    return len(text.split())


def echo_reply(question: str) -> str:
    """The default deterministic answer."""
    return f"You said: {question}"


def tool_results_reply(question: str, results: list[str]) -> str:
    """The default answer once the tool results are in."""
    return f"About {question!r}: {'; '.join(results)}"


@dataclass(frozen=True)
class Exchange:
    """One request the fake answered."""

    api: str  # "openai" | "bedrock-invoke" | "bedrock-converse"
    model: str
    question: str
    answer: str
    prompt_tokens: int
    completion_tokens: int
    stream: bool
    #: Tool calls the fake asked for in this response (then ``answer`` is ``""``: content null).
    tool_calls: tuple[RequestedCall, ...] = ()
    #: Contents of the ``tool`` messages that end the request (the results this answer is about).
    tool_results: tuple[str, ...] = ()

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _text_of(content: Any) -> str:
    """Text of an OpenAI/Anthropic/Bedrock message content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return "" if content is None else str(content)


def _prompt_usage(messages: list[dict[str, Any]], system: str = "") -> int:
    return count_tokens(system) + sum(count_tokens(_text_of(m.get("content"))) + 3 for m in messages)


def _offered_tools(body: dict[str, Any]) -> set[str]:
    """Names of the functions a chat-completions request offers in ``tools``."""
    names: set[str] = set()
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name"):
            names.add(str(function["name"]))
    return names


def _trailing_tool_results(messages: list[dict[str, Any]]) -> list[str]:
    """Contents of the ``tool`` messages at the end of the list (empty when the last is not one)."""
    results: list[str] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.insert(0, _text_of(message.get("content")))
    return results


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


class FakeProvider:
    """A threaded fake LLM HTTP server; use as a context manager or call start()/stop()."""

    def __init__(
        self, reply: Reply = echo_reply, tool_rule: ToolRule | None = None,
        tool_reply: ToolReply = tool_results_reply,
    ) -> None:
        self.reply = reply
        self.tool_rule = tool_rule
        self.tool_reply = tool_reply
        self._call_ids = itertools.count(1)
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeProvider:
        handler = type("Handler", (_Handler,), {"provider": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no path)."""
        assert self._httpd is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for OpenAI-compatible clients (``…/v1``)."""
        return f"{self.base_url}/v1"

    # answers ---------------------------------------------------------------------------------
    def _record(self, api: str, model: str, question: str, prompt_tokens: int, stream: bool) -> Exchange:
        return self._add(Exchange(api, model, question, self.reply(question), prompt_tokens, 0, stream))

    def openai_chat(self, body: dict[str, Any]) -> tuple[Exchange, dict[str, Any]]:
        messages = list(body.get("messages") or [])
        model = str(body.get("model") or "fake-model")
        question = _last_user_text(messages)
        stream = bool(body.get("stream"))
        results = _trailing_tool_results(messages)
        ends_with_user = bool(messages) and messages[-1].get("role") == "user"
        wanted = self.tool_rule(question) if self.tool_rule is not None and ends_with_user else None
        if results:
            answer = self.tool_reply(question, results)
            ex = self._add(Exchange("openai", model, question, answer, _prompt_usage(messages), 0, stream,
                                    tool_results=tuple(results)))
        elif wanted is not None and wanted.name in _offered_tools(body):
            call = RequestedCall(f"call_{next(self._call_ids)}", wanted.name, json.dumps(wanted.arguments))
            ex = self._add(Exchange("openai", model, question, "", _prompt_usage(messages), 0, stream,
                                    tool_calls=(call,)))
        else:
            ex = self._record("openai", model, question, _prompt_usage(messages), stream)
        message: dict[str, Any] = {"role": "assistant", "content": ex.answer or None, "tool_calls": None}
        if ex.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}} for c in ex.tool_calls]
        return ex, {
            "id": f"chatcmpl-{len(self.exchanges)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if ex.tool_calls else "stop",
                         "logprobs": None}],
            "usage": {"prompt_tokens": ex.prompt_tokens, "completion_tokens": ex.completion_tokens,
                      "total_tokens": ex.total_tokens},
        }

    def _add(self, exchange: Exchange) -> Exchange:
        """Record an exchange, counting its completion tokens from what it answered."""
        completion = count_tokens(exchange.answer) + sum(
            count_tokens(f"{c.name} {c.arguments}") for c in exchange.tool_calls)
        exchange = replace(exchange, completion_tokens=completion)
        with self._lock:
            self.exchanges.append(exchange)
        return exchange

    def bedrock_invoke(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        messages = list(body.get("messages") or [])
        system = _text_of(body.get("system"))
        ex = self._record("bedrock-invoke", model, _last_user_text(messages), _prompt_usage(messages, system), False)
        return {
            "id": f"msg_{len(self.exchanges)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": ex.answer}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": ex.prompt_tokens, "output_tokens": ex.completion_tokens},
        }

    def bedrock_converse(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        messages = list(body.get("messages") or [])
        system = " ".join(_text_of([s]) for s in body.get("system") or [])
        ex = self._record("bedrock-converse", model, _last_user_text(messages), _prompt_usage(messages, system), False)
        return {
            "output": {"message": {"role": "assistant", "content": [{"text": ex.answer}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": ex.prompt_tokens, "outputTokens": ex.completion_tokens,
                      "totalTokens": ex.total_tokens},
            "metrics": {"latencyMs": 1},
        }


class _Handler(BaseHTTPRequestHandler):
    provider: FakeProvider
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _json_body(self) -> dict[str, Any]:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        parsed = json.loads(raw or b"{}")
        return parsed if isinstance(parsed, dict) else {}

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        if content_type == "application/json":
            self.send_header("x-amzn-requestid", "fake-request")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._json_body()
        if path.endswith("/chat/completions"):
            exchange, response = self.provider.openai_chat(body)
            if body.get("stream"):
                self._stream_openai(exchange, response, bool((body.get("stream_options") or {}).get("include_usage")))
            else:
                self._send(200, response)
        elif path.startswith("/model/") and path.endswith("/invoke"):
            self._send(200, self.provider.bedrock_invoke(unquote(path[len("/model/"):-len("/invoke")]), body))
        elif path.startswith("/model/") and path.endswith("/converse"):
            self._send(200, self.provider.bedrock_converse(unquote(path[len("/model/"):-len("/converse")]), body))
        else:
            self._send(404, {"error": {"message": f"no route {path}"}})

    def _stream_openai(self, exchange: Exchange, response: dict[str, Any], include_usage: bool) -> None:
        base = {k: response[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

        chunks: list[dict[str, Any]]
        if exchange.tool_calls:  # the name first, then the arguments in two pieces, as OpenAI streams them
            chunks = [chunk({"role": "assistant", "content": None})]
            for i, call in enumerate(exchange.tool_calls):
                half = len(call.arguments) // 2
                chunks.append(chunk({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                                     "function": {"name": call.name, "arguments": ""}}]}))
                chunks += [chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]})
                           for part in (call.arguments[:half], call.arguments[half:])]
            chunks.append(chunk({}, "tool_calls"))
        else:
            chunks = [chunk({"role": "assistant", "content": ""})]
            chunks += [chunk({"content": (" " if i else "") + w}) for i, w in enumerate(exchange.answer.split(" "))]
            chunks.append(chunk({}, "stop"))
        if include_usage:
            chunks.append(base | {"choices": [], "usage": response["usage"]})
        payload = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
