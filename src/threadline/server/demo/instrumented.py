"""OpenAI-shaped demo turns: the spans the OpenInference OpenAI instrumentor makes with no parent span.

An app that calls ``client.chat.completions.create`` itself, instrumented by
``openinference-instrumentation-openai`` and nothing else, sends one trace per model call: a root
``ChatCompletion`` span (OpenTelemetry kind INTERNAL) whose attributes are, in the instrumentor's
order,

- at start: ``llm.provider`` and ``llm.system`` (``openai``), ``openinference.span.kind`` = LLM,
  ``input.value`` = the request JSON (``messages``, ``model``, ``temperature``, ``tools``) and
  ``input.mime_type`` = ``application/json``;
- at the end of a successful call: ``output.value`` = the ``ChatCompletion`` response JSON and its
  mime type, the context attributes (``session.id``, ``user.id``, ``metadata``, ``tag.tags``),
  ``llm.tools.N.tool.json_schema``, ``llm.invocation_parameters``, the whole history as
  ``llm.input_messages.N.message.*`` (``message.tool_call_id`` on tool results,
  ``message.tool_calls.J.tool_call.id`` / ``.function.name`` / ``.function.arguments`` on the
  assistant's earlier calls), then ``llm.model_name`` (the dated model that answered), the token
  counts with their details, ``llm.output_messages.0.message.*`` and ``llm.finish_reason``;
- when the call raises: the same minus everything from the response, an ``exception`` event
  (``openai.RateLimitError`` …) and status ERROR ``"RateLimitError: <message>"``.

The tools the app runs between two calls have no span: they are known only from the messages.
The key names were checked against openinference-instrumentation-openai 0.1.66 and
openinference-semantic-conventions 0.1.42 (``_request_attributes_extractor.py``,
``_response_attributes_extractor.py``, ``_request.py``).
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode

from threadline import conventions as cv
from threadline.server.demo.catalog import Tool
from threadline.server.demo.conversations import LlmCall, Message, SessionPlan, ToolRequest, TurnPlan

#: The model that answers a request for a model alias (OpenAI reports dated snapshots).
SNAPSHOTS = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4o": "gpt-4o-2024-08-06",
             "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14"}
TEMPERATURE = 0.2
_ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_STACK = '''Traceback (most recent call last):
  File "/srv/ops-assistant/app/chat.py", line 64, in answer
    reply = client.chat.completions.create(model=MODEL, messages=history, tools=TOOLS, temperature=0.2)
  File "/usr/local/lib/python3.12/site-packages/openai/_utils/_utils.py", line 287, in wrapper
    return func(*args, **kwargs)
  File "/usr/local/lib/python3.12/site-packages/openai/resources/chat/completions/completions.py", line 1147, in create
    return self._post(
  File "/usr/local/lib/python3.12/site-packages/openai/_base_client.py", line 1259, in post
    return cast(ResponseT, self.request(cast_to, opts, stream=stream, stream_cls=stream_cls))
  File "/usr/local/lib/python3.12/site-packages/openai/_base_client.py", line 1047, in request
    raise self._make_status_error_from_response(err.response) from None
'''


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000) * 1000


def emit_instrumented_turn(tracer: trace.Tracer, plan: SessionPlan, turn: TurnPlan) -> None:
    """One root LLM span (one trace) per model call of ``turn``; tool runs only advance the clock."""
    tools = [tool_definition(tool) for tool in plan.app.tools()]
    at = turn.start + timedelta(milliseconds=4)
    number = 0
    for step in turn.steps:
        if isinstance(step, LlmCall):
            end = at + timedelta(milliseconds=step.latency_ms)
            ids = random.Random(f"{plan.session_id}/{turn.index}/{number}")
            _chat_completion(tracer, plan, step, tools, at, end, ids)
            number += 1
        else:
            end = at + timedelta(milliseconds=step.latency_ms)
        at = end + timedelta(milliseconds=4)


def tool_definition(tool: Tool) -> dict[str, Any]:
    """``tool`` as an entry of the request's ``tools`` (a function with a JSON schema)."""
    names = list(tool.arguments)
    return {"type": "function", "function": {
        "name": tool.name, "description": tool.description,
        "parameters": {"type": "object", "properties": {n: {"type": "string"} for n in names}, "required": names},
    }}


def message_param(message: Message) -> dict[str, Any]:
    """``message`` as the app passes it to ``chat.completions.create``."""
    out: dict[str, Any] = {"role": message.role}
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.content is not None:
        out["content"] = message.content
    if message.tool_calls:
        out["tool_calls"] = [_tool_call_json(r) for r in message.tool_calls]
    return out


def _tool_call_json(request: ToolRequest) -> dict[str, Any]:
    return {"id": request.call_id, "function": {"arguments": request.arguments, "name": request.name},
            "type": "function"}


