"""Geometry of the inline SVG charts (built server-side; no script, no inline style).

The templates draw what these functions compute: the sessions/tokens chart of the sessions
page, the timeline strip of a conversation and the latency bars of the trace view.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from threadline.server.evals.scales import AnnotationConfig, majority_label
from threadline.server.model import AnnotationSummary
from threadline.server.query.annotations import BAD_LABELS, TurnScores
from threadline.server.query.overview import TimeSeries, TurnMark
from threadline.server.web.ui.render import clock, compact, duration, score, timestamp

CHART_WIDTH, CHART_HEIGHT = 600, 110
STRIP_WIDTH, STRIP_HEIGHT = 1000, 28


@dataclass(frozen=True, slots=True)
class Bar:
    """One rectangle (SVG user units) and its tooltip."""

    x: float
    y: float
    width: float
    height: float
    title: str
    css: str = ""
    href: str = ""
    turn: int = 0


@dataclass(frozen=True, slots=True)
class Chart:
    """Session bars plus a tokens line over the same buckets."""

    width: int
    height: int
    bars: list[Bar]
    line: str  # SVG polyline points
    max_sessions: int
    max_tokens: int
    start_label: str
    end_label: str
    total_sessions: int
    total_tokens: int
    #: The width of one bucket; a bar's link covers its whole slot, full height (an empty bucket too).
    slot: float = 0.0


def activity_chart(series: TimeSeries | None,
                   narrow: Callable[[datetime, datetime], str] | None = None) -> Chart | None:
    """The sessions-per-bucket bars and a tokens-per-bucket line; ``None`` without data.

    ``narrow(start, end)`` is the link of a bar: the page for that bucket's time window.
    """
    if series is None or not series.buckets:
        return None
    count = len(series.buckets)
    slot = CHART_WIDTH / count
    max_sessions = max(b.sessions for b in series.buckets) or 1
    max_tokens = max(b.tokens for b in series.buckets) or 1
    usable = CHART_HEIGHT - 6
    bars: list[Bar] = []
    points: list[str] = []
    for i, bucket in enumerate(series.buckets):
        height = usable * bucket.sessions / max_sessions
        tip = (f"{timestamp(bucket.start)} UTC — {bucket.sessions} session{'s' if bucket.sessions != 1 else ''}, "
               f"{compact(bucket.tokens)} tokens")
        end = bucket.start + timedelta(seconds=series.bucket_seconds)
        bars.append(Bar(x=round(i * slot + slot * 0.12, 2), y=round(CHART_HEIGHT - height, 2),
                        width=round(slot * 0.76, 2), height=round(height, 2), title=tip,
                        href=narrow(bucket.start, end) if narrow is not None else ""))
        y = CHART_HEIGHT - 2 - (usable - 2) * bucket.tokens / max_tokens
        points.append(f"{round(i * slot + slot / 2, 2)},{round(y, 2)}")
    return Chart(
        width=CHART_WIDTH, height=CHART_HEIGHT, bars=bars, line=" ".join(points),
        max_sessions=max(b.sessions for b in series.buckets), max_tokens=max(b.tokens for b in series.buckets),
        start_label=timestamp(series.start), end_label=timestamp(series.end),
        total_sessions=sum(b.sessions for b in series.buckets), total_tokens=sum(b.tokens for b in series.buckets),
        slot=round(slot, 2),
    )


def timeline_strip(marks: list[TurnMark], loaded: set[str], trace_href: Callable[[str], str]) -> list[Bar]:
    """One bar per turn, placed at its start time so gaps show; height grows with latency.

    Failed turns are ``error``; turns slower than twice the session's median (and above one
    second) are ``slow``. A bar links to the turn on the page when it is loaded, else to its trace
    (the page's script retargets it once the turn is loaded).
    """
    if not marks:
        return []
    first = marks[0].start.timestamp()
    last_end = max(m.start.timestamp() + m.latency_ms / 1000 for m in marks)
    span = max(last_end - first, 1e-3)
    latencies = sorted(m.latency_ms for m in marks)
    median = latencies[len(latencies) // 2]
    slowest = max(latencies[-1], 1.0)
    min_width = max(2.0, min(8.0, STRIP_WIDTH / (len(marks) * 2.5)))
    bars = []
    for mark in marks:
        x = (mark.start.timestamp() - first) / span * (STRIP_WIDTH - min_width)
        width = max(min_width, mark.latency_ms / 1000 / span * STRIP_WIDTH)
        height = 6 + (STRIP_HEIGHT - 6) * math.log1p(mark.latency_ms) / math.log1p(slowest)
        slow = mark.latency_ms > 2 * median and mark.latency_ms > 1000
        css = "error" if mark.error else ("slow" if slow else "ok")
        state = "failed" if mark.error else ("slow" if slow else "ok")
        tip = f"Turn {mark.index + 1} · {clock(mark.start)} UTC · {duration(mark.latency_ms)} · {state}"
        href = f"#turn-{mark.index + 1}" if mark.trace_id in loaded else trace_href(mark.trace_id)
        bars.append(Bar(x=round(x, 2), y=round(STRIP_HEIGHT - height, 2), width=round(min(width, STRIP_WIDTH - x), 2),
                        height=round(height, 2), title=tip, css=css, href=href, turn=mark.index + 1))
    return bars


SPARK_WIDTH, SPARK_HEIGHT, SPARK_PAD = 160, 28, 3
SPARK_MAX_POINTS = 200  # longer sessions: the line only, plus the broken turn's point (keeps pages small)


@dataclass(frozen=True, slots=True)
class SparkPoint:
    """One turn of a sparkline: its position, tooltip and whether it is scored or the broken turn."""

    x: float
    y: float
    title: str
    css: str
    turn: int
    score: str
    trace_id: str


@dataclass(frozen=True, slots=True)
class Sparkline:
    """The per-turn trend of one annotation's score (one point per turn, in order)."""

    name: str
    width: int
    height: int
    points: list[SparkPoint]
    line: str  # SVG polyline points through the scored turns
    low: str
    high: str


def point_polarity(note: AnnotationSummary, config: AnnotationConfig | None) -> str:
    """``bad``, ``good`` or ``neutral`` for one turn's summary of one annotation name.

    By the name's config (its labels' polarity, else its direction and range); without a config a
    point is bad only when its most frequent label is a failure label (:data:`BAD_LABELS`).
    """
    if config is not None:
        return config.verdict(note.labels, note.mean_score)
    return "bad" if majority_label(note.labels) in BAD_LABELS else "neutral"


def sparklines(turns: list[TurnScores], configs: Mapping[str, AnnotationConfig] | None = None) -> list[Sparkline]:
    """One sparkline per annotation name with a score on some turn; ``[]`` when no turn is scored.

    The y axis spans the scores' own range (at least 0..1 when they fit in it) so a flat series
    stays readable. Turns without a score of that name are drawn as hollow points on the baseline.
    A point is ``bad`` (red) only where that turn's score of that name is bad by the name's config
    (:func:`point_polarity`), so a turn that broke the conversation on one score is not red on the
    others; the broken turn (:func:`threadline.server.query.annotations.first_broken_turn`) is
    ``broken`` (drawn larger). Over :data:`SPARK_MAX_POINTS` turns only the line and the broken
    turn's point are kept.
    """
    configs = configs or {}
    names = sorted({name for turn in turns for name, note in turn.annotations.items() if note.mean_score is not None})
    broken = next((turn.trace_id for turn in turns if turn.broken), None)
    lines: list[Sparkline] = []
    step = (SPARK_WIDTH - 2 * SPARK_PAD) / max(len(turns) - 1, 1)
    for name in names:
        config = configs.get(name)
        values = [note.mean_score for turn in turns if (note := turn.annotations.get(name)) is not None
                  and note.mean_score is not None]
        low, high = min(values), max(values)
        if low >= 0 and high <= 1:
            low, high = 0.0, 1.0
        spread = (high - low) or 1.0
        points: list[SparkPoint] = []
        for turn in turns:
            note = turn.annotations.get(name)
            value = note.mean_score if note is not None else None
            x = round(SPARK_PAD + turn.index * step if len(turns) > 1 else SPARK_WIDTH / 2, 2)
            if note is None or value is None:
                y, css, text = float(SPARK_HEIGHT - SPARK_PAD), "none", "no score"
            else:
                y = SPARK_HEIGHT - SPARK_PAD - (SPARK_HEIGHT - 2 * SPARK_PAD) * (value - low) / spread
                polarity = point_polarity(note, config)
                top = majority_label(note.labels)
                css = "scored" + (" bad" if polarity == "bad" else "")
                text = score(value) + (f" ({top})" if top else "") + (f", {polarity}" if polarity != "neutral" else "")
            if turn.trace_id == broken:
                css += " broken"
            tip = f"Turn {turn.index + 1} · {name}: {text}" + (" · conversation breaks here" if
                                                              turn.trace_id == broken else "")
            points.append(SparkPoint(x=x, y=round(y, 2), title=tip, css=css, turn=turn.index + 1,
                                     score="" if value is None else score(value), trace_id=turn.trace_id))
        line = " ".join(f"{p.x},{p.y}" for p in points if p.score)
        if len(points) > SPARK_MAX_POINTS:
            points = [p for p in points if "broken" in p.css]
        lines.append(Sparkline(name=name, width=SPARK_WIDTH, height=SPARK_HEIGHT, points=points, line=line,
                               low=score(low), high=score(high)))
    return lines
