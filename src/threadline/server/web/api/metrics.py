"""``GET /v1/projects/{project}/metrics``: metrics grouped by session, user, model, tag or day."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from threadline.server.auth.roles import Action
from threadline.server.query.metrics import (
    DEFAULT_METRICS,
    METRICS_PARAMS,
    MetricsFilter,
    MetricsGroup,
    compute_metrics,
)
from threadline.server.web.access import allow
from threadline.server.web.api.deps import ReadConn, with_query
from threadline.server.web.api.schemas import Metrics

router = APIRouter(tags=["metrics"], dependencies=[allow(Action.READ)])

METRIC_HELP = (
    "Repeatable. agg(field) with agg in count, sum, mean, min, max, p50, p90, p95, p99 and field in tokens, "
    "prompt_tokens, completion_tokens, cost, latency (ms), errors, llm_calls, spans (per turn; per LLM call when "
    "grouped by model), turns, duration (per session), score:NAME (session annotations), turn_score:NAME (turn "
    "annotations); also count(turns), count(sessions), count(users), rate(label:NAME=LABEL), "
    "rate(turn_label:NAME=LABEL). Default: " + ", ".join(DEFAULT_METRICS)
)


@router.get("/v1/projects/{project}/metrics", summary="Metrics grouped by session, user, model, tag or day",
            response_model=Metrics)
@with_query("filters", METRICS_PARAMS, MetricsFilter.from_params)
def metrics(
    *,  # filters, without a default, follows parameters with one
    project: str,
    conn: ReadConn,
    group_by: MetricsGroup = "day",
    metric: Annotated[list[str] | None, Query(description=METRIC_HELP)] = None,
    filters: MetricsFilter,
    order_by: Annotated[str | None, Query(description="A metric to sort by (default: the first metric)")] = None,
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000, description="Number of groups")] = 50,
) -> JSONResponse:
    """``{group_by, metrics, data: [{group, values: {metric: number | null}}]}``; groups without a value of
    the sort metric come last. Example: the 10 users with the highest mean frustration last week:
    ``group_by=user&metric=mean(score:user_frustration)&start=…&limit=10``."""
    result = compute_metrics(
        conn, project, group_by, metric or list(DEFAULT_METRICS),
        filters, order_by=order_by, order=order, limit=limit)
    return JSONResponse({
        "group_by": result.group_by, "metrics": result.metrics,
        "data": [{"group": r.group, "values": r.values} for r in result.rows],
    })
