"""Every span attribute key Threadline reads or writes, in one place.

The names follow the OpenInference semantic conventions (``session.id``, ``user.id``,
``llm.token_count.*`` …), the OpenTelemetry GenAI conventions (``gen_ai.*``) and the keys
LangChain puts inside the ``metadata`` JSON. The SDK writes these keys and the server reads
them, so both sides import them from here.
"""

from __future__ import annotations

from typing import Final

# --- context / grouping -------------------------------------------------------------------
SESSION_ID: Final = "session.id"
USER_ID: Final = "user.id"
METADATA: Final = "metadata"
TAG_TAGS: Final = "tag.tags"
PROMPT_TEMPLATE: Final = "llm.prompt_template.template"
PROMPT_TEMPLATE_VERSION: Final = "llm.prompt_template.version"
PROMPT_TEMPLATE_VARIABLES: Final = "llm.prompt_template.variables"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
#: Keys inside the ``metadata`` JSON that LangChain users set to name a conversation.
METADATA_SESSION_KEYS: Final = ("session_id", "thread_id", "conversation_id")
#: Keys inside the ``metadata`` JSON that name a user.
METADATA_USER_KEYS: Final = ("user_id",)

# --- resource -------------------------------------------------------------------------------
PROJECT_NAME: Final = "openinference.project.name"
SERVICE_NAME: Final = "service.name"
PROJECT_HEADER: Final = "x-project-name"

# --- span kind and payloads -------------------------------------------------------------------
SPAN_KIND: Final = "openinference.span.kind"
INPUT_VALUE: Final = "input.value"
INPUT_MIME_TYPE: Final = "input.mime_type"
OUTPUT_VALUE: Final = "output.value"
OUTPUT_MIME_TYPE: Final = "output.mime_type"

# --- LLM ------------------------------------------------------------------------------------
LLM_MODEL_NAME: Final = "llm.model_name"
LLM_PROVIDER: Final = "llm.provider"
LLM_SYSTEM: Final = "llm.system"
LLM_INVOCATION_PARAMETERS: Final = "llm.invocation_parameters"
LLM_INPUT_MESSAGES: Final = "llm.input_messages"
LLM_OUTPUT_MESSAGES: Final = "llm.output_messages"
MESSAGE_ROLE: Final = "message.role"
MESSAGE_CONTENT: Final = "message.content"
MESSAGE_CONTENTS: Final = "message.contents"
MESSAGE_TOOL_CALLS: Final = "message.tool_calls"
LLM_TOKEN_PROMPT: Final = "llm.token_count.prompt"
LLM_TOKEN_COMPLETION: Final = "llm.token_count.completion"
LLM_TOKEN_TOTAL: Final = "llm.token_count.total"
LLM_COST_PROMPT: Final = "llm.cost.prompt"
LLM_COST_COMPLETION: Final = "llm.cost.completion"
LLM_COST_TOTAL: Final = "llm.cost.total"

# --- GenAI semantic conventions (OpenTelemetry) -----------------------------------------------
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"

# --- tools ------------------------------------------------------------------------------------
TOOL_NAME: Final = "tool.name"
TOOL_PARAMETERS: Final = "tool.parameters"
TOOL_CALL_FUNCTION_NAME: Final = "tool_call.function.name"
TOOL_CALL_FUNCTION_ARGUMENTS: Final = "tool_call.function.arguments"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"

# --- exceptions (OpenTelemetry) ---------------------------------------------------------------
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"

#: Attributes that place a span (its project, session, user, kind, turn text, model, tokens and
#: cost): the server's per-span attribute cap keeps them wherever they come in the list.
PLACEMENT_KEYS: Final = frozenset({
    PROJECT_NAME, SESSION_ID, USER_ID, GEN_AI_CONVERSATION_ID, METADATA, TAG_TAGS,
    SPAN_KIND, GEN_AI_OPERATION_NAME, INPUT_VALUE, INPUT_MIME_TYPE, OUTPUT_VALUE, OUTPUT_MIME_TYPE,
    LLM_MODEL_NAME, GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL,
    LLM_TOKEN_PROMPT, LLM_TOKEN_COMPLETION, LLM_TOKEN_TOTAL,
    GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_OUTPUT_TOKENS, GEN_AI_USAGE_PROMPT_TOKENS,
    GEN_AI_USAGE_COMPLETION_TOKENS, LLM_COST_PROMPT, LLM_COST_COMPLETION, LLM_COST_TOTAL,
    TOOL_NAME, GEN_AI_TOOL_NAME,
})

#: OpenInference span kinds, upper case as on the wire.
SPAN_KINDS: Final = (
    "LLM", "CHAIN", "TOOL", "AGENT", "RETRIEVER", "EMBEDDING", "RERANKER", "GUARDRAIL",
    "EVALUATOR", "PROMPT", "UNKNOWN",
)
