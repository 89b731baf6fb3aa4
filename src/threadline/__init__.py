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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from threadline.sdk import (  # what type checkers see; at run time, __getattr__ below
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

    __version__: str

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

#: The SDK's names, imported on first use: the server's processes import ``threadline.server``
#: (and so this package) without ever using the SDK, and the OpenTelemetry SDK it loads costs each
#: process memory (about 4 MB of a decode process's 31).
_SDK_NAMES = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    """The SDK's names and ``__version__``, loaded when first asked for."""
    if name in _SDK_NAMES:
        from threadline import sdk

        value = getattr(sdk, name)
    elif name == "__version__":
        from importlib import metadata

        try:
            value = metadata.version("threadline")
        except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
            value = "0.0.0+unknown"
    else:
        raise AttributeError(f"module 'threadline' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """What ``dir(threadline)`` shows: the names loaded on first use too."""
    return sorted({*globals(), *__all__})
