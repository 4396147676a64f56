"""FlowOps: durable, budget-safe LLM workflows as plain Python scripts.

The SDK a workflow script imports. It works without Django configured; the parts that
need the database (the runner, the journal) set Django up lazily.
"""

from flowops._runtime import activity, now, random, uuid
from flowops._steps import Pipeline, Step, StepConfig, step
from flowops.domain.models import PipelineContext, PipelineResult, StepResult
from flowops.exceptions import (
    FlowOpsError,
    InputValidationError,
    NonDeterminismError,
    PipelineDefinitionError,
    RunCancelled,
    RunHalted,
    RunPaused,
    RunStop,
    ScriptError,
    StepFailed,
    StepTimeout,
    UserError,
)
from flowops.runner import Flujo
from flowops.state import SQLiteBackend
from flowops.telemetry import init_telemetry
from flowops.usage import UsageLimits

__all__ = [
    "FlowOpsError",
    "Flujo",
    "InputValidationError",
    "NonDeterminismError",
    "Pipeline",
    "PipelineContext",
    "PipelineDefinitionError",
    "PipelineResult",
    "RunCancelled",
    "RunHalted",
    "RunPaused",
    "RunStop",
    "SQLiteBackend",
    "ScriptError",
    "Step",
    "StepConfig",
    "StepFailed",
    "StepResult",
    "StepTimeout",
    "UsageLimits",
    "UserError",
    "activity",
    "init_telemetry",
    "now",
    "random",
    "step",
    "uuid",
]
