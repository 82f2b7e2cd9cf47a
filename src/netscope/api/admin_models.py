"""What the admin endpoints accept and answer, as typed models, and how their calls chain.

Why typed: the OpenAPI document is a contract that tools check the service against
(tests/security/test_api_schemathesis.py). An answer typed ``dict[str, Any]`` promises
nothing, so a wrong field would go unnoticed; these models make every field checkable.
The links tell a stateful tester (and a reader) which call follows which: a breaker action
names its upstream, which the next action on that breaker and the breaker list take.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from netscope.api.auth import Refusal
from netscope.resilience.breaker import BreakerState


class ThrottleRequest(BaseModel):
    # Strict: JSON ``false`` must not read as 0 (a pause), nor ``"5"`` as 5; finite only.
    rate_per_s: float | None = Field(
        description="Messages per second to ingest; 0 pauses ingest; null lifts the limit.",
        ge=0,
        strict=True,
        allow_inf_nan=False,
    )


class ThrottleState(BaseModel):
    ingest_rate_per_s: float | None = Field(
        description="The ingest rate limit now in force; null: unlimited."
    )


class BreakerSnapshot(BaseModel):
    """One breaker as ``CircuitBreaker.snapshot()`` describes it (times: monotonic s)."""

    model_config = ConfigDict(extra="allow")

    name: str
    state: BreakerState
    generation: int
    failure_rate: float
    slow_call_rate: float
    calls: int
    failed_calls: int
    slow_calls: int
    minimum_calls: int
    entered_at: float
    opened_at: float | None
    next_transition_at: float | None
    retry_after_s: float | None
    current_wait_in_open_s: float
    consecutive_reopens: int
    half_open_probes_in_flight: int
    half_open_probes_recorded: int
    half_open_probes_permitted: int


class BreakerChanged(BaseModel):
    upstream: str
    state: BreakerState


_ACTION_REF = "#/paths/~1admin~1breakers~1{upstream}~1{action}/post"
_LIST_REF = "#/paths/~1admin~1breakers/get"

BREAKER_ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "links": {
            "ActOnTheSameBreaker": {
                "operationRef": _ACTION_REF,
                "parameters": {"upstream": "$response.body#/upstream"},
            },
            "ListBreakers": {"operationRef": _LIST_REF},
        }
    },
    404: {"model": Refusal, "description": "No upstream of that name is configured."},
}

THROTTLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"links": {"Status": {"operationRef": "#/paths/~1api~1status/get"}}},
    400: {"model": Refusal, "description": "The body is not JSON."},
}
