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

The package's modules, each named after what it reads: :mod:`.messages` (flattened message lists,
roles, content text), :mod:`.values` (``input.value`` / ``output.value`` as JSON and as text),
:mod:`.tools` (tool calls and results, the "called …" words, detail text bounds), :mod:`.bodies`
(provider request and response bodies) and :mod:`.fields` (one span's fields, the turn key).
"""

from threadline.server.chat.fields import (
    MESSAGE_KEY_PREFIX,
    ChatFields,
    chat_fields,
    input_text,
    output_text,
    span_detail,
    turn_key,
)
from threadline.server.chat.messages import flattened_messages
from threadline.server.chat.tools import MAX_DETAIL_CHARS, MAX_DETAIL_ENTRIES

__all__ = [
    "MAX_DETAIL_CHARS",
    "MAX_DETAIL_ENTRIES",
    "MESSAGE_KEY_PREFIX",
    "ChatFields",
    "chat_fields",
    "flattened_messages",
    "input_text",
    "output_text",
    "span_detail",
    "turn_key",
]
