"""The Threadline SDK: context helpers, the context-stamping span processor and ``register()``.

Everything here needs only the base dependencies (the OpenTelemetry API, SDK and OTLP exporters)
and never imports ``threadline.server``.
"""

from __future__ import annotations

from threadline.sdk.context import (
    using_attributes,
    using_metadata,
    using_prompt_template,
    using_session,
    using_tags,
    using_user,
)
from threadline.sdk.executor import ThreadPoolExecutor
from threadline.sdk.processor import ContextAttributesSpanProcessor
from threadline.sdk.setup import register

__all__ = [
    "ContextAttributesSpanProcessor",
    "ThreadPoolExecutor",
    "register",
    "using_attributes",
    "using_metadata",
    "using_prompt_template",
    "using_session",
    "using_tags",
    "using_user",
]
