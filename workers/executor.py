"""Step tasks: they receive ids, and the services do the work (DESIGN.md, Executor).

On Celery, a task that ends its chain sends what follows it (``execution.continuation``,
workers/canvas.py says why); the embedded driver walks the frontier itself. A map's
items travel in chunks (``items_task``), each item delivered to the step task in turn.
"""

from __future__ import annotations

import time
from collections import deque

from celery.exceptions import Ignore
from django.conf import settings

from apps.runs.services import execution
from apps.runs.services.execution import Action, Gate
from workers.base import StepTaskFailed
from workers.canvas import items_signature, to_signature
from workers.celery import app


@app.task(bind=True, name="flowops.step", step_task=True, task_kind="step", ignore_result=True)
def step_task(self, run_id: str, key: str, gate: Gate) -> None:
    if gate.action is not Action.RESEND:
        outcome = execution.step_execute(gate)
        if outcome == "paused":
            raise Ignore()  # the chain stops here; approval dispatches what follows
        if outcome == "failed":
            raise StepTaskFailed(f"step {key} of run {run_id} failed")
        if outcome == "continue":
            _end_item(self, gate)
    _continue(self, gate)


@app.task(bind=True, name="flowops.decide", step_task=True, task_kind="decide",
          ignore_result=True)
def decide_task(self, run_id: str, key: str, gate: Gate):
    if gate.action is Action.RESEND:
        rest = execution.decision_rest(gate)
    else:
        outcome, rest = execution.decide_execute(gate)
        if outcome == "failed":
            raise StepTaskFailed(f"decision {key} of run {run_id} failed")
        if outcome == "continue":
            _end_item(self, gate)
    if rest is None:
        return None
    if self.request.is_eager:
        return rest  # the embedded driver runs it (§5)
    # Sent rather than ``replace``d: a chain ends at a decision, so there is no chain to
    # inherit, and ``replace`` would turn a group into a chord.
    to_signature(run_id, rest).apply_async()
    return None


@app.task(bind=True, name="flowops.join", step_task=True, task_kind="join", ignore_result=True)
def join_task(self, run_id: str, key: str, gate: Gate) -> None:
    if gate.action is not Action.RESEND:
        execution.join_execute(gate)
    _continue(self, gate)


def _end_item(task, gate: Gate) -> None:
    """A tolerated failure ended its map item: the rest of the item's chain is skipped."""
    if task.request.is_eager:
        return
    task.send_next(gate.run.id, execution.continuation(gate))
    raise Ignore()


def _continue(task, gate: Gate) -> None:
    """At the end of its chain, send what follows (Celery sends the chain's next link)."""
    if task.request.is_eager or task.request.chain:
        return
    task.send_next(gate.run.id, execution.continuation(gate))


@app.task(bind=True, name="flowops.items", ignore_result=True)
def items_task(self, run_id: str, keys: list[str], size: int) -> None:
    """A chunk of a map's one-step items, run here one after another (workers/canvas.py).

    Each item is claimed and checkpointed on its own, so a redelivered chunk skips its
    done items and takes over the one its dead process left running. Once the chunk has
    run for ``FLOWOPS_INLINE_SECONDS`` (or ``size`` items: a ``max_concurrency`` lane
    grows by the items its arrivals release), the rest goes on in other messages. An
    item a lane took on this way is in no message: if its process dies, the run's
    recovery (a stalled run, ``resume``) sends it again, as it would a lost send.
    """
    started = time.monotonic()
    todo = deque(keys)
    ran = 0
    while todo:
        spent = time.monotonic() - started
        if ran and (ran >= size or spent >= settings.FLOWOPS_INLINE_SECONDS):
            _spill(run_id, list(todo), size, spent / ran)
            return
        if not step_task.run_held(run_id, todo.popleft(), todo):
            return  # the item failed and the run with it: the rest would be ignored
        ran += 1


def _spill(run_id: str, keys: list[str], size: int, per_item: float) -> None:
    """Send the rest of a chunk in chunks that fit the time budget at the pace so far.

    Items as slow as the budget (model calls) go one per message, to all workers.
    """
    fits = int(settings.FLOWOPS_INLINE_SECONDS / per_item) if per_item > 0 else size
    step = max(1, min(size, fits))
    for i in range(0, len(keys), step):
        items_signature(run_id, keys[i:i + step], size).apply_async()


@app.task(name="flowops.finish_run", ignore_result=True)
def finish_task(run_id: str) -> None:
    if not execution.run_finish(run_id):
        raise Ignore()


TASKS = {"step": step_task, "decide": decide_task, "join": join_task}
