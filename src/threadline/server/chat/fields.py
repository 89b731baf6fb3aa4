"""What ingest stores from one span's chat attributes: :func:`input_text`, :func:`output_text`,
:func:`turn_key` and :func:`span_detail`, one at a time or all at once (:func:`chat_fields`), one
:class:`_SpanChat` sharing the work (each message list scanned and each JSON value parsed at most
once).
"""

from __future__ import annotations

import hashlib
from functools import partial
from typing import Any, NamedTuple

import orjson

from threadline import conventions as cv
from threadline.server.chat.bodies import _json_results, _reply_of
from threadline.server.chat.messages import (
    _content_text,
    _last_plain_text,
    _last_text,
    _raw_messages,
    _role,
    _tail_messages,
)
from threadline.server.chat.tools import (
    MAX_DETAIL_ENTRIES,
    _Call,
    _called_words,
    _cut,
    _flattened_calls,
    _flattened_results,
    _id,
    _json_text,
    _name,
    _Result,
    _tool_message,
)
from threadline.server.chat.values import _INPUT_KEYS, _OUTPUT_KEYS, _messages_in, _parse_json, _value_text

# OpenInference keys that threadline.conventions does not name (yet).
_TOOL_CALL_ID = "tool_call.id"
_TOOL_ID = "tool.id"
_GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
_GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
_GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"

#: Prefix of a turn key derived from a message list (a plain-text turn is keyed by its trace id).
MESSAGE_KEY_PREFIX = "m:"
_UNSET: Any = object()
_ANY_ROLE = ("assistant", "user", "tool", "system", "")


def input_text(attrs: dict[str, Any]) -> str | None:
    """The text a person would call this span's input (the last user message for chat)."""
    return _SpanChat(attrs).input_text()


def output_text(attrs: dict[str, Any]) -> str | None:
    """The assistant's words for this span: the reply text of ``llm.output_messages`` or of the
    provider's response body in ``output.value``, or, for a reply that only calls tools, words
    such as ``called lookup_order(order_id=1234)``; never a raw provider body. Another output
    (an app's own text or JSON) is returned as it is."""
    return _SpanChat(attrs).output_text()


def turn_key(attrs: dict[str, Any]) -> str | None:
    """The key of the turn a span's message-list input belongs to, or ``None`` for plain input.

    The turn is that of the list's last user message, identified by its text and the message
    just before it (role and text; nothing before the first message). So every LLM call of a tool
    loop (which resends the history plus tool results) shares the key of its user message, a
    repeated "yes" after another assistant reply is a new turn, and an app that trims old
    history still groups right. Order-independent: each span's key is its own.
    """
    return _SpanChat(attrs).turn_key()


def span_detail(attrs: dict[str, Any], kind: str, span_name: str | None = None) -> str | None:
    """Compact JSON of what a turn's steps need from this span, or ``None`` when there is nothing.

    An LLM span (``kind == "LLM"``) gives ``{"tool_calls": [{"id", "name", "arguments"}],
    "tool_results": [{"id", "name", "content"}]}``: the calls its output requested and the tool
    messages of its input after the last user message (empty lists are left out). A TOOL span
    gives ``{"name", "arguments", "result"}`` plus ``"id"`` when the span names its tool call.
    Strings are cut at :data:`MAX_DETAIL_CHARS`, lists at :data:`MAX_DETAIL_ENTRIES`.
    """
    return _SpanChat(attrs).detail(kind, span_name)


class ChatFields(NamedTuple):
    """What ingest stores from a span's chat attributes (see the functions of the same names)."""

    input: str | None
    output: str | None
    turn_key: str | None
    detail_json: str | None


def chat_fields(attrs: dict[str, Any], kind: str, span_name: str | None = None) -> ChatFields:
    """:func:`input_text`, :func:`output_text`, :func:`turn_key` and :func:`span_detail` at once,
    each message list scanned and each JSON value parsed at most once."""
    chat = _SpanChat(attrs)
    return ChatFields(chat.input_text(), chat.output_text(), chat.turn_key(), chat.detail(kind, span_name))


