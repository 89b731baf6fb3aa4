"""A client for any OpenAI-compatible chat-completions endpoint, used as the LLM judge.

Bounded concurrency (a semaphore), a timeout per request, retries with exponential backoff (and
``Retry-After``) on transport errors, timeouts, 429, 5xx and unusable answers, and accounting of
the judge's own tokens and cost. A request that still fails raises :class:`JudgeError`; callers
report it, they never drop it silently.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from threadline.server.ingest.pricing import cost_usd

T = TypeVar("T")


class JudgeError(RuntimeError):
    """The judge could not give a usable answer, even after retries."""


class JudgeNotConfigured(JudgeError):
    """No judge endpoint is configured (``THREADLINE_JUDGE_BASE_URL``)."""


@dataclass(slots=True)
class JudgeUsage:
    """What the judge cost so far."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {"requests": self.requests, "retries": self.retries, "failures": self.failures,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cost_usd": round(self.cost_usd, 8)}


@dataclass(frozen=True, slots=True)
class JudgeReply:
    """One successful, parsed judge answer and what it cost (all attempts included)."""

    value: Any
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    attempts: int


class _Retryable(Exception):
    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class Judge:
    """An OpenAI-compatible judge with concurrency limit, timeout, retries and usage accounting."""

    def __init__(
        self, base_url: str | None, model: str, api_key: str | None = None, *, concurrency: int = 4,
        timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0, temperature: float = 0.0,
    ) -> None:
        if not base_url:
            raise JudgeNotConfigured(
                "no LLM judge configured: set THREADLINE_JUDGE_BASE_URL (an OpenAI-compatible /v1 URL), "
                "THREADLINE_JUDGE_MODEL and THREADLINE_JUDGE_API_KEY")
        self.model = model
        self.max_retries = max_retries
        self.backoff = backoff
        self.temperature = temperature
        self.usage = JudgeUsage()
        self._semaphore = asyncio.Semaphore(concurrency)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/", headers=headers, timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency),
        )

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    async def judge(self, system: str, prompt: str, parse: Callable[[str], T]) -> JudgeReply:
        """Ask the judge and parse its answer with ``parse`` (a ``ValueError`` there is retried)."""
        prompt_tokens = completion_tokens = 0
        cost = 0.0
        last_error = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.usage.retries += 1
            try:
                async with self._semaphore:
                    text, used_prompt, used_completion = await self._request(system, prompt)
                prompt_tokens += used_prompt
                completion_tokens += used_completion
                step_cost = cost_usd(self.model, used_prompt, used_completion)
                cost += step_cost
                self._account(used_prompt, used_completion, step_cost)
                try:
                    value = parse(text)
                except ValueError as exc:
                    raise _Retryable(f"unusable answer: {exc}") from exc
                return JudgeReply(value, text, prompt_tokens, completion_tokens, cost, attempt + 1)
            except _Retryable as exc:
                last_error = str(exc)
                wait = exc.wait
            except JudgeError:
                self.usage.failures += 1
                raise
            if attempt < self.max_retries:
                delay = wait if wait is not None else self.backoff * (2 ** attempt)
                await asyncio.sleep(min(delay, 60.0) * (1 + random.random() * 0.1))
        self.usage.failures += 1
        raise JudgeError(f"judge failed after {self.max_retries + 1} attempts: {last_error}")

    def _account(self, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        self.usage.requests += 1
        self.usage.prompt_tokens += prompt_tokens
        self.usage.completion_tokens += completion_tokens
        self.usage.cost_usd += cost

    async def _request(self, system: str, prompt: str) -> tuple[str, int, int]:
        body = {"model": self.model, "temperature": self.temperature,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}]}
        try:
            response = await self._client.post("chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timeout: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"connection error: {exc!r}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}: {response.text[:200]}", _retry_after(response))
        if response.status_code >= 400:
            raise JudgeError(f"judge refused the request: HTTP {response.status_code}: {response.text[:300]}")
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Retryable(f"malformed chat-completions response: {response.text[:200]!r}") from exc
        usage = data.get("usage") or {}
        return str(text), int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
