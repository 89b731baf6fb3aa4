"""Normalization rules of DESIGN.md §3, one behaviour per test."""

from __future__ import annotations

import json

import pytest

from threadline.server.chat import flattened_messages
from threadline.server.ingest.normalize import normalize
from threadline.server.ingest.otlp import DecodedSpan
from threadline.server.ingest.pricing import cost_usd
from threadline.server.store.payload import read_span
from threadline.server.store.records import SPAN_COLUMNS_END


def span(attrs: dict[str, object], *, parent: str | None = None, status: str = "UNSET",
         events: list[dict[str, object]] | None = None, name: str = "s") -> DecodedSpan:
    return DecodedSpan(project="p", trace_id="a" * 32, span_id="b" * 16, parent_span_id=parent, name=name,
                       otel_kind="INTERNAL", start_ns=1, end_ns=2, status=status, status_message=None,
                       attributes=dict(attrs), events=events or [])


@pytest.mark.parametrize("attrs, expected", [
    ({"session.id": "s-1"}, "s-1"),
    ({"session.id": 42}, "42"),
    ({"gen_ai.conversation.id": "conv-9"}, "conv-9"),
    ({"metadata": json.dumps({"thread_id": "th-1"})}, "th-1"),
    ({"metadata": json.dumps({"session_id": 7})}, "7"),
    ({"metadata": {"conversation_id": "c-3"}}, "c-3"),
    ({"session.id": "", "metadata": "{not json"}, None),
    ({"session.id": True}, None),
])
def test_session_id_sources(attrs: dict[str, object], expected: str | None) -> None:
    assert normalize(span(attrs)).session_id == expected


def test_session_id_attribute_wins_over_metadata() -> None:
    record = normalize(span({"session.id": "explicit", "metadata": json.dumps({"thread_id": "implicit"})}))
    assert record.session_id == "explicit"


def test_user_id_from_attribute_or_metadata() -> None:
    assert normalize(span({"user.id": 7})).user_id == "7"
    assert normalize(span({"metadata": json.dumps({"user_id": "u-1"})})).user_id == "u-1"


def test_tokens_and_cost_only_on_llm_spans() -> None:
    counts = {"llm.token_count.prompt": 100, "llm.token_count.completion": 20, "llm.model_name": "gpt-4o-mini"}
    chain = normalize(span({"openinference.span.kind": "CHAIN", **counts}))
    llm = normalize(span({"openinference.span.kind": "LLM", **counts}))
    assert (chain.prompt_tokens, chain.total_tokens, chain.cost) == (0, 0, 0.0)
    assert (llm.prompt_tokens, llm.completion_tokens, llm.total_tokens) == (100, 20, 120)
    assert llm.cost == pytest.approx(cost_usd("gpt-4o-mini", 100, 20))
    assert llm.cost > 0


def test_span_cost_attribute_beats_price_table() -> None:
    record = normalize(span({"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o",
                             "llm.token_count.prompt": 10, "llm.cost.total": 0.5}))
    assert record.cost == 0.5


def test_gen_ai_usage_makes_an_llm_span() -> None:
    record = normalize(span({"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-3-haiku",
                             "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 4}))
    assert record.kind == "LLM"
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (11, 4, 15)
    assert record.model == "claude-3-haiku"


def test_flattened_llm_messages_give_last_user_message_and_reply() -> None:
    record = normalize(span({
        "openinference.span.kind": "LLM",
        "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "be nice",
        "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": "first question",
        "llm.input_messages.2.message.role": "assistant", "llm.input_messages.2.message.content": "answer",
        "llm.input_messages.3.message.role": "user", "llm.input_messages.3.message.content": "second question",
        "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": "reply 2",
    }))
    assert (record.input, record.output) == ("second question", "reply 2")


def test_openai_request_and_response_json() -> None:
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}]}
    response = {"choices": [{"message": {"role": "assistant", "content": "hello!"}}]}
    record = normalize(span({"input.value": json.dumps(request), "output.value": json.dumps(response)}))
    assert (record.input, record.output) == ("hi there", "hello!")


def test_langchain_serialized_messages() -> None:
    value = {"messages": [[
        {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"],
         "kwargs": {"content": "what is 2+2?", "type": "human"}},
    ]]}
    output = {"generations": [[{"text": "4", "message": {"kwargs": {"content": "4", "type": "ai"}}}]]}
    record = normalize(span({"input.value": json.dumps(value), "output.value": json.dumps(output)}))
    assert (record.input, record.output) == ("what is 2+2?", "4")


def test_plain_text_and_unknown_json_are_kept() -> None:
    record = normalize(span({"input.value": "just text", "output.value": json.dumps({"weird": [1, 2]})}))
    assert record.input == "just text"
    assert json.loads(record.output or "") == {"weird": [1, 2]}


def test_hostile_message_index_is_not_amplified() -> None:
    attrs = {"llm.input_messages.4294967295.message.role": "user",
             "llm.input_messages.4294967295.message.content": "deep",
             "input.value": "the real question"}
    assert flattened_messages(attrs, "llm.input_messages") == []
    record = normalize(span(attrs))
    assert record.input == "the real question"
    assert read_span(record.payload).attributes()["llm.input_messages.4294967295.message.content"] == "deep"


