"""What the UI shows of evaluations: score columns, where a conversation breaks and the score trends.

Columns and trends are coloured by the annotation's effective config
(:func:`threadline.server.evals.configs.effective_configs`: the project's stored config, else the
direction and labels its evaluator declares). The breakdown is built from
:func:`threadline.server.query.annotations.first_broken_turn` and
:func:`threadline.server.query.annotations.turn_scores` (the same functions as the REST
``/sessions/{id}/breakdown``), for the page and for its live fragment alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from threadline.server.evals.configs import effective_configs
from threadline.server.evals.scales import AnnotationConfig, majority_label
from threadline.server.model import AnnotationSummary
from threadline.server.query.annotations import first_broken_turn, turn_scores
from threadline.server.query.projects import project_id
from threadline.server.web.ui.charts import Sparkline, sparklines
from threadline.server.web.ui.render import score


@dataclass(frozen=True, slots=True)
class EvalCell:
    """One table cell of an evaluation column: its text, its colour (``good``/``bad``/``neutral``) and tooltip."""

    text: str
    polarity: str
    title: str


@dataclass(frozen=True, slots=True)
class EvalColumn:
    """An evaluation column of the sessions or users table: an annotation name and how to show it."""

    name: str
    config: AnnotationConfig | None = None

    @property
    def title(self) -> str:
        """The header's tooltip: the name, its description and which way is better."""
        parts = [f"Evaluation {self.name}"]
        if self.config is not None:
            if self.config.description:
                parts.append(self.config.description)
            if self.config.kind != "freeform":
                parts.append("higher is better" if self.config.direction == "higher_is_better"
                             else "lower is better")
            bad = [s.label for s in self.config.labels if s.polarity == "bad"]
            if bad:
                parts.append("bad: " + ", ".join(bad))
        return " · ".join(parts)

    def cell(self, summary: AnnotationSummary | None) -> EvalCell:
        """The majority label coloured good/bad (mean score and counts on hover), else the mean score."""
        if summary is None:
            return EvalCell("", "", "")
        top = majority_label(summary.labels)
        continuous = self.config is not None and self.config.kind == "continuous"
        if top is not None and not continuous:
            text = top
        elif summary.mean_score is not None:
            text = score(summary.mean_score)
        else:
            text = top or str(summary.count)
        polarity = self.config.verdict(summary.labels, summary.mean_score) if self.config is not None else "neutral"
        tip = [f"{self.name}: {summary.count} annotation{'s' if summary.count != 1 else ''}"]
        if summary.labels:
            tip.append(", ".join(f"{label} ×{n}" for label, n in
                                 sorted(summary.labels.items(), key=lambda item: (-item[1], item[0]))))
        if summary.mean_score is not None:
            tip.append(f"mean score {score(summary.mean_score)}")
        if polarity != "neutral":
            tip.append(polarity)
        return EvalCell(text, polarity, " · ".join(tip))


def evaluation_columns(conn: Connection, project: str, names: Sequence[str]) -> list[EvalColumn]:
    """One column per annotation name (in the given order) with its effective config."""
    configs = effective_configs(conn, project_id(conn, project), names) if names else {}
    return [EvalColumn(name, configs.get(name)) for name in names]


@dataclass(frozen=True, slots=True)
class Breakdown:
    """The first broken turn (if any) and one score sparkline per annotation name."""

    trace_id: str
    turn: int  # 1-based number of the broken turn, 0 when no turn is broken
    reason: str
    trends: list[Sparkline]


def breakdown(conn: Connection, project: str, session_id: str) -> Breakdown:
    """Where the conversation ``session_id`` breaks and its per-turn score trends."""
    scores = turn_scores(conn, project, session_id)
    broken = first_broken_turn(conn, project, session_id)
    turn = 0
    if broken is not None:
        turn = next((s.index + 1 for s in scores if s.trace_id == broken.trace_id), 0)
    names = sorted({name for s in scores for name in s.annotations})
    configs = effective_configs(conn, project_id(conn, project), names) if names else {}
    return Breakdown(trace_id=broken.trace_id if broken else "", turn=turn, reason=broken.reason if broken else "",
                     trends=sparklines(scores, configs))
