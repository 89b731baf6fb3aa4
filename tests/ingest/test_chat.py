"""Chat reading (threadline.server.chat): turn text, "called …" words, span detail and turn keys.

The attribute dicts are those the real instrumentors emit (openinference-instrumentation-openai
0.1.66, -langchain 0.1.80, -bedrock 0.1.61, -mistralai 2.2.2), captured from the real clients
against canned provider replies; request and response bodies are rebuilt with ``json.dumps``
(same structure, spacing aside). Provider bodies without an installed instrumentor (Anthropic,
Gemini) are the SDKs' own JSON forms.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from threadline.server.chat import (
    MAX_DETAIL_CHARS,
    MAX_DETAIL_ENTRIES,
    chat_fields,
    input_text,
    output_text,
    span_detail,
    turn_key,
)

Attrs = dict[str, Any]

SYSTEM = {"role": "system", "content": "You help."}
QUESTION = {"role": "user", "content": "Where is order 1234?"}
OPENAI_CALL = {"id": "call_abc", "function": {"arguments": '{"order_id": 1234}', "name": "lookup_order"},
               "type": "function"}
OPENAI_TOOL = {"role": "tool", "tool_call_id": "call_abc", "content": '{"status": "shipped"}'}


def flat(prefix: str, index: int, **fields: Any) -> Attrs:
    """``prefix.index.message.<field>`` attributes (``tool_calls=[(id, name, args)]`` flattened)."""
    out: Attrs = {}
    for name, value in fields.items():
        if name == "tool_calls":
            for j, (call_id, fn, args) in enumerate(value):
                base = f"{prefix}.{index}.message.tool_calls.{j}.tool_call."
                out.update({base + "id": call_id, base + "function.name": fn, base + "function.arguments": args})
        else:
            out[f"{prefix}.{index}.message.{name}"] = value
    return out


def detail(attrs: Attrs, kind: str = "LLM", name: str | None = None) -> Any:
    text = span_detail(attrs, kind, name)
    return None if text is None else json.loads(text)


# --- OpenAI chat completions (openinference-instrumentation-openai) ---------------------------------

OPENAI_FIRST: Attrs = {
    "llm.system": "openai",
    "input.value": json.dumps({"messages": [SYSTEM, QUESTION], "model": "gpt-4o-mini"}),
    "output.value": json.dumps({
        "id": "chatcmpl-AAA", "choices": [{"finish_reason": "tool_calls", "index": 0, "logprobs": None, "message": {
            "content": None, "refusal": None, "role": "assistant", "tool_calls": [OPENAI_CALL]}}],
        "created": 1, "model": "gpt-4o-mini-2024-07-18", "object": "chat.completion",
        "usage": {"completion_tokens": 17, "prompt_tokens": 80, "total_tokens": 97}}),
    **flat("llm.input_messages", 0, role="system", content="You help."),
    **flat("llm.input_messages", 1, role="user", content="Where is order 1234?"),
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    "llm.token_count.total": 97, "llm.token_count.prompt": 80, "llm.token_count.completion": 17,
    **flat("llm.output_messages", 0, role="assistant", tool_calls=[("call_abc", "lookup_order", '{"order_id": 1234}')]),
    "llm.finish_reason": "tool_calls",
    "openinference.span.kind": "LLM",
}

OPENAI_SECOND: Attrs = {
    "llm.system": "openai",
    "input.value": json.dumps({"messages": [SYSTEM, QUESTION, {"role": "assistant", "tool_calls": [OPENAI_CALL]},
                                            OPENAI_TOOL], "model": "gpt-4o-mini"}),
    "output.value": json.dumps({
        "id": "chatcmpl-BBB", "choices": [{"finish_reason": "stop", "index": 0, "logprobs": None, "message": {
            "content": "Order 1234 shipped yesterday.", "refusal": None, "role": "assistant"}}],
        "created": 2, "model": "gpt-4o-mini-2024-07-18", "object": "chat.completion"}),
    **flat("llm.input_messages", 0, role="system", content="You help."),
    **flat("llm.input_messages", 1, role="user", content="Where is order 1234?"),
    **flat("llm.input_messages", 2, role="assistant", tool_calls=[("call_abc", "lookup_order", '{"order_id": 1234}')]),
    **flat("llm.input_messages", 3, role="tool", tool_call_id="call_abc", content='{"status": "shipped"}'),
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    **flat("llm.output_messages", 0, role="assistant", content="Order 1234 shipped yesterday."),
    "llm.finish_reason": "stop",
    "openinference.span.kind": "LLM",
}


def test_openai_tool_call_reply_with_null_content_is_told_in_words() -> None:
    assert input_text(OPENAI_FIRST) == "Where is order 1234?"
    assert output_text(OPENAI_FIRST) == "called lookup_order(order_id=1234)"
    assert detail(OPENAI_FIRST) == {
        "tool_calls": [{"id": "call_abc", "name": "lookup_order", "arguments": '{"order_id": 1234}'}]}


def test_openai_response_body_alone_is_read_never_shown_raw() -> None:
    attrs = {"input.value": OPENAI_FIRST["input.value"], "output.value": OPENAI_FIRST["output.value"]}
    assert output_text(attrs) == "called lookup_order(order_id=1234)"
    assert detail(attrs)["tool_calls"] == [{"id": "call_abc", "name": "lookup_order",
                                            "arguments": '{"order_id": 1234}'}]
    assert output_text({"output.value": OPENAI_SECOND["output.value"]}) == "Order 1234 shipped yesterday."


def test_openai_second_call_of_a_tool_loop() -> None:
    assert input_text(OPENAI_SECOND) == "Where is order 1234?"
    assert output_text(OPENAI_SECOND) == "Order 1234 shipped yesterday."
    # OpenAI tool messages carry only tool_call_id: the name comes from the call they answer.
    assert detail(OPENAI_SECOND) == {
        "tool_results": [{"id": "call_abc", "name": "lookup_order", "content": '{"status": "shipped"}'}]}
    assert turn_key(OPENAI_SECOND) == turn_key(OPENAI_FIRST) is not None


def test_openai_request_body_alone_gives_tool_results_and_the_same_key() -> None:
    attrs = {"input.value": OPENAI_SECOND["input.value"], "output.value": OPENAI_SECOND["output.value"]}
    assert input_text(attrs) == "Where is order 1234?"
    assert detail(attrs) == {
        "tool_results": [{"id": "call_abc", "name": "lookup_order", "content": '{"status": "shipped"}'}]}
    assert turn_key(attrs) == turn_key(OPENAI_FIRST)


def test_openai_refusal_is_the_reply() -> None:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": None, "refusal": "I can't."}}]}
    assert output_text({"output.value": json.dumps(body)}) == "I can't."


# --- OpenAI Responses API ----------------------------------------------------------------------------

RESPONSES_FIRST: Attrs = {
    "llm.system": "openai",
    "input.value": json.dumps({"input": [QUESTION], "model": "gpt-4.1-mini"}),
    "output.value": json.dumps({
        "id": "resp_1", "created_at": 1.0, "model": "gpt-4.1-mini", "object": "response",
        "output": [{"arguments": '{"order_id":1234}', "call_id": "call_r1", "name": "lookup_order",
                    "type": "function_call", "id": "fc_1", "status": "completed"}],
        "status": "completed"}),
    # The instrumentor keeps index 0 for `instructions`: without them, messages start at 1.
    **flat("llm.input_messages", 1, role="user", content="Where is order 1234?"),
    "llm.model_name": "gpt-4.1-mini",
    **flat("llm.output_messages", 0, role="assistant", tool_calls=[("call_r1", "lookup_order", '{"order_id":1234}')]),
    "openinference.span.kind": "LLM",
}

RESPONSES_SECOND: Attrs = {
    "llm.system": "openai",
    "input.value": json.dumps({"input": [
        QUESTION, {"type": "function_call", "call_id": "call_r1", "name": "lookup_order",
                   "arguments": '{"order_id":1234}'},
        {"type": "function_call_output", "call_id": "call_r1", "output": '{"status":"shipped"}'}],
        "model": "gpt-4.1-mini"}),
    "output.value": json.dumps({
        "id": "resp_2", "object": "response", "status": "completed",
        "output": [{"id": "msg_1", "content": [{"annotations": [], "text": "It shipped.", "type": "output_text"}],
                    "role": "assistant", "status": "completed", "type": "message"}]}),
    **flat("llm.input_messages", 1, role="user", content="Where is order 1234?"),
    **flat("llm.input_messages", 2, role="assistant", tool_calls=[("call_r1", "lookup_order", '{"order_id":1234}')]),
    **flat("llm.input_messages", 3, role="tool", tool_call_id="call_r1", content='{"status":"shipped"}'),
    "llm.model_name": "gpt-4.1-mini",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.contents.0.message_content.type": "text",
    "llm.output_messages.0.message.contents.0.message_content.text": "It shipped.",
    "openinference.span.kind": "LLM",
}


def test_responses_api_messages_numbered_from_one() -> None:
    assert input_text(RESPONSES_FIRST) == "Where is order 1234?"
    assert output_text(RESPONSES_FIRST) == "called lookup_order(order_id=1234)"
    assert input_text(RESPONSES_SECOND) == "Where is order 1234?"
    assert output_text(RESPONSES_SECOND) == "It shipped."
    assert turn_key(RESPONSES_FIRST) == turn_key(RESPONSES_SECOND) is not None
    assert detail(RESPONSES_SECOND) == {
        "tool_results": [{"id": "call_r1", "name": "lookup_order", "content": '{"status":"shipped"}'}]}


def test_responses_api_bodies_alone() -> None:
    first = {"output.value": RESPONSES_FIRST["output.value"]}
    assert output_text(first) == "called lookup_order(order_id=1234)"
    assert detail(first) == {"tool_calls": [{"id": "call_r1", "name": "lookup_order",
                                             "arguments": '{"order_id":1234}'}]}
    second = {"input.value": RESPONSES_SECOND["input.value"], "output.value": RESPONSES_SECOND["output.value"]}
    assert output_text(second) == "It shipped."
    assert detail(second) == {
        "tool_results": [{"id": "call_r1", "name": "lookup_order", "content": '{"status":"shipped"}'}]}


# --- LangChain ChatOpenAI + bind_tools (openinference-instrumentation-langchain) ------------------------

def lc_message(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", f"{kind}Message"],
            "kwargs": kwargs}


LC_AI_CALL = lc_message(
    "AI", content="", additional_kwargs={"refusal": None},
    response_metadata={"model_name": "gpt-4o-mini-2024-07-18", "finish_reason": "tool_calls"}, type="ai",
    id="lc_run--01a2-0", tool_calls=[{"name": "lookup_order", "args": {"order_id": 1234}, "id": "call_abc",
                                      "type": "tool_call"}], invalid_tool_calls=[])
LC_HISTORY = [lc_message("System", content="You help.", type="system"),
              lc_message("Human", content="Where is order 1234?", type="human")]
LC_TOOL = lc_message("Tool", content='{"status": "shipped"}', type="tool", name="lookup_order",
                     tool_call_id="call_abc", status="success")


def lc_generations(message: dict[str, Any], text: str) -> str:
    return json.dumps({"generations": [[{"text": text, "generation_info": {"finish_reason": "stop"},
                                         "type": "ChatGeneration", "message": message}]],
                       "llm_output": {"model_name": "gpt-4o-mini-2024-07-18"}, "run": None, "type": "LLMResult"})


LANGCHAIN_FIRST: Attrs = {
    "input.value": json.dumps({"messages": [LC_HISTORY]}),
    "output.value": lc_generations(LC_AI_CALL, ""),
    **flat("llm.input_messages", 0, role="system", content="You help."),
    **flat("llm.input_messages", 1, role="user", content="Where is order 1234?"),
    **flat("llm.output_messages", 0, role="assistant", tool_calls=[("call_abc", "lookup_order", '{"order_id": 1234}')]),
    "llm.provider": "openai", "llm.model_name": "gpt-4o-mini-2024-07-18",
    "openinference.span.kind": "LLM",
}

LANGCHAIN_TOOL: Attrs = {
    "input.value": '{"order_id": 1234}',
    "output.value": json.dumps({"type": "tool", "data": {
        "content": '{"status": "shipped"}', "additional_kwargs": {}, "response_metadata": {}, "type": "tool",
        "name": "lookup_order", "id": None, "tool_call_id": "call_abc", "artifact": None, "status": "success"}}),
    "tool.name": "lookup_order",
    "tool.description": "Look up an order.",
    "openinference.span.kind": "TOOL",
}

LANGCHAIN_SECOND: Attrs = {
    "input.value": json.dumps({"messages": [[*LC_HISTORY, LC_AI_CALL, LC_TOOL]]}),
    "output.value": lc_generations(lc_message("AI", content="Order 1234 shipped yesterday.", type="ai",
                                              tool_calls=[], invalid_tool_calls=[]),
                                   "Order 1234 shipped yesterday."),
    **flat("llm.input_messages", 0, role="system", content="You help."),
    **flat("llm.input_messages", 1, role="user", content="Where is order 1234?"),
    **flat("llm.input_messages", 2, role="assistant", tool_calls=[("call_abc", "lookup_order", '{"order_id": 1234}')]),
    **flat("llm.input_messages", 3, role="tool", content='{"status": "shipped"}', tool_call_id="call_abc",
           name="lookup_order"),
    **flat("llm.output_messages", 0, role="assistant", content="Order 1234 shipped yesterday."),
    "openinference.span.kind": "LLM",
}


def test_langchain_bind_tools_reply_is_told_in_words() -> None:
    assert output_text(LANGCHAIN_FIRST) == "called lookup_order(order_id=1234)"
    assert detail(LANGCHAIN_FIRST) == {
        "tool_calls": [{"id": "call_abc", "name": "lookup_order", "arguments": '{"order_id": 1234}'}]}


def test_langchain_generations_alone() -> None:
    attrs = {"input.value": LANGCHAIN_FIRST["input.value"], "output.value": LANGCHAIN_FIRST["output.value"]}
    assert output_text(attrs) == "called lookup_order(order_id=1234)"
    # LangChain's args are an object: the detail carries them as JSON text.
    assert detail(attrs) == {"tool_calls": [{"id": "call_abc", "name": "lookup_order",
                                             "arguments": '{"order_id":1234}'}]}


def test_langchain_additional_kwargs_tool_calls() -> None:
    message = lc_message("AI", content="", type="ai", additional_kwargs={"tool_calls": [OPENAI_CALL]})
    assert output_text({"output.value": lc_generations(message, "")}) == "called lookup_order(order_id=1234)"


def test_langchain_serialized_ai_message_alone() -> None:
    assert output_text({"output.value": json.dumps(LC_AI_CALL)}) == "called lookup_order(order_id=1234)"
    text = lc_message("AI", content=[{"type": "text", "text": "Done."}], type="ai")
    assert output_text({"output.value": json.dumps(text)}) == "Done."


def test_langchain_tool_loop() -> None:
    assert input_text(LANGCHAIN_SECOND) == "Where is order 1234?"
    assert output_text(LANGCHAIN_SECOND) == "Order 1234 shipped yesterday."
    assert turn_key(LANGCHAIN_SECOND) == turn_key(LANGCHAIN_FIRST) is not None
    assert detail(LANGCHAIN_SECOND) == {
        "tool_results": [{"id": "call_abc", "name": "lookup_order", "content": '{"status": "shipped"}'}]}
    json_only = {"input.value": LANGCHAIN_SECOND["input.value"]}
    assert turn_key(json_only) == turn_key(LANGCHAIN_FIRST)
    assert detail(json_only) == detail(LANGCHAIN_SECOND)


def test_langchain_tool_span_detail_unwraps_the_tool_message() -> None:
    assert detail(LANGCHAIN_TOOL, "TOOL", "lookup_order") == {
        "name": "lookup_order", "arguments": '{"order_id": 1234}', "result": '{"status": "shipped"}',
        "id": "call_abc"}


# --- Bedrock (openinference-instrumentation-bedrock) ---------------------------------------------------

ANTHROPIC_TEXT_AND_CALL = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-haiku",
    "content": [{"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup_order", "input": {"order_id": 1234}}],
    "stop_reason": "tool_use", "usage": {"input_tokens": 20, "output_tokens": 30}}

BEDROCK_ANTHROPIC_FIRST: Attrs = {
    "llm.provider": "aws", "llm.system": "anthropic",
    **flat("llm.input_messages", 0, role="user", content="Where is order 1234?"),
    "input.value": json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "messages": [QUESTION]}),
    **flat("llm.output_messages", 0, role="assistant", content="Let me check."),
    **flat("llm.output_messages", 1, role="assistant", tool_call_id="",
           tool_calls=[("toolu_1", "lookup_order", '{"order_id": 1234}')]),
    "output.value": json.dumps(ANTHROPIC_TEXT_AND_CALL),
    "llm.model_name": "claude-3-haiku",
    "openinference.span.kind": "LLM",
}

ANTHROPIC_LOOP_REQUEST = {
    "anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "system": "You help.", "messages": [
        QUESTION,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup_order",
                                           "input": {"order_id": 1234}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": '{"status": "shipped"}'}]}]}

# Bedrock flattens Anthropic's tool_result as a *user* message with a tool_call_id.
BEDROCK_ANTHROPIC_LOOP: Attrs = {
    "llm.provider": "aws", "llm.system": "anthropic",
    "llm.input_messages.0.message.role": "system",
    "llm.input_messages.0.message.contents.0.message_content.type": "text",
    "llm.input_messages.0.message.contents.0.message_content.text": "You help.",
    **flat("llm.input_messages", 1, role="user", content="Where is order 1234?"),
    **flat("llm.input_messages", 2, role="assistant", tool_calls=[("toolu_1", "lookup_order", '{"order_id": 1234}')]),
    **flat("llm.input_messages", 3, role="user", content='{"status": "shipped"}', tool_call_id="toolu_1"),
    "input.value": json.dumps(ANTHROPIC_LOOP_REQUEST),
    **flat("llm.output_messages", 0, role="assistant", tool_call_id="",
           tool_calls=[("toolu_2", "notify", '{"order_id": 1234, "channel": "sms"}')]),
    "output.value": json.dumps({"id": "msg_2", "type": "message", "role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_2", "name": "notify", "input": {"order_id": 1234, "channel": "sms"}}],
        "stop_reason": "tool_use"}),
    "llm.model_name": "claude-3-haiku",
    "openinference.span.kind": "LLM",
}


def test_bedrock_anthropic_text_and_tool_call() -> None:
    assert output_text(BEDROCK_ANTHROPIC_FIRST) == "Let me check."
    assert detail(BEDROCK_ANTHROPIC_FIRST) == {
        "tool_calls": [{"id": "toolu_1", "name": "lookup_order", "arguments": '{"order_id": 1234}'}]}


def test_bedrock_tool_result_sent_as_user_message_is_not_the_users_turn() -> None:
    assert input_text(BEDROCK_ANTHROPIC_LOOP) == "Where is order 1234?"
    assert output_text(BEDROCK_ANTHROPIC_LOOP) == 'called notify(order_id=1234, channel="sms")'
    assert detail(BEDROCK_ANTHROPIC_LOOP) == {
        "tool_calls": [{"id": "toolu_2", "name": "notify", "arguments": '{"order_id": 1234, "channel": "sms"}'}],
        "tool_results": [{"id": "toolu_1", "name": "lookup_order", "content": '{"status": "shipped"}'}]}
    first_call = {key: value for key, value in BEDROCK_ANTHROPIC_LOOP.items()
                  if not key.startswith(("llm.input_messages.2.", "llm.input_messages.3.", "input.value"))}
    assert turn_key(BEDROCK_ANTHROPIC_LOOP) == turn_key(first_call) is not None


def test_anthropic_request_body_tool_result_blocks() -> None:
    attrs = {"input.value": json.dumps(ANTHROPIC_LOOP_REQUEST)}
    assert input_text(attrs) == "Where is order 1234?"
    assert turn_key(attrs) == turn_key({"input.value": json.dumps({"messages": [QUESTION]})})
    assert detail(attrs) == {
        "tool_results": [{"id": "toolu_1", "name": "lookup_order", "content": '{"status": "shipped"}'}]}


@pytest.mark.parametrize("body, expected", [
    (ANTHROPIC_TEXT_AND_CALL, "Let me check."),
    ({**ANTHROPIC_TEXT_AND_CALL, "content": ANTHROPIC_TEXT_AND_CALL["content"][1:]},
     "called lookup_order(order_id=1234)"),
    ({"inputTextTokenCount": 3, "results": [{"tokenCount": 2, "outputText": "Hi there",
                                              "completionReason": "FINISH"}]}, "Hi there"),
    ({"generation": "Hello!", "prompt_token_count": 3, "generation_token_count": 2, "stop_reason": "stop"},
     "Hello!"),
    ({"id": "x", "generations": [{"id": "g", "text": "Hey", "finish_reason": "COMPLETE"}], "prompt": "Say hi"},
     "Hey"),
    ({"output": {"message": {"role": "assistant", "content": [{"text": "It shipped."}]}},
      "stopReason": "end_turn", "usage": {"inputTokens": 30, "outputTokens": 5, "totalTokens": 35}},
     "It shipped."),
    ({"output": {"message": {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "tu_1", "name": "lookup_order", "input": {"order_id": 1234}}}]}},
      "stopReason": "tool_use"}, "called lookup_order(order_id=1234)"),
    # what the Converse instrumentation records as output.value: the message alone
    ({"role": "assistant", "content": [{"toolUse": {"toolUseId": "tu_1", "name": "lookup_order",
                                                    "input": {"order_id": 1234}}}]},
     "called lookup_order(order_id=1234)"),
])
def test_anthropic_and_bedrock_bodies(body: dict[str, Any], expected: str) -> None:
    assert output_text({"output.value": json.dumps(body)}) == expected


def test_bedrock_converse_tool_loop() -> None:
    request = [{"role": "user", "content": [{"text": "Where is order 1234?"}]},
               {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tu_1", "name": "lookup_order",
                                                              "input": {"order_id": 1234}}}]},
               {"role": "user", "content": [{"toolResult": {"toolUseId": "tu_1",
                                                            "content": [{"json": {"status": "shipped"}}]}}]}]
    attrs = {"input.value": json.dumps(request),
             "output.value": json.dumps({"role": "assistant", "content": [{"text": "It shipped."}]})}
    assert input_text(attrs) == "Where is order 1234?"
    assert output_text(attrs) == "It shipped."
    assert turn_key(attrs) == turn_key({"input.value": json.dumps(request[:1])}) is not None
    assert detail(attrs) == {
        "tool_results": [{"id": "tu_1", "name": "lookup_order", "content": '{"status":"shipped"}'}]}


# --- Mistral (openinference-instrumentation-mistralai) -----------------------------------------------

MISTRAL_FIRST: Attrs = {
    **flat("llm.input_messages", 0, role="user", content="Where is order 1234?"),
    "output.value": json.dumps({"id": "m1", "object": "chat.completion", "model": "mistral-large-latest",
                                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                                    "role": "assistant", "content": "", "tool_calls": [
                                        {"function": {"name": "lookup_order", "arguments": '{"order_id": 1234}'},
                                         "id": "D681PevKs", "type": "function"}]}}]}),
    "llm.model_name": "mistral-large-latest", "llm.provider": "mistralai",
    # the instrumentor records no tool_call.id
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup_order",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"order_id": 1234}',
    "openinference.span.kind": "LLM",
}

MISTRAL_CHUNKS: Attrs = {
    **flat("llm.input_messages", 0, role="user", content="Where is order 1234?"),
    "output.value": json.dumps({"id": "m2", "object": "chat.completion", "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": [
            {"text": "It shipped.", "type": "text"}]}}]}),
    # a list of chunks is not an attribute value: OpenTelemetry stored each chunk's str()
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.content": ["text='It shipped.' type='text'"],
    "openinference.span.kind": "LLM",
}


def test_mistral_tool_call_and_chunked_content() -> None:
    assert output_text(MISTRAL_FIRST) == "called lookup_order(order_id=1234)"
    assert detail(MISTRAL_FIRST) == {
        "tool_calls": [{"id": None, "name": "lookup_order", "arguments": '{"order_id": 1234}'}]}
    assert output_text({"output.value": MISTRAL_FIRST["output.value"]}) == "called lookup_order(order_id=1234)"
    assert output_text(MISTRAL_CHUNKS) == "It shipped."


# --- Gemini ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, expected", [
    ({"candidates": [{"content": {"role": "model", "parts": [{"text": "It shipped."}]}, "finishReason": "STOP"}],
      "usageMetadata": {"promptTokenCount": 5}}, "It shipped."),
    ({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "lookup_order", "args": {"order_id": 1234}}}]}, "finishReason": "STOP"}]},
     "called lookup_order(order_id=1234)"),
    # google-genai's model_dump: snake case; a thought summary is not the answer
    ({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "Thinking about orders", "thought": True},
        {"function_call": {"id": "fc1", "name": "lookup_order", "args": {"order_id": 1234}}}]},
        "finish_reason": "STOP"}]}, "called lookup_order(order_id=1234)"),
])
def test_gemini_bodies(body: dict[str, Any], expected: str) -> None:
    assert output_text({"output.value": json.dumps(body)}) == expected


def test_gemini_function_call_detail() -> None:
    body = {"candidates": [{"content": {"role": "model", "parts": [
        {"function_call": {"id": "fc1", "name": "lookup_order", "args": {"order_id": 1234}}}]}}]}
    assert detail({"output.value": json.dumps(body)}) == {
        "tool_calls": [{"id": "fc1", "name": "lookup_order", "arguments": '{"order_id":1234}'}]}


# --- recognized bodies without words; other outputs ---------------------------------------------------

@pytest.mark.parametrize("body", [
    {"id": "chatcmpl-X", "object": "chat.completion",
     "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": None}}]},
    {"id": "resp_3", "object": "response", "output": [{"type": "reasoning", "id": "rs_1", "summary": []}]},
    {"id": "msg_3", "type": "message", "role": "assistant", "content": [], "stop_reason": "max_tokens"},
    {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "SAFETY"}]},
    {"output": {"message": {"role": "assistant", "content": []}}, "stopReason": "max_tokens"},
    {"generations": [[{"text": "", "message": lc_message("AI", content="", type="ai", tool_calls=[])}]]},
    {"generations": [[]]},
])
def test_recognized_provider_body_without_text_gives_none(body: dict[str, Any]) -> None:
    assert output_text({"output.value": json.dumps(body)}) is None
    assert detail({"output.value": json.dumps(body)}) is None


@pytest.mark.parametrize("value", [
    json.dumps({"weird": [1, 2]}),
    json.dumps({"choices": ["red", "blue"]}),
    json.dumps({"results": [{"score": 1}]}),
    "plain answer",
])
def test_an_apps_own_output_stays_as_it_is(value: str) -> None:
    assert output_text({"output.value": value}) == value


def test_plain_text_input_has_no_turn_key() -> None:
    assert turn_key({"input.value": "Where is order 1234?"}) is None
    assert turn_key({"input.value": json.dumps({"question": "Where is order 1234?"})}) is None
    assert turn_key({}) is None


def test_user_message_with_content_parts_gives_its_text() -> None:
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in"}, {"type": "image_url", "image_url": {"url": "data:…"}},
        {"type": "text", "text": "this picture?"}]}]}
    assert input_text({"input.value": json.dumps(request)}) == "What is in\nthis picture?"
    lc = {"messages": [[lc_message("Human", type="human", content=[{"type": "text", "text": "Describe it"}])]]}
    assert input_text({"input.value": json.dumps(lc)}) == "Describe it"


# --- "called …" words --------------------------------------------------------------------------------

def calls_attrs(*calls: tuple[str | None, Any, Any]) -> Attrs:
    return {"openinference.span.kind": "LLM", "llm.output_messages.0.message.role": "assistant",
            **flat("llm.output_messages", 0, tool_calls=list(calls))}


@pytest.mark.parametrize("calls, expected", [
    ([("c1", "lookup_order", '{"order_id": 1234}')], "called lookup_order(order_id=1234)"),
    ([("c1", "now", "{}")], "called now()"),
    ([("c1", "now", None)], "called now()"),
    ([("c1", "search", '{"q": "red shoes", "limit": 5, "exact": true, "filters": {"size": [42]}}')],
     'called search(q="red shoes", limit=5, exact=true, filters={"size":[42]})'),
    ([("c1", "lookup_order", "order 1234")], "called lookup_order(order 1234)"),
    ([("c1", "lookup_order", '{"order_id": 1234}'), ("c2", "notify", '{"channel": "sms"}')],
     'called lookup_order(order_id=1234) and notify(channel="sms")'),
    ([("c1", "a", "{}"), ("c2", "b", "{}"), ("c3", "c", "{}")], "called a(), b() and c()"),
    ([(f"c{i}", f"t{i}", "{}") for i in range(5)], "called t0(), t1(), t2() and 2 more"),
])
def test_called_words(calls: list[tuple[str, str, str | None]], expected: str) -> None:
    assert output_text(calls_attrs(*calls)) == expected


# --- detail ---------------------------------------------------------------------------------------------

def test_tool_results_only_after_the_last_user_message() -> None:
    earlier_round = [QUESTION, {"role": "assistant", "tool_calls": [OPENAI_CALL]}, OPENAI_TOOL,
                     {"role": "assistant", "content": "Shipped."}]
    new_call = {**OPENAI_CALL, "id": "call_new", "function": {"name": "track", "arguments": "{}"}}
    request = {"messages": [*earlier_round, {"role": "user", "content": "And the tracking number?"},
                            {"role": "assistant", "content": None, "tool_calls": [new_call]},
                            {"role": "tool", "tool_call_id": "call_new", "content": "TRK-9"}]}
    assert detail({"input.value": json.dumps(request)}) == {
        "tool_results": [{"id": "call_new", "name": "track", "content": "TRK-9"}]}
    assert detail({"input.value": json.dumps({"messages": earlier_round[:1]})}) is None


def test_tool_span_detail_sources() -> None:
    gen_ai = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
              "gen_ai.tool.call.id": "call_1", "gen_ai.tool.call.arguments": '{"order_id": 1}',
              "gen_ai.tool.call.result": "shipped"}
    assert detail(gen_ai, "TOOL", "execute_tool lookup_order") == {
        "name": "lookup_order", "arguments": '{"order_id": 1}', "result": "shipped", "id": "call_1"}
    named_by_span = {"input.value": "1234", "output.value": "shipped"}
    assert detail(named_by_span, "TOOL", "lookup_order") == {
        "name": "lookup_order", "arguments": "1234", "result": "shipped"}
    parameters = {"tool.name": "lookup_order", "tool.parameters": '{"order_id": 1}'}
    assert detail(parameters, "TOOL", "x") == {"name": "lookup_order", "arguments": '{"order_id": 1}',
                                               "result": None}


def test_no_detail_for_other_kinds_or_plain_llm_calls() -> None:
    assert detail(LANGCHAIN_TOOL, "CHAIN", "lookup_order") is None
    assert detail({"llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "hi",
                   "llm.output_messages.0.message.role": "assistant",
                   "llm.output_messages.0.message.content": "hello"}) is None


def test_chat_fields_agree_with_the_single_functions() -> None:
    for attrs, kind in ((OPENAI_FIRST, "LLM"), (OPENAI_SECOND, "LLM"), (LANGCHAIN_TOOL, "TOOL"),
                        (BEDROCK_ANTHROPIC_LOOP, "LLM"), (MISTRAL_CHUNKS, "LLM"), ({"input.value": "hi"}, "CHAIN")):
        fields = chat_fields(attrs, kind, "span")
        assert fields == (input_text(attrs), output_text(attrs), turn_key(attrs), span_detail(attrs, kind, "span"))


# --- hostile input ------------------------------------------------------------------------------------

def test_huge_arguments_are_bounded() -> None:
    huge = json.dumps({"blob": "x" * 2_000_000})
    attrs = calls_attrs(("c1", "upload", huge))
    words = output_text(attrs)
    assert words is not None and words.startswith("called upload(") and len(words) < 400
    arguments = detail(attrs)["tool_calls"][0]["arguments"]
    assert len(arguments) == MAX_DETAIL_CHARS and arguments.endswith("…")
    result = detail({"input.value": "1", "output.value": "y" * 100_000}, "TOOL", "t")["result"]
    assert len(result) == MAX_DETAIL_CHARS


def test_ten_thousand_flattened_tool_calls() -> None:
    attrs = calls_attrs(*[(f"c{i}", f"t{i}", "{}") for i in range(10_000)])
    assert output_text(attrs) == f"called t0(), t1(), t2() and at least {MAX_DETAIL_ENTRIES - 3} more"
    calls = detail(attrs)["tool_calls"]
    assert len(calls) == MAX_DETAIL_ENTRIES and calls[-1]["name"] == f"t{MAX_DETAIL_ENTRIES - 1}"


def test_ten_thousand_tool_calls_and_results_in_bodies() -> None:
    calls = [{"id": f"c{i}", "function": {"name": "t", "arguments": "{}"}} for i in range(10_000)]
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": calls}}]}
    request = {"messages": [QUESTION, {"role": "assistant", "tool_calls": calls[:1]},
                            *({"role": "tool", "tool_call_id": f"c{i}", "content": "ok"} for i in range(10_000))]}
    attrs = {"output.value": json.dumps(body), "input.value": json.dumps(request)}
    assert all(len(value) < 1024 * 1024 for value in attrs.values())  # parsed: under the parse limit
    found = detail(attrs)
    assert len(found["tool_calls"]) == len(found["tool_results"]) == MAX_DETAIL_ENTRIES
    assert found["tool_results"][0] == {"id": "c0", "name": "t", "content": "ok"}


def test_hostile_tool_call_index_is_not_reached() -> None:
    attrs = {"llm.output_messages.0.message.role": "assistant",
             "llm.output_messages.0.message.tool_calls.4294967295.tool_call.function.name": "deep"}
    assert output_text(attrs) is None
    assert detail(attrs) is None


@pytest.mark.parametrize("attrs", [
    calls_attrs((None, 42, ["not", "an", "object"])),
    calls_attrs(({"id": 1}, {"name": "x"}, 7)),
    calls_attrs((None, None, "{not json")),
    {"llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": {"a": 1}},
    {"output.value": json.dumps({"choices": [{"index": 0, "message": ["not", "a", "dict"]}]})},
    {"output.value": json.dumps({"choices": [{"index": 0, "message": {"tool_calls": "nope", "content": 5}}]})},
    {"output.value": json.dumps({"choices": [{"index": 0, "message": {"tool_calls": [1, None, {"function": 3}]}}]})},
    {"output.value": json.dumps({"candidates": [{"content": {"parts": [{"functionCall": "x"}, 5, None]}}]})},
    {"output.value": json.dumps({"generations": [[{"message": {"kwargs": {"tool_calls": [{"args": 1}]}}}]]})},
    {"output.value": json.dumps({"output": [{"type": "function_call", "name": ["x"]}], "object": "response"})},
    {"output.value": json.dumps({"kwargs": {"content": "x"}, "id": 5})},
    {"input.value": json.dumps({"messages": [{"kwargs": {}, "id": 5}, {"kwargs": {}, "id": [1]}]})},
    {"input.value": json.dumps({"messages": [{"role": "tool", "content": {"deep": [1, {"x": None}]}}]})},
    {"input.value": json.dumps([{"role": "user", "content": [{"toolResult": "x"}, {"type": "tool_result"}]}])},
    {"input.value": "[" * 100_000, "output.value": "{" * 100_000},
    {"llm.input_messages.0.message.role": "tool", "llm.input_messages.0.message.tool_call_id": ["x"],
     "llm.input_messages.0.message.name": {"n": 1}, "llm.input_messages.0.message.content": 3},
    # OTLP kvlist and array values arrive as dicts and lists
    {"tool.name": ["x"], "gen_ai.tool.name": 7, "input.value": {"k": [1, {"v": None}]}, "output.value": [5, "a"],
     "tool.id": {"id": 1}},
    {"output.value": '{"type": "tool", "data": 5}', "tool.parameters": {"type": "object"}},
])
def test_wrong_types_never_raise(attrs: Attrs) -> None:
    for kind in ("LLM", "TOOL", "CHAIN"):
        fields = chat_fields(attrs, kind, "span")
        for text in (fields.input, fields.output):
            assert text is None or isinstance(text, str)
        if fields.detail_json is not None:
            assert isinstance(json.loads(fields.detail_json), dict)


def test_surrogates_and_nul_in_detail_still_encode() -> None:
    attrs = calls_attrs(("c1", "bad\ud800name", '{"k": "\x00"}'))
    found = detail(attrs)
    assert found["tool_calls"][0]["name"] == "bad\ufffdname"
    assert "\x00" not in found["tool_calls"][0]["arguments"]


# --- turn_key --------------------------------------------------------------------------------------------

def conversation(*messages: tuple[str, str]) -> Attrs:
    out: Attrs = {}
    for index, (role, content) in enumerate(messages):
        out.update(flat("llm.input_messages", index, role=role, content=content))
    return out


def test_every_llm_call_of_a_tool_loop_shares_the_first_calls_key() -> None:
    assert turn_key(OPENAI_FIRST) == turn_key(OPENAI_SECOND)
    third = {**OPENAI_SECOND,
             **flat("llm.input_messages", 4, role="assistant", tool_calls=[("call_2", "notify", "{}")]),
             **flat("llm.input_messages", 5, role="tool", tool_call_id="call_2", content="sent")}
    assert turn_key(third) == turn_key(OPENAI_FIRST)


def test_a_repeated_yes_after_another_reply_is_a_new_turn() -> None:
    first = conversation(("user", "Book it?"), ("assistant", "Flight at 9?"), ("user", "yes"))
    second = conversation(("user", "Book it?"), ("assistant", "Flight at 9?"), ("user", "yes"),
                          ("assistant", "Booked. Hotel too?"), ("user", "yes"))
    assert turn_key(first) != turn_key(second)
    assert turn_key(first) is not None and turn_key(second) is not None


def test_trimmed_history_keeps_its_key() -> None:
    full = conversation(("system", "You help."), ("user", "hi"), ("assistant", "Hello!"),
                        ("user", "Where is order 1234?"), ("assistant", "Which store?"), ("user", "Berlin"))
    trimmed = conversation(("assistant", "Which store?"), ("user", "Berlin"))
    assert turn_key(full) == turn_key(trimmed)


def test_json_input_forms_give_the_flattened_key() -> None:
    flattened = conversation(("system", "You help."), ("user", "Where is order 1234?"))
    openai_body = {"input.value": json.dumps({"model": "gpt-4o", "messages": [SYSTEM, QUESTION]})}
    langchain = {"input.value": json.dumps({"messages": [LC_HISTORY]})}
    assert turn_key(openai_body) == turn_key(langchain) == turn_key(flattened) is not None


def test_a_history_whose_oldest_messages_were_evicted_keeps_its_turn_text_and_key() -> None:
    messages = [{"role": "system", "content": "be brief"}]
    for n in range(100):
        messages += [{"role": "user", "content": f"question {n}"}, {"role": "assistant", "content": f"answer {n}"}]
    messages.append({"role": "user", "content": "the last question"})
    whole = {f"llm.input_messages.{i}.message.{k}": v for i, m in enumerate(messages) for k, v in
             (("role", m["role"]), ("content", m["content"]))}
    # OpenTelemetry's default limit of 128 attributes kept the newest 64 messages of 201.
    newest = {k: v for k, v in whole.items() if int(k.split(".")[2]) >= len(messages) - 64}
    assert input_text(newest) == input_text(whole) == "the last question"
    assert turn_key(newest) == turn_key(whole) is not None
