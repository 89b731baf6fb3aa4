"""Chat message lists as OpenInference and the providers send them, read without I/O.

Used at ingest (:mod:`threadline.server.ingest.normalize`) and by migrations that re-derive
what ingest derives. A message list comes either flattened
(``llm.input_messages.N.message.role`` / ``.content``) or as JSON in ``input.value`` /
``output.value`` (an OpenAI request, LangChain's serialized messages). Indices are looked up one
by one, never parsed from keys, so a hostile ``llm.input_messages.4294967295`` allocates nothing.

:func:`turn_key` names the turn a message-list input belongs to: the last user message, matched
by its text and the message just before it (DESIGN §3). :func:`output_text` is the assistant's
words, from ``llm.output_messages`` or a provider's response body (OpenAI chat completions and
Responses, Anthropic, Bedrock, Mistral, Gemini, LangChain), never the raw body; a reply that
only calls tools says so ("called lookup_order(order_id=1234)"). :func:`span_detail` is what a
turn's steps need from a span: the tool calls an LLM call requested and the tool results it was
given, or a tool span's name, arguments and result.

A tool result sent as a user message (Bedrock's flattened Anthropic ``tool_result`` carries a
``message.tool_call_id``; Anthropic and Converse request bodies put ``tool_result`` /
``toolResult`` blocks in a ``user`` message) counts as a tool message, never as the user's.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import orjson

from threadline import conventions as cv

_JSON_PARSE_LIMIT = 1024 * 1024
#: A span that lost its first messages to an attribute limit still has at least this many
#: attributes (the smallest limits in use are OpenTelemetry's default 128 and the server's cap).
_EVICTION_MIN_ATTRIBUTES = 64
#: No chat history has more messages than this: a larger index is hostile, not a history.
_MAX_MESSAGE_INDEX = 2**20
#: Longest string in a span's detail JSON (longer ones are cut, ending in "…").
MAX_DETAIL_CHARS = 4096
#: Most entries in one list of a span's detail JSON (tool calls, tool results).
MAX_DETAIL_ENTRIES = 32
_ROLE_ALIASES = {"human": "user", "ai": "assistant", "model": "assistant", "bot": "assistant"}
# OpenInference keys that threadline.conventions does not name (yet).
_MESSAGE_TOOL_CALL_ID = "message.tool_call_id"
_MESSAGE_NAME = "message.name"
_MESSAGE_FUNCTION_CALL_NAME = "message.function_call_name"
_MESSAGE_FUNCTION_CALL_ARGUMENTS = "message.function_call_arguments_json"
_TOOL_CALL_ID = "tool_call.id"
_TOOL_ID = "tool.id"
_GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
_GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
_GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"


def _keys_of(base: str) -> tuple[str, str, str, str, str]:
    """The :func:`_message_keys` of the message with key prefix ``base``."""
    return (base + cv.MESSAGE_ROLE, base + cv.MESSAGE_CONTENT, base, base + _MESSAGE_TOOL_CALL_ID,
            f"{base}{cv.MESSAGE_CONTENTS}.0.message_content.text")


_MESSAGE_KEYS = {prefix: [_keys_of(f"{prefix}.{i}.") for i in range(256)]
                 for prefix in (cv.LLM_INPUT_MESSAGES, cv.LLM_OUTPUT_MESSAGES)}
#: Prefix of a turn key derived from a message list (a plain-text turn is keyed by its trace id).
MESSAGE_KEY_PREFIX = "m:"
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSET: Any = object()
#: A requested tool call: (id, name, arguments as sent: a JSON string, an object, or None).
_Call = tuple[str | None, str, Any]
#: A tool result given to an LLM: (tool call id, tool name, content).
_Result = tuple[str | None, str | None, str | None]


def flattened_messages(attrs: dict[str, Any], prefix: str) -> list[tuple[str, str | None]]:
    """``prefix.N.message.role/content`` attributes as an ordered list of (role, content).

    OpenInference numbers messages 0, 1, 2, …; they are looked up by index, a few dict lookups
    per message, never by parsing every key. Indices are never used to allocate: a hostile key
    such as ``llm.input_messages.4294967295.message.content`` is stored with the span's
    attributes but does not become turn text.
    """
    return [(_role(role), _content_text(content)) for role, content in _raw_messages(attrs, prefix)]


def _message_keys(prefix: str, index: int) -> tuple[str, str, str, str, str]:
    """(role key, content key, key prefix, tool call id key, first text part key) of message
    ``index``; built once for the first ones."""
    known = _MESSAGE_KEYS.get(prefix)
    if known is not None and index < len(known):
        return known[index]
    return _keys_of(f"{prefix}.{index}.")


def _raw_messages(attrs: dict[str, Any], prefix: str, bases: list[str] | None = None) -> list[tuple[Any, Any]]:
    """The (role, content) attribute values of each message, unconverted (converting every one of
    a long chat history costs more than the few a caller looks at).

    Numbering may start past 0 (:func:`_lowest_index`: the Responses API, evicted history). A
    ``user`` message with a ``message.tool_call_id`` is a tool result (Bedrock sends Anthropic's
    ``tool_result`` so) and gets the role ``tool``. ``bases`` receives each message's key prefix.
    """
    out: list[tuple[Any, Any]] = []
    get = attrs.get
    index = 0
    while True:
        role_key, content_key, base, tool_call_id_key, part_key = _message_keys(prefix, index)
        role = get(role_key)
        content = get(content_key)
        if content is None:
            content = _content_parts(attrs, base) if get(part_key) is not None else None
            if role is None and content is None:
                if index == 0 and not out:
                    start = 1 if get(_message_keys(prefix, 1)[0]) is not None else (
                        _lowest_index(attrs, prefix) if len(attrs) >= _EVICTION_MIN_ATTRIBUTES else None)
                    if start is not None and start > 0:
                        index = start
                        continue
                return out
        if role == "user" and get(tool_call_id_key):
            role = "tool"
        out.append((role, content))
        if bases is not None:
            bases.append(base)
        index += 1


def _has_message(attrs: dict[str, Any], prefix: str, index: int) -> bool:
    role_key, content_key, _, _, part_key = _message_keys(prefix, index)
    return role_key in attrs or content_key in attrs or part_key in attrs


def _first_index(attrs: dict[str, Any], prefix: str) -> int | None:
    """Where the numbering of the messages starts (0; 1 for the Responses API; later when an
    attribute limit dropped the first messages); ``None`` without messages."""
    if _has_message(attrs, prefix, 0):
        return 0
    if _has_message(attrs, prefix, 1):
        return 1
    return _lowest_index(attrs, prefix) if len(attrs) >= _EVICTION_MIN_ATTRIBUTES else None


def _tail_messages(attrs: dict[str, Any], prefix: str, bases: list[str]) -> list[tuple[Any, Any]]:
    """The messages from the one before the last user message with text to the end — all that
    the turn text, the turn key and the tool results read — as :func:`_raw_messages` gives them.

    The last index is found by exponential then binary search (a few lookups, not one per
    message: every LLM call of a long chat resends the whole history). Without a user message,
    every message.
    """
    first = _first_index(attrs, prefix)
    if first is None:
        return []
    step = 1
    while step <= _MAX_MESSAGE_INDEX and _has_message(attrs, prefix, first + step):
        step *= 2
    low, high = first + step // 2, first + step  # message `low` exists, `high` does not
    if step == 1:
        low = first
    while high - low > 1:
        middle = (low + high) // 2
        if _has_message(attrs, prefix, middle):
            low = middle
        else:
            high = middle
    get = attrs.get
    out: list[tuple[Any, Any]] = []
    seen_user = False
    for index in range(low, first - 1, -1):
        role_key, content_key, base, tool_call_id_key, part_key = _message_keys(prefix, index)
        role = get(role_key)
        content = get(content_key)
        if content is None and get(part_key) is not None:
            content = _content_parts(attrs, base)
        if role == "user" and get(tool_call_id_key):
            role = "tool"
        out.append((role, content))
        bases.append(base)
        if seen_user:
            break
        seen_user = _role(role) == "user" and bool(_content_text(content))
    out.reverse()
    bases.reverse()
    return out


def _lowest_index(attrs: dict[str, Any], prefix: str) -> int | None:
    """The lowest message index present under ``prefix``, when the numbering does not start at 0:
    the Responses API starts at 1, and an attribute limit (the SDK's, which evicts the oldest, or
    the server's, which keeps the newest messages) can drop the first messages of a long history.
    Only read when message 0 is missing; an index past any real history (a hostile
    ``llm.input_messages.4294967295``) is not a start."""
    head = prefix + "."
    lowest: int | None = None
    for key in attrs:
        if key.startswith(head):
            number, _, _ = key[len(head):].partition(".")
            if number.isdigit() and int(number) <= _MAX_MESSAGE_INDEX and (lowest is None or int(number) < lowest):
                lowest = int(number)
    return lowest


def _last_text(raw: list[tuple[Any, Any]], roles: tuple[str, ...]) -> str | None:
    """The text of the last message with one of ``roles`` and some text."""
    for role, content in reversed(raw):
        if _role(role) in roles:
            text = _content_text(content)
            if text:
                return text
    return None


def _last_plain_text(raw: list[tuple[Any, Any]], roles: tuple[str, ...]) -> str | None:
    """Like :func:`_last_text`, for string contents only (a list-valued ``message.content`` is
    an instrumentor's ``str()`` of provider objects, e.g. Mistral's ``["text='…' type='text'"]``)."""
    for role, content in reversed(raw):
        if isinstance(content, str) and content and _role(role) in roles:
            return content
    return None


def _content_parts(attrs: dict[str, Any], base: str) -> str | None:
    """Text parts of a multimodal message (``message.contents.K.message_content.text``)."""
    parts = []
    part = 0
    while (text := attrs.get(f"{base}{cv.MESSAGE_CONTENTS}.{part}.message_content.text")) is not None:
        parts.append(str(text))
        part += 1
    return "\n".join(parts) or None


_KNOWN_ROLES = {**{role: role for role in ("user", "assistant", "system", "tool", "function", "developer")},
                **_ROLE_ALIASES}


def _role(value: Any) -> str:
    if value.__class__ is str and (known := _KNOWN_ROLES.get(value)) is not None:
        return known
    role = str(value or "").lower()
    return _ROLE_ALIASES.get(role, role)


def _content_text(content: Any) -> str | None:
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [_content_text(p.get("text") if isinstance(p, dict) else p) for p in content]
        joined = "\n".join(p for p in parts if p)
        return joined or None
    if isinstance(content, dict):
        return _content_text(content.get("text") or content.get("content"))
    return str(content)


def _class_role(class_path: Any) -> str:
    """The role in a LangChain class path (``[…, "HumanMessage"]`` → ``human``)."""
    if isinstance(class_path, list) and class_path and isinstance(class_path[-1], str):
        return class_path[-1].replace("Message", "").lower()
    return ""


def _is_tool_result_block(block: Any) -> bool:
    return isinstance(block, dict) and (
        block.get("type") == "tool_result" or "toolResult" in block or "functionResponse" in block
        or "function_response" in block)


def _only_tool_results(content: Any) -> bool:
    """Whether a message's content is tool results only (Anthropic ``tool_result`` blocks,
    Bedrock Converse ``toolResult``, Gemini ``functionResponse`` parts)."""
    return isinstance(content, list) and bool(content) and all(_is_tool_result_block(b) for b in content)


def _message_of(obj: Any) -> tuple[str, str | None] | None:
    """(role, text) of a chat message in OpenAI, LangChain (serialized) or plain form."""
    if not isinstance(obj, dict):
        return None
    kwargs = obj.get("kwargs") if isinstance(obj.get("kwargs"), dict) else None
    if kwargs is not None:
        role = _role(kwargs.get("type") or _class_role(obj.get("id")))
        content = kwargs.get("content")
    elif "role" in obj or ("type" in obj and "content" in obj):
        role = _role(obj.get("role") or obj.get("type"))
        content = obj.get("content")
    else:
        return None
    if role == "user" and _only_tool_results(content):
        role = "tool"
    return role, _content_text(content)


def _messages_in(value: Any) -> list[tuple[str, str | None]] | None:
    candidates = value.get("messages") if isinstance(value, dict) else value
    if not isinstance(candidates, list):
        return None
    if candidates and all(isinstance(c, list) for c in candidates):  # LangChain: [[msg, …]]
        candidates = [m for group in candidates for m in group]
    messages = [m for m in (_message_of(c) for c in candidates) if m is not None]
    return messages or None


def _parse_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    stripped = value.lstrip()
    if not stripped or stripped[0] not in "[{" or len(value) > _JSON_PARSE_LIMIT:
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:  # also past orjson's nesting limit, or with a lone surrogate
        return value


def _last(messages: list[tuple[str, str | None]], roles: tuple[str, ...]) -> str | None:
    for role, text in reversed(messages):
        if role in roles and text:
            return text
    return None


_INPUT_KEYS = ("input", "question", "query", "message", "prompt", "text", "user_input", "content")
_OUTPUT_KEYS = ("output", "answer", "response", "content", "text", "result", "completion")
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


def _value_text(raw: Any, value: Any, keys: tuple[str, ...], roles: tuple[str, ...]) -> str | None:
    """The text of ``raw`` (an attribute value; ``value`` is it parsed when JSON)."""
    if raw is None:
        return None
    if isinstance(value, str):
        return value
    messages = _messages_in(value)
    if messages:
        text = _last(messages, roles) or _last(messages, tuple({r for r, _ in messages}))
        if text:
            return text
    if isinstance(value, dict):
        for key in keys:
            if isinstance(value.get(key), str) and value[key].strip():
                return str(value[key])
        message = _message_of(value)
        if message and message[1]:
            return message[1]
    return raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)


# --- provider response bodies -------------------------------------------------------------------

_RESPONSES_ITEM_TYPES = frozenset(("message", "function_call", "reasoning", "web_search_call",
                                   "file_search_call", "computer_call", "custom_tool_call", "mcp_call"))
_CHOICE_KEYS = ("message", "text", "delta", "finish_reason", "index")


def _reply_of(value: dict[str, Any]) -> tuple[str | None, list[_Call]] | None:
    """(text, tool calls) of a provider's response body; ``None`` when ``value`` is not one.

    OpenAI chat completions and Mistral (``choices``), OpenAI Responses (``output`` items),
    Anthropic Messages and Bedrock invoke_model (``content`` blocks, Titan ``results``, Llama
    ``generation``, Cohere ``generations``), Bedrock Converse (``output.message``), Gemini
    (``candidates``), LangChain (``generations`` of serialized messages, an AIMessage).
    """
    choices = value.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict) and any(
            key in choices[0] for key in _CHOICE_KEYS):
        choice = choices[0]
        message = choice.get("message") or choice.get("delta")
        if isinstance(message, dict):
            return _message_reply(message)
        return _str(choice.get("text")), []
    candidates = value.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        content = candidates[0].get("content")
        return _message_reply(content) if isinstance(content, dict) else (None, [])
    generations = value.get("generations")
    if isinstance(generations, list) and generations:
        first = generations[0]
        if isinstance(first, list):
            first = first[0] if first else None
        if isinstance(first, dict):
            message = first.get("message")
            text, calls = _message_reply(_message_body(message)) if isinstance(message, dict) else (None, [])
            return text or _str(first.get("text")), calls
        return None if first is not None else (None, [])
    output = value.get("output")
    if isinstance(output, dict) and isinstance(output.get("message"), dict):
        return _message_reply(output["message"])
    if isinstance(output, list) and (value.get("object") == "response" or (
            output and isinstance(output[0], dict) and output[0].get("type") in _RESPONSES_ITEM_TYPES)):
        return _responses_reply(output)
    results = value.get("results")
    if isinstance(results, list) and results and isinstance(results[0], dict) and "outputText" in results[0]:
        return _str(results[0].get("outputText")), []
    if isinstance(value.get("generation"), str):
        return _str(value["generation"]), []
    kwargs = value.get("kwargs")
    if isinstance(kwargs, dict):
        if _role(kwargs.get("type") or _class_role(value.get("id"))) in ("assistant", "aichunk", "aimessagechunk"):
            return _message_reply(kwargs)
        return None
    data = value.get("data")
    if isinstance(data, dict) and value.get("type") in ("ai", "AIMessageChunk"):
        return _message_reply(data)
    if _role(value.get("role")) == "assistant" and (
            "content" in value or "tool_calls" in value or "parts" in value):
        return _message_reply(value)
    message = value.get("message")
    if isinstance(message, dict) and _role(message.get("role")) == "assistant":
        return _message_reply(message)
    return None


def _message_body(message: dict[str, Any]) -> dict[str, Any]:
    """The fields of a LangChain message (``kwargs`` when serialized, ``data`` in dict form)."""
    for key in ("kwargs", "data"):
        inner = message.get(key)
        if isinstance(inner, dict):
            return inner
    return message


def _message_reply(message: dict[str, Any]) -> tuple[str | None, list[_Call]]:
    """(text, tool calls) of an assistant message in OpenAI, Anthropic, Converse, Gemini,
    Mistral, Cohere or LangChain form."""
    content = message.get("content")
    if content is None:
        content = message.get("parts")  # Gemini
    block_calls: list[_Call] = []
    if isinstance(content, list):
        text, block_calls = _blocks(content)
    else:
        text = _str(content)
    calls = _message_calls(message, block_calls)
    if not text:
        text = _str(message.get("refusal"))
    return text, calls


def _message_calls(message: dict[str, Any], block_calls: list[_Call]) -> list[_Call]:
    """The tool calls of a message: ``tool_calls`` (OpenAI or LangChain form), else its content
    blocks' ones, else LangChain's ``additional_kwargs.tool_calls``, else a legacy ``function_call``."""
    calls = _tool_call_list(message.get("tool_calls"))
    if calls:
        return calls
    if block_calls:
        return block_calls
    additional = message.get("additional_kwargs")
    if isinstance(additional, dict):
        calls = _tool_call_list(additional.get("tool_calls"))
        if calls:
            return calls
    function_call = message.get("function_call")
    if isinstance(function_call, dict):
        call = _call(None, function_call.get("name"), function_call.get("arguments"))
        if call is not None:
            return [call]
    return []


def _tool_call_list(value: Any) -> list[_Call]:
    """Tool calls as OpenAI (``{id, function: {name, arguments}}``) or LangChain
    (``{id, name, args}``) list them."""
    calls: list[_Call] = []
    if not isinstance(value, list):
        return calls
    for item in value:
        if not isinstance(item, dict):
            continue
        function = item.get("function")
        if isinstance(function, dict):
            call = _call(item.get("id"), function.get("name"), function.get("arguments"))
        else:
            call = _call(item.get("id"), item.get("name"), item.get("args", item.get("arguments")))
        if call is not None:
            calls.append(call)
            if len(calls) >= MAX_DETAIL_ENTRIES:
                break
    return calls


def _blocks(content: list[Any]) -> tuple[str | None, list[_Call]]:
    """(text, tool calls) of content blocks: text (Anthropic, Converse, Mistral chunks, OpenAI
    parts, Gemini parts other than thoughts), ``tool_use``, ``toolUse``, ``functionCall``."""
    texts: list[str] = []
    calls: list[_Call] = []
    for block in content:
        if isinstance(block, str):
            texts.append(block)
            continue
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        call: _Call | None = None
        if kind == "tool_use":
            call = _call(block.get("id"), block.get("name"), block.get("input"))
        elif isinstance(tool_use := block.get("toolUse"), dict):
            call = _call(tool_use.get("toolUseId"), tool_use.get("name"), tool_use.get("input"))
        elif isinstance(function_call := block.get("functionCall") or block.get("function_call"), dict):
            call = _call(function_call.get("id"), function_call.get("name"), function_call.get("args"))
        elif kind in (None, "text", "output_text") and block.get("thought") is not True:
            text = block.get("text")
            if isinstance(text, str) and text:
                texts.append(text)
        if call is not None and len(calls) < MAX_DETAIL_ENTRIES:
            calls.append(call)
    return "\n".join(texts) or None, calls


def _responses_reply(output: list[Any]) -> tuple[str | None, list[_Call]]:
    """(text, tool calls) of an OpenAI Responses API ``output``."""
    texts: list[str] = []
    calls: list[_Call] = []
    for item in output:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message" and isinstance(item.get("content"), list):
            text, _ = _blocks(item["content"])
            if text:
                texts.append(text)
        elif kind == "function_call" and len(calls) < MAX_DETAIL_ENTRIES:
            call = _call(item.get("call_id") or item.get("id"), item.get("name"), item.get("arguments"))
            if call is not None:
                calls.append(call)
    return "\n".join(texts) or None, calls


# --- tool calls and results -----------------------------------------------------------------------

def _call(call_id: Any, name: Any, arguments: Any) -> _Call | None:
    """A tool call from wire values of any type; ``None`` when it names nothing at all."""
    text = _name(name)
    if text is None:
        if call_id is None and arguments is None:
            return None
        text = "unknown"
    return _id(call_id), text, arguments


def _flattened_calls(attrs: dict[str, Any], bases: list[str]) -> list[_Call]:
    """``message.tool_calls.J.tool_call.*`` (or a legacy ``message.function_call_name``) of the
    messages with key prefixes ``bases``, looked up by index, at most :data:`MAX_DETAIL_ENTRIES`."""
    get = attrs.get
    calls: list[_Call] = []
    for base in bases:
        count = 0
        keys = _CALL_KEYS.get(base)  # built once for the first messages (most of which call nothing)
        if keys is None:
            keys = _call_keys(base)
        if get(keys[0]) is not None or get(keys[1]) is not None or get(keys[2]) is not None:
            prefix = f"{base}{cv.MESSAGE_TOOL_CALLS}."
            while len(calls) < MAX_DETAIL_ENTRIES:
                key = f"{prefix}{count}.tool_call."
                call = _call(get(key + "id"), get(key + "function.name"), get(key + "function.arguments"))
                if call is None:
                    break
                calls.append(call)
                count += 1
        if count == 0 and (name := _name(get(keys[3]))) is not None:
            calls.append((None, name, get(keys[4])))
        if len(calls) >= MAX_DETAIL_ENTRIES:
            break
    return calls


def _call_keys(base: str) -> tuple[str, ...]:
    """The :data:`_CALL_KEYS` entry of a message with key prefix ``base``."""
    return (*(f"{base}{cv.MESSAGE_TOOL_CALLS}.0.tool_call.{key}" for key in ("id", "function.name",
                                                                              "function.arguments")),
            base + _MESSAGE_FUNCTION_CALL_NAME, base + _MESSAGE_FUNCTION_CALL_ARGUMENTS)


#: :func:`_call_keys` of the messages of :data:`_MESSAGE_KEYS`, by key prefix: their first tool
#: call's id, function name and arguments, then their legacy function call's name and arguments.
_CALL_KEYS = {base: _call_keys(base) for keys in _MESSAGE_KEYS.values() for _, _, base, _, _ in keys}


def _last_user(roles: list[str]) -> int:
    """Index of the last ``user`` role, -1 when there is none."""
    for index in range(len(roles) - 1, -1, -1):
        if roles[index] == "user":
            return index
    return -1


def _flattened_results(attrs: dict[str, Any], raw: list[tuple[Any, Any]], bases: list[str]) -> list[_Result]:
    """The flattened tool messages after the last user message; a result without a name takes
    that of the call it answers (OpenAI tool messages carry only ``tool_call_id``)."""
    start = len(raw)
    while start > 0 and _role(raw[start - 1][0]) != "user":
        start -= 1
    roles = [_role(role) for role, _ in raw[start:]]
    if "tool" not in roles and "function" not in roles:
        return []
    get = attrs.get
    results: list[_Result] = []
    for index in range(start, len(raw)):
        if roles[index - start] not in ("tool", "function"):
            continue
        base = bases[index]
        results.append((_id(get(base + _MESSAGE_TOOL_CALL_ID)), _name(get(base + _MESSAGE_NAME)),
                        _content_text(raw[index][1])))
        if len(results) >= MAX_DETAIL_ENTRIES:
            break
    if any(name is None and call_id for call_id, name, _ in results):
        asked = [bases[i] for i in range(start, len(raw)) if roles[i - start] == "assistant"]
        names = {call_id: name for call_id, name, _ in _flattened_calls(attrs, asked) if call_id}
        results = [(call_id, name or names.get(call_id or ""), content) for call_id, name, content in results]
    return results


def _json_messages(value: Any) -> list[Any]:
    """The message items of a request body: ``messages`` (OpenAI, Anthropic, LangChain's
    ``[[…]]``), ``input`` (OpenAI Responses), ``contents`` (Gemini) or a bare list (Converse)."""
    items: Any = value
    if isinstance(value, dict):
        items = next((value[key] for key in ("messages", "input", "contents") if isinstance(value.get(key), list)),
                     None)
    if not isinstance(items, list):
        return []
    if items and all(isinstance(item, list) for item in items):
        return [m for group in items for m in group]
    return list(items)


def _json_item(obj: Any) -> tuple[str, Any, dict[str, Any]] | None:
    """(role, content, fields) of one message item of a request body."""
    if not isinstance(obj, dict):
        return None
    body = _message_body(obj)
    kind = obj.get("type")
    if body is not obj:  # LangChain
        role = _role(body.get("type") or (kind if kind != "constructor" else None) or _class_role(obj.get("id")))
    elif kind == "function_call_output":
        role = "tool"
    elif kind == "function_call":
        role = "assistant"
    else:
        role = _role(obj.get("role") or kind)
    content = body.get("content")
    if content is None:
        content = body.get("parts")  # Gemini
    if role == "user" and _only_tool_results(content):
        role = "tool"
    return role, content, body


def _json_results(value: Any) -> list[_Result]:
    """The tool results after the last user message of a request body (OpenAI ``role: tool``,
    Anthropic ``tool_result`` blocks, Converse ``toolResult``, Gemini ``functionResponse``,
    LangChain ToolMessage, OpenAI Responses ``function_call_output``)."""
    items = [item for item in map(_json_item, _json_messages(value)) if item is not None]
    start = _last_user([role for role, _, _ in items]) + 1
    results: list[_Result] = []
    names: dict[str, str] = {}
    for role, content, body in items[start:]:
        if role == "assistant":
            block_calls = _blocks(content)[1] if isinstance(content, list) else []
            calls = _message_calls(body, block_calls)
            if not calls and body.get("type") == "function_call":
                call = _call(body.get("call_id") or body.get("id"), body.get("name"), body.get("arguments"))
                calls = [call] if call is not None else []
            names.update((call_id, name) for call_id, name, _ in calls if call_id)
        elif role in ("tool", "function") and len(results) < MAX_DETAIL_ENTRIES:
            if _only_tool_results(content):
                results.extend(_block_result(block) for block in content[:MAX_DETAIL_ENTRIES - len(results)])
            else:
                text = _content_text(content) if content is not None else _json_text(body.get("output"))
                results.append((_id(body.get("tool_call_id") or body.get("call_id")), _name(body.get("name")), text))
    return [(call_id, name or names.get(call_id or ""), content) for call_id, name, content in results]


def _block_result(block: dict[str, Any]) -> _Result:
    """A tool result content block (Anthropic ``tool_result``, Converse ``toolResult``, Gemini
    ``functionResponse``)."""
    if block.get("type") == "tool_result":
        return _id(block.get("tool_use_id")), None, _result_text(block.get("content"))
    inner = block.get("toolResult")
    if isinstance(inner, dict):
        return _id(inner.get("toolUseId")), None, _result_text(inner.get("content"))
    inner = block.get("functionResponse") or block.get("function_response")
    if isinstance(inner, dict):
        return _id(inner.get("id")), _name(inner.get("name")), _json_text(inner.get("response"))
    return None, None, None


def _result_text(content: Any) -> str | None:
    """Text of a tool result's content: a string, or blocks of ``text`` / ``json``."""
    if isinstance(content, list):
        parts = [block.get("text") if isinstance(block.get("text"), str) else _json_text(block.get("json"))
                 for block in content[:MAX_DETAIL_ENTRIES] if isinstance(block, dict)]
        return "\n".join(p for p in parts if p) or None
    return _json_text(content)


