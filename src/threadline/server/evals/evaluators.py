"""The evaluator interface: LLM-as-judge evaluators (from templates) and code evaluators.

Every evaluator gives each session a session verdict and, when it judges turns, each applicable
turn a turn verdict. A session verdict is either judged directly (templates with a session
question) or derived from the turn verdicts: the bad label when any turn has it, the mean of the
turn scores as the score. Annotations are named after the evaluator.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from threadline.server.evals.context import estimate_tokens, render_conversation, render_turn, shorten
from threadline.server.evals.judge import Judge, JudgeNotConfigured
from threadline.server.evals.scales import AnnotationConfig, Direction, LabelSpec
from threadline.server.evals.templates import SYSTEM_PROMPT, TEMPLATES, JudgeTemplate, parse_verdict
from threadline.server.model import Turn


@dataclass(frozen=True, slots=True)
class EvalResult:
    """One verdict: what becomes an annotation."""

    label: str | None
    score: float | None
    explanation: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class EvalContext:
    """What evaluators may use: the judge (LLM evaluators only) and the prompt token budget."""

    judge: Judge | None = None
    token_budget: int = 6000


class Evaluator(ABC):
    """Base class of every evaluator.

    Every evaluator declares its ``direction`` (the default: a higher score is worse, as a code
    evaluator scores its bad label 1) and its labels (:meth:`labels`, good and bad), which the UI
    uses to colour its column and its per-turn trend.
    """

    name: str
    description: str = ""
    annotator_kind: Literal["LLM", "CODE"] = "CODE"
    judges_turns: bool = True
    judges_session: bool = False
    good_label: str = "ok"
    bad_label: str = "bad"
    direction: Direction = "lower_is_better"

    def labels(self) -> tuple[LabelSpec, ...]:
        """The labels this evaluator gives, bad first, with their polarity and score."""
        bad, good = (1.0, 0.0) if self.direction == "lower_is_better" else (0.0, 1.0)
        return (LabelSpec(self.bad_label, "bad", bad), LabelSpec(self.good_label, "good", good))

    def config(self) -> AnnotationConfig:
        """The annotation config its annotations get in a project that has not configured the name."""
        return AnnotationConfig(name=self.name, kind="categorical", labels=self.labels(), direction=self.direction,
                                min_score=0.0, max_score=1.0, description=self.description, source="evaluator")

    def applies_to(self, turn: Turn) -> bool:
        """Whether ``turn`` gets a turn verdict."""
        return True

    async def evaluate_turn(self, turns: Sequence[Turn], index: int, ctx: EvalContext) -> EvalResult:
        """Verdict on ``turns[index]`` (earlier turns are context)."""
        raise NotImplementedError

    async def evaluate_session(self, turns: Sequence[Turn], ctx: EvalContext) -> EvalResult:
        """Verdict on a whole session (only when ``judges_session``)."""
        raise NotImplementedError

    def derive_session(self, verdicts: Sequence[tuple[str | None, float | None]]) -> EvalResult:
        """Session verdict from the ``(label, score)`` of its turns."""
        if not verdicts:
            return EvalResult(label="not_applicable", score=None, explanation="no turn to evaluate")
        bad = sum(1 for label, _ in verdicts if label == self.bad_label)
        scores = [s for _, s in verdicts if s is not None]
        return EvalResult(
            label=self.bad_label if bad else self.good_label,
            score=round(sum(scores) / len(scores), 6) if scores else None,
            explanation=f"{bad} of {len(verdicts)} turns {self.bad_label}",
            metadata={"derived_from_turns": len(verdicts)},
        )


class LlmEvaluator(Evaluator):
    """An LLM-as-judge evaluator defined by a :class:`JudgeTemplate`."""

    annotator_kind: Literal["LLM", "CODE"] = "LLM"

    def __init__(self, template: JudgeTemplate) -> None:
        self.template = template
        self.name = template.name
        self.description = template.description
        self.judges_turns = template.turn_question is not None
        self.judges_session = template.session_question is not None
        self.good_label, self.bad_label = template.good_label, template.bad_label
        self.direction = template.direction

    def labels(self) -> tuple[LabelSpec, ...]:
        """The template's rails with their scores; the bad label is bad, the good one good."""
        def polarity(label: str) -> Literal["good", "bad", "neutral"]:
            return "bad" if label == self.bad_label else "good" if label == self.good_label else "neutral"

        scores = self.template.scores
        return tuple(LabelSpec(label, polarity(label), scores.get(label)) for label in self.template.rails)

    def applies_to(self, turn: Turn) -> bool:
        """Templates about tool calls only judge turns that made some."""
        return bool(turn.tool_calls) or not self.template.only_turns_with_tools

    def _judge(self, ctx: EvalContext) -> Judge:
        if ctx.judge is None:
            raise JudgeNotConfigured("this evaluator needs an LLM judge (THREADLINE_JUDGE_BASE_URL)")
        return ctx.judge

    async def _ask(self, ctx: EvalContext, prompt: str, meta: dict[str, Any]) -> EvalResult:
        judge = self._judge(ctx)
        reply = await judge.judge(SYSTEM_PROMPT, prompt, lambda text: parse_verdict(text, self.template.rails))
        label, explanation = reply.value
        meta.update({"judge_model": judge.model, "judge_prompt_tokens": reply.prompt_tokens,
                     "judge_completion_tokens": reply.completion_tokens,
                     "judge_cost_usd": round(reply.cost_usd, 8), "judge_attempts": reply.attempts})
        return EvalResult(label=label, score=self.template.scores.get(label), explanation=explanation, metadata=meta)

    async def evaluate_turn(self, turns: Sequence[Turn], index: int, ctx: EvalContext) -> EvalResult:
        """Judge one turn with the conversation so far, oldest turns dropped first to fit the budget."""
        tools = self.template.include_tools
        overhead = estimate_tokens(SYSTEM_PROMPT + self.template.turn_prompt("", "")) + 16
        room = max(ctx.token_budget - overhead, 64)
        turn_text, cut = shorten(render_turn(turns[index], number=index + 1, include_tools=tools), room // 2)
        earlier = render_conversation(turns[:index], room - estimate_tokens(turn_text), include_tools=tools)
        meta = {"omitted_turns": earlier.omitted_turns, "shortened_messages": earlier.shortened_messages + cut}
        return await self._ask(ctx, self.template.turn_prompt(earlier.text, turn_text), meta)

    async def evaluate_session(self, turns: Sequence[Turn], ctx: EvalContext) -> EvalResult:
        """Judge the conversation, oldest turns dropped first to fit the budget."""
        overhead = estimate_tokens(SYSTEM_PROMPT + self.template.session_prompt("")) + 16
        rendered = render_conversation(turns, max(ctx.token_budget - overhead, 64),
                                       include_tools=self.template.include_tools)
        meta = {"omitted_turns": rendered.omitted_turns, "shortened_messages": rendered.shortened_messages,
                "turns": len(turns)}
        return await self._ask(ctx, self.template.session_prompt(rendered.text), meta)


TurnFunction = Callable[[Turn], "EvalResult | str | bool | None"]


class CodeEvaluator(Evaluator):
    """An evaluator from a plain Python function of one turn.

    The function returns an :class:`EvalResult`, a label (``str``), a ``bool`` (``True`` = the bad
    label, e.g. "this turn is an error") or ``None`` (the turn is not applicable). The bad label
    scores 1 and the good one 0, so the direction is ``lower_is_better`` unless given (a function
    that returns its own scores may say ``direction="higher_is_better"``).
    """

    annotator_kind: Literal["LLM", "CODE"] = "CODE"

    def __init__(self, name: str, function: TurnFunction, *, good_label: str = "ok", bad_label: str = "bad",
                 description: str = "", direction: Direction = "lower_is_better") -> None:
        self.name, self.function = name, function
        self.good_label, self.bad_label = good_label, bad_label
        self.direction = direction
        self.description = description or (function.__doc__ or "").strip().split("\n")[0]

    def applies_to(self, turn: Turn) -> bool:
        """Every turn; the function may still answer ``None``."""
        return True

    async def evaluate_turn(self, turns: Sequence[Turn], index: int, ctx: EvalContext) -> EvalResult:
        """Call the function on the turn."""
        value = self.function(turns[index])
        if isinstance(value, EvalResult):
            return value
        if value is None:
            return EvalResult(label="not_applicable", score=None)
        bad = value if isinstance(value, bool) else str(value) == self.bad_label
        label = (self.bad_label if value else self.good_label) if isinstance(value, bool) else str(value)
        return EvalResult(label=label, score=float(bad == (self.direction == "lower_is_better")))


LATENCY_THRESHOLD_MS = 10_000.0
_REFUSAL = re.compile(
    r"\b(i('m| am) (sorry|afraid),? but|i can(no|')t (help|assist|do|provide)|i('m| am) (not able|unable) to|"
    r"as an ai\b|i won't be able to|i must decline)", re.IGNORECASE)


def _errors(turn: Turn) -> EvalResult:
    """The turn failed (a span of its trace has status ERROR)."""
    failed = turn.status == "error"
    return EvalResult(label="error" if failed else "ok", score=1.0 if failed else 0.0,
                      explanation=turn.error if failed else None)


def _latency(turn: Turn) -> EvalResult:
    """The turn took longer than LATENCY_THRESHOLD_MS."""
    slow = turn.latency_ms > LATENCY_THRESHOLD_MS
    return EvalResult(label="slow" if slow else "ok", score=1.0 if slow else 0.0,
                      explanation=f"{turn.latency_ms:.0f} ms (threshold {LATENCY_THRESHOLD_MS:.0f} ms)",
                      metadata={"latency_ms": turn.latency_ms, "threshold_ms": LATENCY_THRESHOLD_MS})


def _refusals(turn: Turn) -> EvalResult:
    """The assistant refused to answer."""
    match = _REFUSAL.search(turn.output or "")
    return EvalResult(label="refused" if match else "ok", score=1.0 if match else 0.0,
                      explanation=f"matched {match.group(0)!r}" if match else None)


BUILTIN: dict[str, Evaluator] = {
    **{name: LlmEvaluator(template) for name, template in TEMPLATES.items()},
    "errors": CodeEvaluator("errors", _errors, bad_label="error"),
    "latency": CodeEvaluator("latency", _latency, bad_label="slow"),
    "refusals": CodeEvaluator("refusals", _refusals, bad_label="refused"),
}


def get_evaluator(name: str, *, builtin_only: bool = False) -> Evaluator:
    """A built-in evaluator by name, or ``package.module:attribute`` (an Evaluator or a turn function).

    ``builtin_only``: refuse ``module:attribute`` names — anything reachable over the network (API,
    project settings) must not make the server import and call arbitrary code.
    """
    if name in BUILTIN:
        return BUILTIN[name]
    if builtin_only:
        raise KeyError(f"unknown evaluator {name!r}; available here: {', '.join(sorted(BUILTIN))} "
                       "(your own package.module:attribute evaluators run with `threadline eval run`)")
    if ":" not in name:
        raise KeyError(f"unknown evaluator {name!r}; built-in: {', '.join(sorted(BUILTIN))}, "
                       "or package.module:attribute for your own")
    module_name, attribute = name.split(":", 1)
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise KeyError(f"cannot load evaluator {name!r}: {exc}") from exc
    if isinstance(target, Evaluator):
        return target
    if callable(target):
        return CodeEvaluator(attribute, target)
    raise KeyError(f"{name!r} is neither an Evaluator nor a function of a turn")
