"""Step tasks: they receive ids, and the services do the work (DESIGN.md, Executor)."""

from __future__ import annotations

from celery.exceptions import Ignore

from apps.runs.services import execution
from apps.runs.services.execution import Action, Gate
from workers.base import StepTaskFailed
from workers.canvas import to_signature
from workers.celery import app


@app.task(bind=True, name="flowops.step", step_task=True, task_kind="step")
def step_task(self, run_id: str, key: str, gate: Gate) -> None:
    if gate.action is Action.RESEND:
        return None
    outcome = execution.step_execute(gate)
    if outcome == "paused":
        raise Ignore()  # the chain stops here; approval dispatches what follows
    if outcome == "failed":
        raise StepTaskFailed(f"step {key} of run {run_id} failed")
    return None


@app.task(bind=True, name="flowops.decide", step_task=True, task_kind="decide")
def decide_task(self, run_id: str, key: str, gate: Gate):
    if gate.action is Action.RESEND:
        rest = execution.decision_rest(gate)
    else:
        outcome, rest = execution.decide_execute(gate)
        if outcome == "failed":
            raise StepTaskFailed(f"decision {key} of run {run_id} failed")
    if rest is None:
        return None
    if self.request.is_eager:
        return rest  # the embedded driver runs it; eager Celery cannot replace (§5)
    raise self.replace(to_signature(run_id, rest))


@app.task(bind=True, name="flowops.join", step_task=True, task_kind="join")
def join_task(self, run_id: str, key: str, gate: Gate) -> None:
    if gate.action is Action.RESEND:
        return None
    execution.join_execute(gate)
    return None


@app.task(name="flowops.finish_run")
def finish_task(run_id: str) -> None:
    if not execution.run_finish(run_id):
        raise Ignore()


@app.task(name="flowops.barrier")
def barrier_task() -> None:
    """Ends one batch of a fork with ``max_concurrency``."""


TASKS = {"step": step_task, "decide": decide_task, "join": join_task}
