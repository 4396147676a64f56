"""The typed run context and the runner's results (the seed's ``flujo.domain.models``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PipelineContext(BaseModel):
    """Shared, typed state of one run. Subclass it and pass ``context_model=``.

    Steps that take a ``context`` parameter may change it; each change is checkpointed
    with the step. Parallel and map branches work on copies that are merged field by
    field at the join (CONTRACTS.md §3).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    initial_prompt: str | None = None
    """The run's input, when it is text."""
    scratchpad: dict[str, Any] = Field(default_factory=dict)
    """Free-form notes steps leave for each other."""


class StepResult(BaseModel):
    """One top-level step of a finished run, as ``result.step_history`` lists it."""

    name: str
    key: str
    kind: str
    status: str
    output: Any = None
    success: bool = False
    attempts: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    token_counts: int = 0
    cache_hit: bool = False
    feedback: str | None = None


class PipelineResult(BaseModel):
    """What ``Flujo.run`` returns."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_id: str
    status: str
    output: Any = None
    step_history: list[StepResult] = Field(default_factory=list)
    final_pipeline_context: Any = None
    total_cost_usd: float = 0.0
    total_tokens: int = 0