_TOOL_MESSAGE_PREFIXES = ('{"type": "tool"', '{"type":"tool"')


def _tool_message(value: Any, parse: Callable[[], Any]) -> dict[str, Any] | None:
    """The fields of LangChain's serialized ToolMessage (``{"type": "tool", "data": {…}}``), which
    its TOOL spans record as ``output.value``; ``parse()`` (``value`` parsed) is called only when
    the value starts so."""
    if not isinstance(value, str) or not value.startswith(_TOOL_MESSAGE_PREFIXES):
        return None
    parsed = parse()
    data = parsed.get("data") if isinstance(parsed, dict) else None
    return data if isinstance(data, dict) and "content" in data else None


# --- words and bounds -----------------------------------------------------------------------------

_WORDS_CALLS = 3
_WORDS_NAME_CHARS = 64
_WORDS_VALUE_CHARS = 48
_WORDS_ARGS_CHARS = 160
_WORDS_PARSE_LIMIT = 8192


def _called_words(calls: list[_Call]) -> str:
    """A reply that only calls tools, in words: ``called lookup_order(order_id=1234)``; several
    calls as ``called a(…), b(…) and c(…)``, more than three as ``… and 5 more``. Bounded."""
    shown = [f"{_short(name, _WORDS_NAME_CHARS)}({_argument_words(args)})" for _, name, args in calls[:_WORDS_CALLS]]
    extra = len(calls) - len(shown)
    if extra > 0:
        shown.append(f"{extra} more" if len(calls) < MAX_DETAIL_ENTRIES else f"at least {extra} more")
    if len(shown) == 1:
        return "called " + shown[0]
    return "called " + ", ".join(shown[:-1]) + " and " + shown[-1]


