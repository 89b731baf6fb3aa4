"""The zstandard dictionary of span payloads (format ``02``): the conventions' words, no user's.

A span's payload is compressed on its own, so every small span pays again for the attribute keys
and the JSON around them (``"llm.input_messages.3.message.role":"user"``) — most of a tool or
chain span, and the first mention of each key in an LLM span. A *raw content* dictionary gives
the compressor those bytes as history it can refer to from the first byte of every frame.

It holds only the names and framing of the OpenInference and OpenTelemetry GenAI conventions and
the payload's own layout, never anything a project sent: no erasure or retention has to reach it,
and it is the same for every project and database.

**Frozen.** A payload written with it can only be read with these exact bytes, so it never
changes; a better dictionary would be a new format byte (and this one kept for reading).
``tests/store/test_payload.py`` holds its SHA-256.
"""

from __future__ import annotations

import json

#: Message roles and span kinds, as they appear as JSON string values.
_WORDS = ("system", "user", "assistant", "tool", "function", "developer", "model", "LLM", "CHAIN", "TOOL",
          "AGENT", "RETRIEVER", "EMBEDDING", "RERANKER", "GUARDRAIL", "EVALUATOR", "application/json",
          "text/plain", "stop", "tool_calls", "length", "openai", "anthropic", "OK", "ERROR")

#: Keys a span's attributes JSON holds at the top level, in the order instrumentors tend to send them.
_SPAN_KEYS = (
    "exception.type", "exception.message", "exception.stacktrace", "exception.escaped",
    "retrieval.documents.0.document.id", "retrieval.documents.0.document.content",
    "retrieval.documents.0.document.score", "retrieval.documents.0.document.metadata",
    "embedding.model_name", "embedding.embeddings.0.embedding.text", "embedding.embeddings.0.embedding.vector",
    "reranker.model_name", "reranker.query", "reranker.top_k",
    "gen_ai.system", "gen_ai.operation.name", "gen_ai.request.model", "gen_ai.response.model",
    "gen_ai.request.temperature", "gen_ai.request.max_tokens", "gen_ai.response.id",
    "gen_ai.response.finish_reasons", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
    "gen_ai.conversation.id", "gen_ai.tool.name", "gen_ai.tool.call.id",
    "llm.prompt_template.template", "llm.prompt_template.version", "llm.prompt_template.variables",
    "llm.function_call", "llm.cost.prompt", "llm.cost.completion", "llm.cost.total",
    "tool.name", "tool.description", "tool.parameters", "tool.id",
    "tool_call.id", "tool_call.function.name", "tool_call.function.arguments",
    "llm.tools.0.tool.json_schema", "llm.tools.1.tool.json_schema", "llm.tools.2.tool.json_schema",
    "metadata", "tag.tags", "session.id", "user.id",
    "llm.token_count.prompt_details.cache_read", "llm.token_count.prompt_details.cache_write",
    "llm.token_count.prompt_details.audio", "llm.token_count.completion_details.reasoning",
    "llm.token_count.completion_details.audio",
    "llm.provider", "llm.system", "llm.model_name", "llm.invocation_parameters",
    "llm.token_count.total", "llm.token_count.prompt", "llm.token_count.completion",
    "input.value", "input.mime_type", "output.value", "output.mime_type", "openinference.span.kind",
)

#: What follows ``llm.input_messages.<n>.`` (and ``llm.output_messages.<n>.``).
_MESSAGE_KEYS = (
    "message.name", "message.function_call_name", "message.function_call_arguments_json",
    "message.contents.0.message_content.type", "message.contents.0.message_content.text",
    "message.contents.0.message_content.image.image.url",
    "message.tool_call_id",
    "message.tool_calls.0.tool_call.id", "message.tool_calls.0.tool_call.function.name",
    "message.tool_calls.0.tool_call.function.arguments",
    "message.role", "message.content",
)


def _build() -> bytes:
    """The dictionary's bytes: rarer fragments first, the most frequent last (nearest to the data)."""
    parts: list[str] = [json.dumps(word) for word in _WORDS]
    parts.append('[{"name":"exception","time_ns":0,"attributes":{"exception.type":"')
    parts.extend(f'"{key}":' for key in _SPAN_KEYS)
    for index in range(15, -1, -1):  # later messages are rarer than early ones
        for key in _MESSAGE_KEYS:
            parts.append(f'"llm.input_messages.{index}.{key}":')
        parts.append(f'"llm.input_messages.{index}.message.role":"user","llm.input_messages.{index}'
                     '.message.content":"')
        parts.append(f'"llm.input_messages.{index}.message.role":"assistant","llm.input_messages.{index}'
                     '.message.content":"')
    for key in _MESSAGE_KEYS:
        parts.append(f'"llm.output_messages.0.{key}":')
    parts.append('"llm.output_messages.0.message.role":"assistant","llm.output_messages.0.message.content":"')
    parts.append('{"messages":[{"role":"system","content":"')
    parts.append('{"role":"user","content":"')
    parts.append('{"role":"assistant","content":"')
    parts.append('"openinference.span.kind":"LLM","input.mime_type":"application/json",'
                 '"output.mime_type":"application/json","input.value":0,"output.value":0,')
    return ",".join(parts).encode()


DICTIONARY: bytes = _build()
