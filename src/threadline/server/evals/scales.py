"""What a score or a label means: directions, label polarities and annotation configs.

The one home of these lists: an evaluator (:mod:`.evaluators`) declares its direction and its
labels with this vocabulary, a project's annotation configs (``annotation_configs`` table) use
it, and the UI colours a cell or a sparkline point from :meth:`AnnotationConfig.verdict`.
Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

Direction = Literal["higher_is_better", "lower_is_better"]
#: Whether a higher score is better or worse.
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)

ConfigKind = Literal["categorical", "continuous", "freeform"]
#: categorical: one of its labels (and their scores); continuous: a score in [min, max]; freeform: anything.
CONFIG_KINDS: tuple[ConfigKind, ...] = get_args(ConfigKind)

Polarity = Literal["good", "bad", "neutral"]
#: What a label (or a score) says about the thing judged.
POLARITIES: tuple[Polarity, ...] = get_args(Polarity)


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """One label of a categorical scale: whether it is good or bad news, and its score."""

    label: str
    polarity: Polarity = "neutral"
    score: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {"label": self.label, "polarity": self.polarity, "score": self.score}


@dataclass(frozen=True, slots=True)
class AnnotationConfig:
    """How an annotation name is scored and shown: its kind, labels, direction and range.

    ``source`` is ``project`` for a stored config and ``evaluator`` for the default an
    evaluator of that name declares (used when the project has none).
    """

    name: str
    kind: ConfigKind = "categorical"
    labels: tuple[LabelSpec, ...] = ()
    direction: Direction = "higher_is_better"
    min_score: float | None = None
    max_score: float | None = None
    description: str = ""
    source: Literal["project", "evaluator"] = "project"

    def label_polarity(self, label: str | None) -> Polarity:
        """The polarity of ``label`` (``neutral`` for labels the config does not know)."""
        for spec in self.labels:
            if spec.label == label:
                return spec.polarity
        return "neutral"

    def score_polarity(self, score: float | None) -> Polarity:
        """A score is good or bad by which side of the middle of the range it is on, per the direction.

        The range is ``[min_score, max_score]`` (0–1 when unset); a score in the exact middle, and
        any score of a freeform config, is neutral.
        """
        if score is None or self.kind == "freeform" or not math.isfinite(score):
            return "neutral"
        low = 0.0 if self.min_score is None else self.min_score
        high = 1.0 if self.max_score is None else self.max_score
        middle = (low + high) / 2
        if score == middle:
            return "neutral"
        above = score > middle
        return "good" if above == (self.direction == "higher_is_better") else "bad"

    def verdict(self, labels: Mapping[str, int], mean_score: float | None) -> Polarity:
        """Good, bad or neutral for a summary: its most frequent label's polarity, else its mean score's."""
        top = majority_label(labels)
        if top is not None:
            polarity = self.label_polarity(top)
            if polarity != "neutral" or self.kind != "continuous":
                return polarity
        return self.score_polarity(mean_score)

    def problem(self, label: str | None, score: float | None) -> str | None:
        """Why an annotation with ``label`` and ``score`` does not fit this config, or ``None``."""
        if self.kind == "categorical" and self.labels and label is not None \
                and label not in {spec.label for spec in self.labels}:
            allowed = ", ".join(spec.label for spec in self.labels)
            return f"label {label!r} is not one of the labels of {self.name!r}: {allowed}"
        if self.kind == "continuous" and score is not None:
            if self.min_score is not None and score < self.min_score:
                return f"score {score} of {self.name!r} is below its minimum {self.min_score}"
            if self.max_score is not None and score > self.max_score:
                return f"score {score} of {self.name!r} is above its maximum {self.max_score}"
        return None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {"name": self.name, "kind": self.kind, "labels": [spec.as_dict() for spec in self.labels],
                "direction": self.direction, "min_score": self.min_score, "max_score": self.max_score,
                "description": self.description, "source": self.source}


def majority_label(labels: Mapping[str, int]) -> str | None:
    """The most frequent label (ties: the first by name), ``None`` when there is none."""
    if not labels:
        return None
    return min(labels.items(), key=lambda item: (-item[1], item[0]))[0]
