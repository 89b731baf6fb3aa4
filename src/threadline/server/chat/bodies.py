"""Provider request and response bodies as JSON: the (text, tool calls) of a response body (OpenAI
chat completions and Responses, Anthropic Messages, Bedrock invoke_model and Converse, Mistral,
Gemini, LangChain) and of its content blocks, and the tool results after the last user message of
a request body.
"""

from __future__ import annotations

from typing import Any

from threadline.server.chat.messages import _class_role, _content_text, _only_tool_results, _role
from threadline.server.chat.tools import (
    MAX_DETAIL_ENTRIES,
    _Call,
    _call,
    _id,
    _json_text,
    _name,
    _Result,
)

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


def _last_user(roles: list[str]) -> int:
    """Index of the last ``user`` role, -1 when there is none."""
    for index in range(len(roles) - 1, -1, -1):
        if roles[index] == "user":
            return index
    return -1


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


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
