"""A ``ThreadPoolExecutor`` whose tasks run in a copy of the submitter's context.

Plain threads start with an empty context, so a ``using_session`` around ``pool.submit(...)``
would not reach the task. This executor copies the context (OpenTelemetry's included) at
``submit`` time and runs the task inside the copy.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["ThreadPoolExecutor"]

P = ParamSpec("P")
T = TypeVar("T")


class ThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """Drop-in ``concurrent.futures.ThreadPoolExecutor`` that propagates the context to each task.

    ``map`` goes through ``submit``, so it propagates the context too.
    """

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> concurrent.futures.Future[T]:
        """Schedule ``fn(*args, **kwargs)`` to run in a copy of the current context."""
        ctx = contextvars.copy_context()
        call: Callable[..., T] = ctx.run
        return super().submit(call, fn, *args, **kwargs)

    def __repr__(self) -> str:
        return f"threadline.ThreadPoolExecutor(max_workers={self._max_workers!r})"


