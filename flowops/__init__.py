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
    SlackError,
    StepFailed,
    StepTimeout,
    UserError,
)
from flowops.runner import Flujo
from flowops.state import SQLiteBackend
from flowops.telemetry import init_telemetry
from flowops.triggers import trigger
from flowops.usage import UsageLimits

_LAZY = {"ai": "flowops.ai", "make_agent": "flowops.ai", "make_agent_async": "flowops.ai",
         "memory": "flowops.memory", "slack": "flowops.slack", "start_run": "flowops.runs"}


def __getattr__(name: str):
    # The AI layer loads tokenizers and price tables, memory needs Django: only when a
    # script asks for them.
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        return module if name in ("ai", "memory", "slack") else getattr(module, name)
    raise AttributeError(f"module 'flowops' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


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
    "SlackError",
    "Step",
    "StepConfig",
    "StepFailed",
    "StepResult",
    "StepTimeout",
    "UsageLimits",
    "UserError",
    "activity",
    "init_telemetry",
    "make_agent",
    "make_agent_async",
    "now",
    "random",
    "start_run",
    "step",
    "trigger",
    "uuid",
]