def _argument_words(arguments: Any) -> str:
    """Arguments as ``key=value`` with JSON-literal values (a JSON object), else their text."""
    if arguments is None:
        return ""
    if isinstance(arguments, str):
        text = arguments.strip()
        if not text.startswith("{") or len(text) > _WORDS_PARSE_LIMIT:
            return _short(text, _WORDS_ARGS_CHARS)
        try:
            arguments = orjson.loads(text)
        except orjson.JSONDecodeError:
            return _short(text, _WORDS_ARGS_CHARS)
    if not isinstance(arguments, dict):
        return _short(_literal(arguments), _WORDS_ARGS_CHARS)
    parts: list[str] = []
    length = 0
    for key, value in arguments.items():
        if isinstance(value, str) and len(value) > _WORDS_VALUE_CHARS:
            value = value[:_WORDS_VALUE_CHARS]  # only its start is shown: never encode all of it
        part = f"{_short(str(key), _WORDS_VALUE_CHARS)}={_short(_literal(value), _WORDS_VALUE_CHARS)}"
        parts.append(part)
        length += len(part) + 2
        if length > _WORDS_ARGS_CHARS:
            break
    return _short(", ".join(parts), _WORDS_ARGS_CHARS)


def _literal(value: Any) -> str:
    """``value`` as a JSON literal (``"sms"``, ``1234``, ``true``)."""
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:  # a type orjson cannot encode, or nested too deep
        return "…"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _name(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int):
        return str(value) or None
    return None


def _first(first: Any, second: Any, third: Any = None) -> Any:
    """The first of the values that is not ``None``."""
    return first if first is not None else second if second is not None else third


def _json_text(value: Any) -> str | None:
    """``value`` as detail text: a string as it is, anything else as JSON; bounded."""
    if value is None:
        return None
    if isinstance(value, str):
        return _cut(value)
    return _cut(_literal(value))


def _cut(text: str | None) -> str | None:
    """Detail text: at most :data:`MAX_DETAIL_CHARS` characters (cut with "…"), NUL characters
    and lone surrogates (which no database, nor orjson, takes) as U+FFFD."""
    if text is None:
        return None
    if len(text) > MAX_DETAIL_CHARS:
        text = text[:MAX_DETAIL_CHARS - 1] + "…"
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)
