"""Threadline: sessions and users for LLM traces.

The SDK face — add a session and user id to everything traced in a block or a function, and send
the traces to a Threadline server::

    import threadline

    tracer_provider = threadline.register(project_name="support-bot")
    with threadline.using_session("conv-42"), threadline.using_user("alice"):
        ...

Only the base dependencies (OpenTelemetry API, SDK and OTLP exporters) are needed to import this
package; the server lives in ``threadline.server`` (the ``server`` extra).
"""

from __future__ import annotations

from importlib import metadata as _metadata

from threadline.sdk import (
    ContextAttributesSpanProcessor,
    ThreadPoolExecutor,
    register,
    using_attributes,
    using_metadata,
    using_prompt_template,
    using_session,
    using_tags,
    using_user,
)

try:
    __version__: str = _metadata.version("threadline")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "ContextAttributesSpanProcessor",
    "ThreadPoolExecutor",
    "__version__",
    "register",
    "using_attributes",
    "using_metadata",
    "using_prompt_template",
    "using_session",
    "using_tags",
    "using_user",
]
