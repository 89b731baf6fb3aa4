"""The judge's view of a conversation: turns rendered as text within a token budget.

Long sessions do not fit a judge prompt. :func:`render_conversation` keeps the newest turns that
fit the budget and drops the oldest ones first, always whole: a message is never cut in the
middle silently. The text says how many turns were left out; only when a single message is larger
than the whole budget is it shortened, with an explicit marker saying how much was removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from threadline.server.model import Turn

#: Rough characters per token of English text (the judge's tokenizer is unknown).
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """A conservative token estimate of ``text``."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@dataclass(frozen=True, slots=True)
class Rendered:
    """Conversation text for a prompt, and how many turns did not fit."""

    text: str
    omitted_turns: int
    shortened_messages: int = 0


def _message(role: str, text: str | None) -> str:
    return f"{role}: {text if text else '(empty)'}"


def render_turn(turn: Turn, *, number: int, include_tools: bool) -> str:
    """One turn as ``Turn n`` + user message, tool calls (optional), assistant reply and failure."""
    lines = [f"Turn {number}", _message("User", turn.input)]
    if include_tools:
        for call in turn.tool_calls:
            lines.append(f"Tool call: {call.name}({call.arguments or ''}) -> {call.result or '(no result)'}"
                         + (" [failed]" if call.status == "error" else ""))
    lines.append(_message("Assistant", turn.output))
    if turn.status == "error":
        lines.append(f"(this turn failed: {turn.error or 'error'})")
    return "\n".join(lines)


def shorten(text: str, budget_tokens: int) -> tuple[str, bool]:
    """``text`` cut to about ``budget_tokens``, with a visible marker; ``(text, False)`` when it fits."""
    limit = max(budget_tokens, 16) * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text, False
    keep = max(limit - 80, 32)
    head, tail = text[: keep // 2], text[-(keep // 2):]
    return f"{head}\n[… {len(text) - len(head) - len(tail)} characters of this turn omitted …]\n{tail}", True


def render_conversation(
    turns: Sequence[Turn], budget_tokens: int, *, include_tools: bool = False, first_number: int = 1
) -> Rendered:
    """The newest turns of ``turns`` that fit ``budget_tokens``, oldest first, with an omission note."""
    blocks: list[str] = []
    used = 0
    shortened = 0
    for offset in range(len(turns) - 1, -1, -1):
        block = render_turn(turns[offset], number=first_number + offset, include_tools=include_tools)
        cost = estimate_tokens(block) + 1
        if used + cost > budget_tokens:
            if not blocks:  # the newest turn alone is too big: keep it, visibly shortened
                block, _ = shorten(block, budget_tokens - 24)
                blocks.append(block)
                shortened = 1
                used = budget_tokens
                offset -= 1
            omitted = offset + 1
            break
        blocks.append(block)
        used += cost
    else:
        omitted = 0
    blocks.reverse()
    if omitted:
        blocks.insert(0, f"[{omitted} earlier turn{'s' if omitted != 1 else ''} omitted to fit the judge's budget]")
    return Rendered(text="\n\n".join(blocks), omitted_turns=omitted, shortened_messages=shortened)