class _SpanChat:
    """One span's chat attributes, each message list scanned and each JSON value parsed once."""

    __slots__ = ("_calls", "_flattened_calls", "_input_bases", "_input_json", "_inputs", "_output_bases",
                 "_output_json", "_outputs", "_reply", "attrs")

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs = attrs
        self._inputs: list[tuple[Any, Any]] | None = None
        self._input_bases: list[str] = []
        self._outputs: list[tuple[Any, Any]] | None = None
        self._output_bases: list[str] = []
        self._input_json: Any = _UNSET
        self._output_json: Any = _UNSET
        self._reply: Any = _UNSET
        self._flattened_calls: list[_Call] | None = None
        self._calls: list[_Call] | None = None

    def inputs(self) -> list[tuple[Any, Any]]:
        if self._inputs is None:
            self._inputs = _tail_messages(self.attrs, cv.LLM_INPUT_MESSAGES, self._input_bases)
        return self._inputs

    def outputs(self) -> list[tuple[Any, Any]]:
        if self._outputs is None:
            self._outputs = _raw_messages(self.attrs, cv.LLM_OUTPUT_MESSAGES, self._output_bases)
        return self._outputs

    def input_json(self) -> Any:
        if self._input_json is _UNSET:
            self._input_json = _parse_json(self.attrs.get(cv.INPUT_VALUE))
        return self._input_json

    def output_json(self) -> Any:
        if self._output_json is _UNSET:
            self._output_json = _parse_json(self.attrs.get(cv.OUTPUT_VALUE))
        return self._output_json

    def reply(self) -> tuple[str | None, list[_Call]] | None:
        """The (text, tool calls) of a provider response body in ``output.value``, if it is one."""
        if self._reply is _UNSET:
            value = self.output_json()
            self._reply = _reply_of(value) if isinstance(value, dict) else None
        reply: tuple[str | None, list[_Call]] | None = self._reply
        return reply

    def flattened_calls(self) -> list[_Call]:
        """The tool calls of the flattened output messages."""
        if self._flattened_calls is None:
            self._flattened_calls = _flattened_calls(self.attrs, self._output_bases) if self.outputs() else []
        return self._flattened_calls

    def output_calls(self) -> list[_Call]:
        """The tool calls the output requested (flattened output messages, else the body)."""
        if self._calls is None:
            raw = self.outputs()
            calls = self.flattened_calls()
            if not calls and not (raw and _last_plain_text(raw, _ANY_ROLE)):
                reply = self.reply()
                if reply is not None:
                    calls = reply[1]
            self._calls = calls
        return self._calls

    def input_text(self) -> str | None:
        raw = self.inputs()
        if raw:
            text = _last_text(raw, ("user",)) or _last_text(raw, ("user", "system", "tool", "assistant", ""))
            if text:
                return text
        return _value_text(self.attrs.get(cv.INPUT_VALUE), self.input_json(), _INPUT_KEYS, ("user",))

    def output_text(self) -> str | None:
        raw = self.outputs()
        if raw:
            text = _last_plain_text(raw, ("assistant", "")) or _last_plain_text(raw, _ANY_ROLE)
            if text:
                return text
        calls = self.flattened_calls()
        if calls:
            return _called_words(calls)
        reply = self.reply()
        if reply is not None:
            text, calls = reply
            if text:
                return text
            if calls:
                return _called_words(calls)
        if raw:
            text = _last_text(raw, ("assistant", "")) or _last_text(raw, _ANY_ROLE)
            if text:
                return text
        if reply is not None:
            return None
        return _value_text(self.attrs.get(cv.OUTPUT_VALUE), self.output_json(), _OUTPUT_KEYS, ("assistant",))

    def input_message_list(self) -> list[tuple[Any, Any]] | None:
        """The input messages as (role, content) pairs, unconverted; ``None`` for a plain input."""
        raw = self.inputs()
        if raw:
            return raw
        value = self.attrs.get(cv.INPUT_VALUE)
        if not isinstance(value, str) or value.lstrip()[:1] not in ("[", "{"):
            return None
        messages = _messages_in(self.input_json())
        return [(role, text) for role, text in messages] if messages else None

    def turn_key(self) -> str | None:
        raw = self.input_message_list()
        if not raw:
            return None
        for index in range(len(raw) - 1, -1, -1):
            role, content = raw[index]
            if _role(role) != "user":
                continue
            digest = hashlib.blake2b(digest_size=12)
            digest.update((_content_text(content) or "").strip().encode("utf-8", "surrogatepass"))
            if index > 0:
                before_role, before_content = raw[index - 1]
                digest.update(b"\x1f" + _role(before_role).encode("utf-8", "surrogatepass") + b"\x1e")
                digest.update((_content_text(before_content) or "").strip().encode("utf-8", "surrogatepass"))
            return MESSAGE_KEY_PREFIX + digest.hexdigest()
        return None

    def tool_results(self) -> list[_Result]:
        """The tool messages of the input after its last user message."""
        raw = self.inputs()
        if raw:
            return _flattened_results(self.attrs, raw, self._input_bases)
        value = self.input_json()
        return _json_results(value) if isinstance(value, dict | list) else []

    def detail(self, kind: str, span_name: str | None) -> str | None:
        if kind == "LLM":
            detail: dict[str, Any] = {}
            calls = self.output_calls()
            if calls:
                detail["tool_calls"] = [{"id": _cut(call_id), "name": _cut(name), "arguments": _json_text(args)}
                                        for call_id, name, args in calls[:MAX_DETAIL_ENTRIES]]
            results = self.tool_results()
            if results:
                detail["tool_results"] = [{"id": _cut(call_id), "name": _cut(name), "content": _cut(content)}
                                          for call_id, name, content in results[:MAX_DETAIL_ENTRIES]]
            return orjson.dumps(detail).decode() if detail else None
        if kind == "TOOL":
            return self._tool_detail(span_name)
        return None

    def _tool_detail(self, span_name: str | None) -> str | None:
        get = self.attrs.get
        name = _name(get(cv.TOOL_NAME)) or _name(get(cv.GEN_AI_TOOL_NAME)) or _name(span_name)
        arguments = _first(get(cv.INPUT_VALUE), get(_GEN_AI_TOOL_CALL_ARGUMENTS), get(cv.TOOL_PARAMETERS))
        result = _first(get(cv.OUTPUT_VALUE), get(_GEN_AI_TOOL_CALL_RESULT))
        call_id = _id(_first(get(_TOOL_ID), get(_TOOL_CALL_ID), get(_GEN_AI_TOOL_CALL_ID)))
        message = _tool_message(result, self.output_json if result is get(cv.OUTPUT_VALUE) else partial(
            _parse_json, result))
        if message is not None:  # LangChain's ToolMessage: its content is the result
            result = message.get("content")
            call_id = call_id or _id(message.get("tool_call_id"))
        if name is None and arguments is None and result is None:
            return None
        detail = {"name": _cut(name), "arguments": _json_text(arguments), "result": _json_text(result)}
        if call_id:
            detail["id"] = _cut(call_id)
        return orjson.dumps(detail).decode()


def _first(first: Any, second: Any, third: Any = None) -> Any:
    """The first of the values that is not ``None``."""
    return first if first is not None else second if second is not None else third
