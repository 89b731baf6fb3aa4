"""LLM-as-judge templates: a question, a rails set of labels, and how each label scores.

A template judges a whole session, each turn, or both. Turn prompts show the conversation so far
(the earlier turns, oldest dropped first to fit the budget) and then the turn to judge; session
prompts show the conversation. The judge answers with JSON ``{"label": …, "explanation": …}``
where the label is one of the rails; anything else is a failed judgement (retried).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from threadline.server.evals.scales import Direction

SYSTEM_PROMPT = (
    "You are a careful evaluator of conversations between a user and an AI assistant. "
    "Read the material and answer only with a JSON object "
    '{"label": "<one of the allowed labels>", "explanation": "<one or two sentences>"}.'
)


@dataclass(frozen=True, slots=True)
class JudgeTemplate:
    """An LLM-as-judge evaluator definition.

    ``scores`` maps each rail label to the annotation score (1.0 = the property named by the
    evaluator holds). ``bad_label`` is the label meaning "this went wrong" and ``good_label`` its
    opposite (used when a session verdict is derived from its turns). ``direction`` says whether a
    higher score is better (``goal_completion``) or worse (``user_frustration``).
    """

    name: str
    description: str
    rails: tuple[str, ...]
    scores: dict[str, float]
    good_label: str
    bad_label: str
    direction: Direction
    session_question: str | None = None
    turn_question: str | None = None
    include_tools: bool = False
    only_turns_with_tools: bool = False
    explanation: bool = True
    label_help: dict[str, str] = field(default_factory=dict)

    def session_prompt(self, conversation: str) -> str:
        """The user message asking for a verdict on the whole conversation."""
        assert self.session_question is not None
        return "\n".join([
            self.session_question, "", self._answer_format(), "", "<conversation>", conversation, "</conversation>",
        ])

    def turn_prompt(self, earlier: str, turn: str) -> str:
        """The user message asking for a verdict on one turn, with the conversation so far as context."""
        assert self.turn_question is not None
        return "\n".join([
            self.turn_question, "", self._answer_format(), "",
            "<conversation_so_far>", earlier or "(this is the first turn)", "</conversation_so_far>", "",
            "<turn_to_judge>", turn, "</turn_to_judge>",
        ])

    def _answer_format(self) -> str:
        lines = [f"Allowed labels: {', '.join(self.rails)}."]
        lines += [f"- {label}: {text}" for label, text in self.label_help.items()]
        lines.append('Answer with JSON only: {"label": "...", "explanation": "..."}'
                     if self.explanation else 'Answer with JSON only: {"label": "..."}')
        return "\n".join(lines)


class UnparseableVerdict(ValueError):
    """The judge's answer names none (or several) of the allowed labels."""


def parse_verdict(text: str, rails: tuple[str, ...]) -> tuple[str, str | None]:
    """``(label, explanation)`` from a judge answer: JSON first, else exactly one rail word."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match:
        try:
            data = json.loads(match.group(0))
        except ValueError:
            data = None
        if isinstance(data, dict):
            label = str(data.get("label", "")).strip().lower()
            if label in rails:
                explanation = data.get("explanation")
                return label, str(explanation) if explanation is not None else None
    lowered = text.lower()
    found = [rail for rail in rails if re.search(rf"(?<![\w-]){re.escape(rail)}(?![\w-])", lowered)]
    if len(found) == 1:
        return found[0], text.strip()[:1000] or None
    raise UnparseableVerdict(f"the judge answered {text[:200]!r}, not one of {', '.join(rails)}")


USER_FRUSTRATION = JudgeTemplate(
    name="user_frustration",
    description="Is the user frustrated? Judged per session and per turn (with the conversation so far).",
    rails=("frustrated", "ok"), scores={"frustrated": 1.0, "ok": 0.0}, good_label="ok", bad_label="frustrated",
    direction="lower_is_better",
    session_question="Does the user become frustrated, annoyed or impatient with the assistant at any point of "
    "this conversation (repeating themselves, complaining, giving up, angry wording)?",
    turn_question="Is the user frustrated, annoyed or impatient in their message of the turn to judge? Use the "
    "conversation so far to notice repetition or escalating complaints.",
    label_help={"frustrated": "the user shows frustration", "ok": "no sign of frustration"},
)

GOAL_COMPLETION = JudgeTemplate(
    name="goal_completion",
    description="Did the conversation achieve what the user came for? Judged per session.",
    rails=("completed", "not_completed"), scores={"completed": 1.0, "not_completed": 0.0},
    good_label="completed", bad_label="not_completed", direction="higher_is_better",
    session_question="What was the user's goal in this conversation, and did the assistant fully achieve it "
    "by the end?",
    label_help={"completed": "the goal was achieved", "not_completed": "the goal was not (fully) achieved"},
)

HELPFULNESS = JudgeTemplate(
    name="helpfulness",
    description="Is the assistant's reply helpful for the user's message? Judged per turn.",
    rails=("helpful", "unhelpful"), scores={"helpful": 1.0, "unhelpful": 0.0},
    good_label="helpful", bad_label="unhelpful", direction="higher_is_better",
    turn_question="Is the assistant's reply in the turn to judge helpful: does it address the user's message "
    "directly and usefully?",
)

CORRECTNESS = JudgeTemplate(
    name="correctness",
    description="Is the assistant's reply factually and logically correct? Judged per turn.",
    rails=("correct", "incorrect"), scores={"correct": 1.0, "incorrect": 0.0},
    good_label="correct", bad_label="incorrect", direction="higher_is_better",
    turn_question="Is the assistant's reply in the turn to judge correct (facts, reasoning, consistency with "
    "the conversation and with tool results)?",
    include_tools=True,
)

TOOL_CALL_CORRECTNESS = JudgeTemplate(
    name="tool_call_correctness",
    description="Were the right tools called with the right arguments? Judged per turn that calls tools.",
    rails=("correct", "incorrect"), scores={"correct": 1.0, "incorrect": 0.0},
    good_label="correct", bad_label="incorrect", direction="higher_is_better",
    turn_question="Look at the tool calls of the turn to judge. Were the right tools chosen, with arguments "
    "that match the user's request, and were their results used properly?",
    include_tools=True, only_turns_with_tools=True,
)

TEMPLATES: dict[str, JudgeTemplate] = {
    t.name: t for t in (USER_FRUSTRATION, GOAL_COMPLETION, HELPFULNESS, CORRECTNESS, TOOL_CALL_CORRECTNESS)
}