def _message_attributes(prefix: str, message: Message) -> dict[str, str]:
    """The instrumentor's flattened attributes of one message, in its order."""
    attrs = {f"{prefix}.{cv.MESSAGE_ROLE}": message.role}
    if message.tool_call_id:
        attrs[f"{prefix}.message.tool_call_id"] = message.tool_call_id
    if message.content:
        attrs[f"{prefix}.{cv.MESSAGE_CONTENT}"] = message.content
    for j, request in enumerate(message.tool_calls):
        base = f"{prefix}.{cv.MESSAGE_TOOL_CALLS}.{j}"
        if request.call_id is not None:
            attrs[f"{base}.tool_call.id"] = request.call_id
        attrs[f"{base}.{cv.TOOL_CALL_FUNCTION_NAME}"] = request.name
        attrs[f"{base}.{cv.TOOL_CALL_FUNCTION_ARGUMENTS}"] = request.arguments
    return attrs


def _response(call: LlmCall, model: str, created: int, ids: random.Random) -> dict[str, Any]:
    """The ``ChatCompletion`` body as the openai client dumps it into ``output.value``."""
    message: dict[str, Any] = {"content": call.reply, "refusal": None, "role": "assistant", "annotations": []}
    if call.tool_calls:
        message["tool_calls"] = [_tool_call_json(r) for r in call.tool_calls]
    return {
        "id": "chatcmpl-" + "".join(ids.choice(_ALPHANUMERIC) for _ in range(29)),
        "choices": [{"finish_reason": "tool_calls" if call.tool_calls else "stop", "index": 0, "logprobs": None,
                     "message": message}],
        "created": created, "model": model, "object": "chat.completion", "service_tier": "default",
        "system_fingerprint": f"fp_{ids.getrandbits(40):010x}",
        "usage": {"completion_tokens": call.completion_tokens, "prompt_tokens": call.prompt_tokens,
                  "total_tokens": call.prompt_tokens + call.completion_tokens,
                  "completion_tokens_details": {"accepted_prediction_tokens": 0, "audio_tokens": 0,
                                                "reasoning_tokens": 0, "rejected_prediction_tokens": 0},
                  "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0}},
    }


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _chat_completion(tracer: trace.Tracer, plan: SessionPlan, call: LlmCall, tools: list[dict[str, Any]],
                     at: datetime, end: datetime, ids: random.Random) -> None:
    params: dict[str, Any] = {"model": call.model, "temperature": TEMPERATURE}
    if tools:
        params["tools"] = tools
    request = {"messages": [message_param(m) for m in call.messages], **params}
    attrs: dict[str, Any] = {
        cv.LLM_PROVIDER: "openai", cv.SPAN_KIND: "LLM", cv.LLM_SYSTEM: "openai",
        cv.INPUT_VALUE: json.dumps(request, ensure_ascii=False), cv.INPUT_MIME_TYPE: "application/json",
    }
    model = SNAPSHOTS.get(call.model, call.model)
    if call.error is None:
        attrs[cv.OUTPUT_VALUE] = _compact(_response(call, model, int(end.timestamp()), ids))
        attrs[cv.OUTPUT_MIME_TYPE] = "application/json"
    attrs.update({cv.SESSION_ID: plan.session_id, cv.USER_ID: plan.user_id,
                  cv.METADATA: json.dumps(plan.metadata), cv.TAG_TAGS: list(plan.tags)})
    for i, tool in enumerate(tools):
        attrs[f"llm.tools.{i}.tool.json_schema"] = json.dumps(tool, ensure_ascii=False)
    invocation = {k: v for k, v in params.items() if k != "tools"}
    attrs[cv.LLM_INVOCATION_PARAMETERS] = json.dumps(invocation, ensure_ascii=False)
    for i, message in enumerate(call.messages):
        attrs.update(_message_attributes(f"{cv.LLM_INPUT_MESSAGES}.{i}", message))
    if call.error is None:
        attrs[cv.LLM_MODEL_NAME] = model
        attrs[cv.LLM_TOKEN_TOTAL] = call.prompt_tokens + call.completion_tokens
        attrs[cv.LLM_TOKEN_PROMPT] = call.prompt_tokens
        attrs[cv.LLM_TOKEN_COMPLETION] = call.completion_tokens
        attrs["llm.token_count.prompt_details.cache_read"] = 0
        attrs["llm.token_count.prompt_details.audio"] = 0
        attrs["llm.token_count.completion_details.reasoning"] = 0
        attrs["llm.token_count.completion_details.audio"] = 0
        attrs.update(_message_attributes(f"{cv.LLM_OUTPUT_MESSAGES}.0",
                                         Message("assistant", call.reply, tool_calls=call.tool_calls)))
        attrs["llm.finish_reason"] = "tool_calls" if call.tool_calls else "stop"
    span = tracer.start_span("ChatCompletion", context=Context(), attributes=attrs, start_time=_ns(at))
    if call.error is not None:
        _raised(span, call.error, end)
    else:
        span.set_status(Status(StatusCode.OK))
    span.end(end_time=_ns(end))


def _raised(span: Span, error: tuple[str, str], at: datetime) -> None:
    """What the instrumentor records when the client raises: the exception event, then ERROR."""
    kind, message = error
    span.add_event("exception", {cv.EXCEPTION_TYPE: kind, cv.EXCEPTION_MESSAGE: message,
                                 cv.EXCEPTION_STACKTRACE: f"{_STACK}{kind}: {message}\n",
                                 "exception.escaped": "False"}, timestamp=_ns(at))
    span.set_status(Status(StatusCode.ERROR, f"{kind.rsplit('.', 1)[-1]}: {message}"))
