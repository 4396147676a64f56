"""Run lifecycle: create, start, cancel, approve, reject, resume, recover (CONTRACTS.md §1, §6).

Every entry point (CLI, admin, API, periodic task) goes through these functions. Work is
handed to a driver only after the transaction that made it possible has committed.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.db.models.functions import Now
from django.utils import timezone
from pydantic import ValidationError

from apps.core.exceptions import ApplicationError, Conflict
from apps.runs import dispatch, hooks
from apps.runs.models import Reservation, Run, StepRun
from apps.runs.services.budget import (
    budget_create,
    budget_exhausted,
    budget_raise_limit,
    limits_resolve,
    settle_orphans,
)
from apps.runs.services.execution import (
    context_model_of,
    loaded_for,
    new_rows,
    run_ended,
    subtree_state,
)
from apps.runs.services.journal import forget_reads
from apps.runs.services.liveness import heartbeat_timeout, is_alive
from apps.workflows.models import Workflow, WorkflowVersion
from apps.workflows.services import LoadedWorkflow
from flowops._codec import decode, describe_errors, encode, validate_input
from flowops._plan import Chain
from flowops.context import envelope
from flowops.exceptions import InputValidationError
from flowops.usage import UsageLimits

log = logging.getLogger("flowops.runs")
Status = Run.Status


def run_create(*, version: WorkflowVersion, loaded: LoadedWorkflow, input: Any = None,
               context_data: dict[str, Any] | None = None, run_id: str | None = None,
               driver: str | None = None, limits: UsageLimits | None = None,
               event_data: dict[str, Any] | None = None, **origin: Any) -> Run:
    """Validate input and context, then create the run, its budget and first step rows.

    Each limit the caller leaves unset comes from the workflow's default (admin), else
    from the script's ``usage_limits`` (``limits_resolve``). A script run's input is its
    event envelope (``flowops.context.envelope``): ``event_data``, else ``input`` as the
    payload of a manual start. ``origin``: the run's ``event``, ``trigger``, ``parent``.
    """
    if loaded.is_script:
        input = event_data if event_data is not None else envelope(integration="manual",
                                                                    payload=input)
    first = loaded.plan.first_step
    annotation = first.input_annotation()
    value = validate_input(input, annotation, what="input")
    context = _validate_context(loaded, context_data or {}, input)
    rows = loaded.plan.initial_rows()
    # Read afresh, not through ``version.workflow``: an admin may have just changed it.
    defaults = Workflow.objects.only("default_budget_usd", "default_budget_tokens").get(
        pk=version.workflow_id).default_limits
    limits = limits_resolve(limits, defaults, loaded.usage_limits)
    with transaction.atomic():
        run = Run.objects.create(
            id=run_id or None, version=version, driver=driver or settings.FLOWOPS_DRIVER,
            input=encode(value, annotation), initial_context=context, **origin)
        StepRun.objects.bulk_create(new_rows(run.id, rows))
        budget_create(run=run, limit_usd=limits.total_cost_usd_limit,
                      limit_tokens=limits.total_tokens_limit)
    return run


def _validate_context(loaded: LoadedWorkflow, data: dict[str, Any], input: Any) -> dict:
    if not isinstance(data, dict):
        raise InputValidationError("context must be a JSON object")
    model = context_model_of(loaded)
    if isinstance(input, str) and "initial_prompt" in model.model_fields:
        data = {"initial_prompt": input, **data}
    try:
        return model.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise InputValidationError(
            f"context does not fit {model.__name__}: {describe_errors(exc)}") from None


def run_start(run: Run, *, background: bool = False) -> None:
    """Mark the run running and hand its frontier to the driver after commit.

    ``background``: never drive an embedded run in this thread (a web request starting
    runs from an event); it goes to the in-process dispatcher instead.
    """
    with transaction.atomic():
        started = Run.objects.filter(id=run.id, status=Status.PENDING).update(
            status=Status.RUNNING, started_at=Now(), dispatch_generation=1, dispatched_at=Now())
        if not started:
            status = Run.objects.values_list("status", flat=True).get(pk=run.id)
            raise Conflict(f"run {run.id} is {status}, not pending")
        transaction.on_commit(lambda: dispatch.dispatch_run(run.id, background=background))
    run.refresh_from_db()


def frontier_of(run: Run) -> Chain:
    status, decisions = subtree_state(run.id)
    return loaded_for(run).plan.frontier(status, decisions)


def run_cancel(*, run_id: str) -> Run:
    run = _get(run_id)
    with transaction.atomic():
        done = Run.objects.filter(id=run_id).exclude(status__in=Run.TERMINAL).update(
            status=Status.CANCELLED, finished_at=Now())
        if not done:
            raise Conflict(f"run {run_id} is already {run.status}")
        StepRun.objects.filter(run_id=run_id, status=StepRun.Status.PENDING).update(
            status=StepRun.Status.CANCELLED)
        run_ended(run_id)
    run.refresh_from_db()
    return run


def run_approve(*, run_id: str, input: Any = None, background: bool = False,
                decided_by: str = "", step_key: str | None = None) -> Run:
    """Complete the paused human step with ``input`` and continue the run.

    ``background``: as for ``run_start`` (a web request never drives the run itself).
    ``decided_by``: who approved (``slack:U0123``, ``api:ada``), kept on the step.
    ``step_key``: approve only if the run waits at this step (a button of an earlier
    pause must not approve a later one).
    """
    run = _get(run_id)
    _check_awaits_approval(run, step_key)
    loaded = loaded_for(run)
    ref, _ = loaded.plan.locate(run.paused_step_key)
    schema = ref.node.step.output_annotation()
    try:
        value = encode(decode(input, schema), schema)
    except ValidationError as exc:
        problems = describe_errors(exc, root="input")
        raise ApplicationError(
            f"approval input does not fit {getattr(schema, '__name__', schema)}: {problems}",
            {"errors": exc.errors(include_url=False)}) from None
    from apps.runs.services.execution import resolve_input

    _, context = resolve_input(run, loaded.plan, ref)
    with transaction.atomic():
        resumed = Run.objects.filter(id=run_id, status=Status.PAUSED,
                                     paused_step_key=run.paused_step_key).update(
            status=Status.RUNNING, paused_step_key="", pause_message="",
            dispatch_generation=run.dispatch_generation + 1, dispatched_at=Now())
        if not resumed:
            raise Conflict(f"run {run_id} is no longer paused")
        StepRun.objects.filter(run_id=run_id, key=run.paused_step_key).update(
            status=StepRun.Status.SUCCEEDED, output=value, context=context, finished_at=Now(),
            attempt=1, decided_by=decided_by)
        hooks.send_on_commit(hooks.approval_decided, run_id=run_id,
                             step_key=run.paused_step_key, approved=True, decided_by=decided_by)
        transaction.on_commit(lambda: dispatch.dispatch_run(run_id, background=background))
    run.refresh_from_db()
    return run


def _check_awaits_approval(run: Run, step_key: str | None = None) -> None:
    if run.status != Status.PAUSED:
        raise Conflict(f"run {run.id} is {run.status}, not paused", {"status": run.status})
    if run.waiting_on:
        raise Conflict(f"run {run.id} waits for its child run {run.waiting_on}, "
                       "not for an approval")
    if step_key is not None and run.paused_step_key != step_key:
        raise Conflict(f"run {run.id} waits at {run.paused_step_key}, not at {step_key}",
                       {"status": run.status})


def run_reject(*, run_id: str, reason: str, decided_by: str = "",
               step_key: str | None = None) -> Run:
    """Fail the run paused at a human step with ``rejected: <reason>``.

    ``decided_by`` and ``step_key``: as for ``run_approve``.
    """
    run = _get(run_id)
    _check_awaits_approval(run, step_key)
    message = f"rejected: {reason}"
    with transaction.atomic():
        rejected = Run.objects.filter(id=run_id, status=Status.PAUSED,
                                      paused_step_key=run.paused_step_key).update(
            status=Status.FAILED, finished_at=Now(),
            error={"step_key": run.paused_step_key, "type": "Rejected", "message": message})
        if not rejected:  # approved, rejected or cancelled since it was read
            raise Conflict(f"run {run_id} is no longer paused")
        StepRun.objects.filter(run_id=run_id, key=run.paused_step_key).update(
            status=StepRun.Status.FAILED, finished_at=Now(), decided_by=decided_by,
            error={"type": "Rejected", "message": message, "traceback": ""})
        hooks.send_on_commit(hooks.approval_decided, run_id=run_id,
                             step_key=run.paused_step_key, approved=False, decided_by=decided_by)
    run.refresh_from_db()
    return run


def run_resume(*, run_id: str, limits: UsageLimits | None = None,
               background: bool = False) -> Run:
    """Continue a failed, halted, dead or stalled run from its checkpoints.

    ``limits`` sets new absolute budget limits first (at least spent + unsettled).
    ``background``: as for ``run_start``.
    """
    run = _get(run_id)
    if limits is not None:
        budget_raise_limit(run_id=run_id, limit_usd=limits.total_cost_usd_limit,
                           limit_tokens=limits.total_tokens_limit)
    if run.status in (Status.SUCCEEDED, Status.CANCELLED):
        raise Conflict(f"run {run_id} is {run.status}; nothing to resume")
    if run.status == Status.PAUSED:
        raise Conflict(f"run {run_id} waits for approval at {run.paused_step_key}; "
                       "use approve or approve --reject")
    if run.status == Status.RUNNING:
        live = _live_step(run)
        if live is not None:
            raise Conflict(f"run {run_id} is running (step {live.key} is alive)")
    if run.status == Status.HALTED and budget_exhausted(run_id) is not None:
        raise Conflict(f"run {run_id} halted on its budget; resume it with a higher "
                       "limit (--budget-usd / --budget-tokens)")
    if _live_step(run) is None:
        # Nothing runs: reservations still held belong to dead attempts (they may have
        # been billed) and settle at their worst case. A live call keeps its own.
        settle_orphans(run_id=run_id)
    if not _redispatch(run, reset_failed=True, background=background):
        raise Conflict(f"run {run_id} was resumed by someone else just now")
    run.refresh_from_db()
    return run


def _redispatch(run: Run, *, reset_failed: bool, background: bool = False) -> bool:
    """Compare-and-set the dispatch generation, reset failures, dispatch the frontier once."""
    with transaction.atomic():
        moved = Run.objects.filter(id=run.id, status=run.status,
                                   dispatch_generation=run.dispatch_generation).update(
            status=Status.RUNNING, error=None, finished_at=None,
            dispatch_generation=run.dispatch_generation + 1, dispatched_at=Now())
        if not moved:
            return False
        if reset_failed:
            failed = StepRun.objects.filter(run_id=run.id).filter(
                Q(status=StepRun.Status.FAILED) | Q(status=StepRun.Status.CANCELLED))
            for key in failed.values_list("key", flat=True):
                forget_reads(run.id, key)  # a failed step's next attempt reads afresh (§7)
            failed.update(status=StepRun.Status.PENDING, error=None, lost=0, decided_by="")
        transaction.on_commit(lambda: dispatch.dispatch_run(run.id, background=background))
    return True


def _live_step(run: Run) -> StepRun | None:
    for step in StepRun.objects.filter(run_id=run.id, status=StepRun.Status.RUNNING):
        if is_alive(step):
            return step
    return None


def run_is_stalled(run: Run) -> bool:
    """Not terminal, no live running step, and no progress for the heartbeat timeout."""
    if run.status != Status.RUNNING or _live_step(run) is not None:
        return False
    latest = StepRun.objects.filter(run_id=run.id).aggregate(
        finished=Max("finished_at"), started=Max("started_at"))
    # A fresh dispatch counts as progress: recovery sends a run once, not on every tick.
    marks = [m for m in (latest["finished"], latest["started"], run.started_at,
                         run.dispatched_at) if m]
    return not marks or timezone.now() - max(marks) > heartbeat_timeout()


def recover_stuck(*, driver: str | None = None) -> list[str]:
    """Re-dispatch every stalled run once (the periodic task and ``resume --stuck``)."""
    runs = Run.objects.filter(status=Status.RUNNING)
    if driver is not None:
        runs = runs.filter(driver=driver)
    recovered = []
    for run in runs:
        if run_is_stalled(run) and _redispatch(run, reset_failed=False):
            log.warning("recovered stalled run %s", run.id)
            recovered.append(run.id)
    settle_stopped_runs()
    from apps.runs.services.children import parents_wake_lost  # it builds on this module

    parents_wake_lost()
    hooks.send(hooks.recovery_swept)
    return recovered


def settle_stopped_runs() -> int:
    """Settle what runs that stopped (halted, failed, cancelled) still hold for calls of
    dead attempts, at their worst case, so their spend is final without a resume. A step
    still alive settles its own call."""
    stopped = Reservation.objects.filter(state=Reservation.State.RESERVED).filter(
        run__status__in=[Status.HALTED, Status.FAILED, Status.CANCELLED])
    settled = 0
    for run in Run.objects.filter(id__in=stopped.values("run_id")):
        if _live_step(run) is None:
            settled += settle_orphans(run_id=run.id)
    return settled


def _get(run_id: str) -> Run:
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        raise ApplicationError(f"no run with id {run_id!r}", {"run_id": run_id})
    return run