def test_multimodal_message_contents_become_text() -> None:
    attrs = {"llm.input_messages.0.message.role": "user",
             "llm.input_messages.0.message.contents.0.message_content.text": "describe",
             "llm.input_messages.0.message.contents.1.message_content.text": "this image"}
    assert normalize(span({"openinference.span.kind": "LLM", **attrs})).input == "describe\nthis image"


def test_error_message_from_exception_event() -> None:
    event = {"name": "exception", "time_ns": 5,
             "attributes": {"exception.type": "TimeoutError", "exception.message": "upstream timed out"}}
    record = normalize(span({}, status="ERROR", events=[event]))
    assert record.error == "TimeoutError: upstream timed out"


def test_turn_text_is_bounded() -> None:
    record = normalize(span({"input.value": "x" * 5000}), max_text_chars=1000)
    assert record.input is not None and len(record.input) <= 1001


QUESTION = {"role": "user", "content": "Where is order 1234?"}
OPENAI_INPUT = {
    "openinference.span.kind": "LLM", "llm.system": "openai", "llm.model_name": "gpt-4o-mini-2024-07-18",
    "llm.input_messages.0.message.role": "user",
    "llm.input_messages.0.message.content": "Where is order 1234?",
}
OPENAI_TOOL_CALL = {
    **OPENAI_INPUT,
    "input.value": json.dumps({"messages": [QUESTION], "model": "gpt-4o-mini"}),
    "output.value": json.dumps({"id": "chatcmpl-AAA", "object": "chat.completion", "choices": [
        {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_abc", "type": "function",
             "function": {"name": "lookup_order", "arguments": '{"order_id": 1234}'}}]}}]}),
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_abc",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup_order",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"order_id": 1234}',
}


def test_tool_call_reply_is_words_and_detail_not_the_response_body() -> None:
    record = normalize(span(OPENAI_TOOL_CALL))
    assert (record.input, record.output) == ("Where is order 1234?", "called lookup_order(order_id=1234)")
    assert record.turn_key is not None
    assert json.loads(read_span(record.payload).detail or "") == {
        "tool_calls": [{"id": "call_abc", "name": "lookup_order", "arguments": '{"order_id": 1234}'}]}


def test_tool_loop_calls_share_the_turn_key_and_list_the_tool_result() -> None:
    call = {"id": "call_abc", "type": "function",
            "function": {"name": "lookup_order", "arguments": '{"order_id": 1234}'}}
    second = normalize(span({
        **OPENAI_INPUT,
        "input.value": json.dumps({"messages": [QUESTION, {"role": "assistant", "tool_calls": [call]},
                                                {"role": "tool", "tool_call_id": "call_abc",
                                                 "content": '{"status": "shipped"}'}]}),
        "llm.input_messages.1.message.role": "assistant",
        "llm.input_messages.1.message.tool_calls.0.tool_call.id": "call_abc",
        "llm.input_messages.1.message.tool_calls.0.tool_call.function.name": "lookup_order",
        "llm.input_messages.1.message.tool_calls.0.tool_call.function.arguments": '{"order_id": 1234}',
        "llm.input_messages.2.message.role": "tool",
        "llm.input_messages.2.message.tool_call_id": "call_abc",
        "llm.input_messages.2.message.content": '{"status": "shipped"}',
        "output.value": json.dumps({"choices": [{"index": 0,
                                                 "message": {"role": "assistant", "content": "Shipped."}}]}),
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "Shipped.",
    }))
    assert (second.input, second.output) == ("Where is order 1234?", "Shipped.")
    assert second.turn_key == normalize(span(OPENAI_TOOL_CALL)).turn_key
    assert json.loads(read_span(second.payload).detail or "") == {
        "tool_results": [{"id": "call_abc", "name": "lookup_order", "content": '{"status": "shipped"}'}]}


def test_tool_span_detail_is_named_by_the_span_when_attributes_do_not() -> None:
    record = normalize(span({"openinference.span.kind": "TOOL", "input.value": '{"order_id": 1234}',
                             "output.value": '{"status": "shipped"}'}, name="lookup_order"))
    assert json.loads(read_span(record.payload).detail or "") == {
        "name": "lookup_order", "arguments": '{"order_id": 1234}', "result": '{"status": "shipped"}'}


def test_plain_spans_have_no_detail_and_no_message_turn_key() -> None:
    record = normalize(span({"openinference.span.kind": "CHAIN", "input.value": "hello", "output.value": "bye"}))
    assert (record.turn_key, read_span(record.payload).detail) == (None, None)
    assert record.payload is record[SPAN_COLUMNS_END - 1]  # the last column of `spans` in the record
    assert (record.tags, record.metadata) == ((), ())  # after the columns: no tags, no metadata


def test_provider_body_without_text_is_never_shown_raw() -> None:
    body = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "stop_reason": "max_tokens"}
    record = normalize(span({"openinference.span.kind": "LLM", "output.value": json.dumps(body)}))
    assert record.output is None
