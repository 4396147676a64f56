"""FlowOps exceptions.

One tree, so callers can catch exactly what they mean::

    FlowOpsError
    ├── UserError                     a mistake in a workflow definition or its input
    │   ├── PipelineDefinitionError   bad step algebra (names, combinator arguments)
    │   ├── ScriptError               a script that cannot be loaded (syntax, no pipeline)
    │   └── InputValidationError      input or context that does not fit the first step
    └── RunStop                       a run stopped at run time for a reason of its own
        ├── StepFailed                a step raised (after its retries)
        ├── RunHalted                 the budget governor halted the run
        ├── RunPaused                 the run waits for a human (approve / reject)
        ├── RunCancelled              someone cancelled the run
        ├── NonDeterminismError       a replay diverged from the run's journal
        └── StepTimeout               a step ran longer than its ``timeout_s``

``UserError`` is something the author fixes in code or input; ``RunStop`` is what happened
to one run (a provider down, a budget spent, a person said no).
"""

from __future__ import annotations


class FlowOpsError(Exception):
    """Base of every FlowOps exception."""


class UserError(FlowOpsError):
    """A mistake in a workflow definition or its input."""


class PipelineDefinitionError(UserError):
    """The step algebra was used wrongly (bad name, missing branch, bad argument)."""


class ScriptError(UserError):
    """A workflow script cannot be loaded: syntax error, missing ``pipeline`` and the like.

    ``path`` and ``line`` say where, when known.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = path or ""
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}" if where else message)


class InputValidationError(UserError):
    """Input or context data does not fit what the pipeline's first step declares."""


class RunStop(FlowOpsError):
    """A run stopped at run time. ``run_id`` names it."""

    def __init__(self, message: str, *, run_id: str | None = None):
        self.run_id = run_id
        super().__init__(message)


class StepFailed(RunStop):
    """A step raised after its retries; ``step_key`` and ``error_type`` say which and what."""

    def __init__(self, message: str, *, run_id=None, step_key=None, error_type=None):
        self.step_key = step_key
        self.error_type = error_type
        super().__init__(message, run_id=run_id)


class RunHalted(RunStop):
    """The budget governor stopped the run before spend crossed its limit."""


class RunPaused(RunStop):
    """The run waits for a human decision (``approve`` or ``approve --reject``)."""


class RunCancelled(RunStop):
    """The run was cancelled."""


class NonDeterminismError(RunStop):
    """A replay made a different call than the one its journal recorded."""


class StepTimeout(RunStop):
    """A step ran longer than its ``timeout_s``."""


class RunWaiting(BaseException):  # noqa: N818 (a control-flow signal, like GeneratorExit)
    """Raised through a script by ``start_run(wait=True)`` while the child still runs: the
    engine pauses the parent until the child ends. A BaseException, so that a script's
    ``except Exception`` does not swallow it."""

    def __init__(self, child_id: str):
        super().__init__(child_id)
        self.child_id = child_id


class SlackError(FlowOpsError):
    """Slack refused a call or could not be reached; ``method`` and ``error`` say which."""

    def __init__(self, method: str, error: str):
        super().__init__(f"Slack {method} failed: {error}")
        self.method = method
        self.error = error

    def __reduce__(self):
        return type(self), (self.method, self.error)
