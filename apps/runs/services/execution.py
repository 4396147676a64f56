"""Executing one node of a run: claim, run, checkpoint (CONTRACTS.md §3, §5, §6).

The task base class calls ``fast_gate`` (the usual one-statement claim) or ``gate``
before any body runs; the step, decide, join and finish tasks then call ``step_execute``,
``decide_execute``, ``join_execute`` and ``run_finish``; on Celery, a task at the end of
its chain sends ``continuation``. Everything here reads its input from checkpoints and
writes its output as one: only ``(run_id, key)`` travels between tasks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import enum
import logging
import random
import re
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Now

from apps.runs import hooks
from apps.runs.models import CacheEntry, Run, StepRun
from apps.runs.services import steps_sql
from apps.runs.services.budget import settle_orphans
from apps.runs.services.journal import ClaimLost, DatabaseJournal
from apps.runs.services.liveness import current_owner, is_alive
from apps.runs.services.steps_sql import Head
from apps.workflows.models import WorkflowVersion
from apps.workflows.services import LoadedWorkflow, load_version
from flowops._codec import decode, digest, encode
from flowops._plan import DONE, Call, Chain, Plan, Ref, RowSpec
from flowops._runtime import _current
from flowops._steps import DEFAULT_BRANCH, Step, _signature
from flowops.domain.models import PipelineContext
from flowops.exceptions import (
    NonDeterminismError,
    PipelineDefinitionError,
    RunHalted,
    RunWaiting,
    StepTimeout,
)

log = logging.getLogger("flowops.execution")
Status = StepRun.Status


class Action(enum.Enum):
    RUN = "run"  # claimed: run the body
    IGNORE = "ignore"  # a duplicate, a stopped run, a live owner: end quietly
    RESEND = "resend"  # done, but its continuation may never have been sent


@dataclass
class Gate:
    action: Action
    run: Run | None = None
    step: StepRun | None = None
    loaded: LoadedWorkflow | None = None
    reason: str = ""
    arrival: Arrival | None = None  # set when finishing this step ended a fork's branch
    input: tuple[Any, Any] | None = None  # (input, context) JSON, when the claim read it

    @property
    def done(self) -> bool:
        """The step was done already (a redelivery or a duplicate)."""
        return self.step is not None and self.step.status in DONE


@dataclass(frozen=True)
class Arrival:
    """A fork branch that ended: how many of the fork's branches are still open."""

    fork: Ref
    open: int


# -- loading -----------------------------------------------------------------------------
_versions: dict[int, LoadedWorkflow] = {}
_versions_lock = threading.Lock()


def loaded_for(run: Run) -> LoadedWorkflow:
    """The run's pinned version, loaded once per process."""
    loaded = _versions.get(run.version_id)
    if loaded is None:
        loaded = load_version(WorkflowVersion.objects.get(pk=run.version_id))
        with _versions_lock:
            _versions[run.version_id] = loaded
    return loaded


def context_model_of(loaded: LoadedWorkflow) -> type[PipelineContext]:
    return loaded.context_model or PipelineContext


# -- the gate: pre-checks and claim ------------------------------------------------------
# A run's version never changes (CONTRACTS.md §4); knowing it lets a step claim its row
# in one statement without reading the run first.
_run_versions: dict[str, int] = {}
_RUN_VERSIONS_KEPT = 10_000


def fast_gate(*, run_id: str, key: str, task: str) -> Gate | None:
    """The common case in one statement: the run is running within its limits and the
    step is pending. None when this cannot tell (the caller then takes ``gate``)."""
    version_id = _run_versions.get(run_id)
    if version_id is None or task == "join":
        return None
    run = steps_sql.partial(Run, id=run_id, status=Run.Status.RUNNING, version_id=version_id)
    loaded = loaded_for(run)
    plan = loaded.plan
    source = input_source(plan, plan.locate(key)[0]) if task == "step" else None
    step, fetched = steps_sql.claim(run_id, key, current_owner(), plan.predecessors(key),
                                    source)
    if step is None:
        return None
    return Gate(Action.RUN, run=run, step=step, loaded=loaded, input=fetched)


def gate(*, run_id: str, key: str, task: str, head: Head | None = None) -> Gate:
    """Decide what a delivered task does; claim its step when it should run.

    ``head`` is the run as the task base class already read it.
    """
    head = head or steps_sql.read_head(run_id)
    if head is None:
        return Gate(Action.IGNORE, reason=f"unknown run {run_id}")
    run = head.run
    if len(_run_versions) >= _RUN_VERSIONS_KEPT:
        _run_versions.clear()
    _run_versions[run.id] = run.version_id
    if run.status != Run.Status.RUNNING:
        return Gate(Action.IGNORE, run=run, reason=f"run is {run.status}")
    loaded = loaded_for(run)
    if task == "join" and not _join_ready(run, loaded.plan, key):
        # Sent early (a redelivered branch end); the last branch to arrive sends it again.
        return Gate(Action.IGNORE, run=run, reason=f"join {key} not ready")
    needed = [] if task == "join" else loaded.plan.predecessors(key)  # a join checked its own
    step, _ = steps_sql.claim(run.id, key, current_owner(), needed)
    if step is not None:
        return Gate(Action.RUN, run=run, step=step, loaded=loaded)
    return _not_pending(run, loaded, key)


def _not_pending(run: Run, loaded: LoadedWorkflow, key: str) -> Gate:
    step = StepRun.objects.filter(run_id=run.id, key=key).first()
    if step is None:
        return Gate(Action.IGNORE, run=run, reason=f"no step {key}")
    if step.status in DONE:
        action = Action.IGNORE if _continued(run, loaded.plan, key) else Action.RESEND
        return Gate(action, run=run, step=step, loaded=loaded, reason="already done")
    if step.status == Status.PENDING:  # the claim found a predecessor not done
        waits = ", ".join(loaded.plan.predecessors(key))
        return Gate(Action.IGNORE, run=run, step=step, reason=f"waits for {waits}")
    if step.status != Status.RUNNING:
        return Gate(Action.IGNORE, run=run, step=step, reason=f"step is {step.status}")
    if is_alive(step):
        return Gate(Action.IGNORE, run=run, step=step, reason="running elsewhere")
    return _take_over(run, loaded, step)


def _continued(run: Run, plan: Plan, key: str) -> bool:
    """Whether the work after a done node has started, so a redelivery ends quietly.

    Read from the rows when a redelivery asks, not recorded on every claim: the node's
    successor has left ``pending`` (at a branch's end: its join was sent or is not due).
    """
    ends = plan.arrival(key)
    if ends is not None:
        return not _join_waits(run.id, ends[0].key)
    ref, tag = plan.locate(key)
    status, decisions = scope_state(run.id, ref.prefix)
    nxt = plan.node_frontier(ref, status, decisions) if tag else plan.after(key, status,
                                                                             decisions)
    first = _first_calls(nxt)
    if any(call.task == "finish" for call in first):
        return False  # the run is still running, so its finish was not done
    # The first call may be the enclosing composite's join or exit test, outside the scope.
    started = StepRun.objects.filter(run_id=run.id, key__in=[c.key for c in first]).exclude(
        status=Status.PENDING)
    return not first or started.exists()


def _first_calls(part: Any) -> list[Call]:
    if part is None:
        return []
    if isinstance(part, Call):
        return [part]
    if isinstance(part, Chain):
        return _first_calls(part.parts[0]) if part.parts else []
    return [call for branch in part.branches for call in _first_calls(branch)]


def _take_over(run: Run, loaded: LoadedWorkflow, step: StepRun) -> Gate:
    losses = step.lost + 1  # the owner found dead just now counts
    if losses >= settings.FLOWOPS_MAX_STEP_ATTEMPTS:
        message = f"worker lost {losses} times in step {step.key}"
        _fail(run, step, {"type": "WorkerLost", "message": message, "traceback": ""},
              fence=False)
        return Gate(Action.IGNORE, run=run, step=step, reason=message)
    owner = current_owner()
    won = StepRun.objects.filter(id=step.id, status=Status.RUNNING, attempt=step.attempt).update(
        lost=F("lost") + 1, status=Status.RUNNING, attempt=F("attempt") + 1,
        owner_host=owner.host, owner_pid=owner.pid, owner_started=owner.started,
        started_at=Now(), heartbeat_at=Now(), finished_at=None)
    if not won:
        return Gate(Action.IGNORE, run=run, step=step, reason="taken over by another")
    # The dead attempt's calls may have been billed: settle them at their worst case.
    settle_orphans(run_id=run.id, step_key=step.key, before_attempt=step.attempt + 1)
    step.refresh_from_db()
    log.warning("run %s: took over step %s (attempt %s)", run.id, step.key, step.attempt)
    return Gate(Action.RUN, run=run, step=step, loaded=loaded)


# -- reading checkpoints -----------------------------------------------------------------
def _rows(run_id: str, keys: list[str]) -> dict[str, StepRun]:
    return {s.key: s for s in StepRun.objects.filter(run_id=run_id, key__in=keys)}


def _row(run_id: str, key: str) -> StepRun:
    return StepRun.objects.only("key", "status", "output", "context").get(run_id=run_id, key=key)


def subtree_q(key: str) -> Q:
    return (Q(key=key) | Q(key__startswith=f"{key}/") | Q(key__startswith=f"{key}[")
            | Q(key__startswith=f"{key}@"))


def subtree_state(run_id: str, key: str | None = None) -> tuple[dict[str, str], dict[str, Any]]:
    """Statuses of a node's rows (the whole run when ``key`` is None), and decision outputs.

    A ``key`` ending in ``/`` names a branch (``fan/a/``, ``each[3]/``): its rows only.
    """
    rows = StepRun.objects.filter(run_id=run_id)
    if key is not None and key.endswith("/"):
        rows = rows.filter(key__startswith=key)
    elif key is not None:
        rows = rows.filter(subtree_q(key))
    status, decisions = {}, {}
    for k, st, kind, output in rows.values_list("key", "status", "kind", "output"):
        status[k] = st
        if kind == "decision":
            decisions[k] = output
    return status, decisions


def input_source(plan: Plan, ref: Ref) -> tuple[str, int | None] | None:
    """The row (and map item) a node instance's input is read from, in the common cases."""
    prev = plan.previous(ref)
    if prev is not None:
        return prev.key, None
    owner, how = plan.owner_of(ref)
    if owner is not None and owner.node.kind == "map":
        return f"{owner.key}@items", int(how)
    return None


def scope_state(run_id: str, prefix: str) -> tuple[dict[str, str], dict[str, Any]]:
    """``subtree_state`` of the scope a node instance sits in (its key prefix): what
    follows a node in its scope needs no other rows (the root's scope is the whole run)."""
    return subtree_state(run_id, prefix or None)


def resolve_input(run: Run, plan: Plan, ref: Ref) -> tuple[Any, Any]:
    """The (input, context) JSON a node instance starts from."""
    source = input_source(plan, ref)
    if source is not None:
        return steps_sql.read_checkpoint(run.id, source[0], item=source[1])
    owner, how = plan.owner_of(ref)
    if owner is None:
        return run.input, run.initial_context
    if owner.node.kind == "loop" and how != "0":
        decision = _row(run.id, f"{owner.key}[{int(how) - 1}]@exit")
        return decision.output["next_input"], decision.context
    return resolve_input(run, plan, owner)


# -- steps -------------------------------------------------------------------------------
def step_execute(gate: Gate) -> str:
    """Run a leaf step and checkpoint it. Returns ``done``, ``paused`` or ``continue``."""
    run, step, loaded = gate.run, gate.step, gate.loaded
    ref, _ = loaded.plan.locate(step.key)
    node_step = ref.node.step
    if node_step.kind == "hitl":
        return _pause(run, step, node_step)
    started = time.monotonic()
    data_json, context_json = gate.input or resolve_input(run, loaded.plan, ref)
    try:
        data = decode(data_json, node_step.input_annotation())
        context = None
        if node_step.takes_context:
            context = context_model_of(loaded).model_validate(context_json or {})
        output, cache_hit = _run_step(run, step, node_step, data, context, context_json)
        output_json = _encode_output(node_step, output)
    except ClaimLost:
        raise
    except RunWaiting as waiting:
        from apps.runs.services.children import parent_pause

        if parent_pause(run, step, waiting.child_id):
            return "paused"
        return step_execute(gate)  # the child ended meanwhile: replay up to it, go on
    except Exception as exc:
        return step_fail(run, step, loaded, exc, gate)
    context_after = context.model_dump(mode="json") if context is not None else context_json
    gate.arrival = checkpoint(step, output=output_json, context=context_after,
                              duration_ms=(time.monotonic() - started) * 1000,
                              cache_hit=cache_hit, plan=loaded.plan)
    return "done"


def _encode_output(node_step: Step, output: Any) -> Any:
    try:
        return encode(output, node_step.output_annotation())
    except TypeError as exc:
        raise TypeError(f"step {node_step.name}: output {exc}") from None


def _run_step(run: Run, step: StepRun, node_step: Step, data: Any, context: Any,
              context_json: Any) -> tuple[Any, bool]:
    cache_key = None
    if node_step.kind == "cached":
        cache_key = _cache_key(node_step, data, context_json if node_step.takes_context else None)
        hit = CacheEntry.objects.filter(cache_key=cache_key).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=Now())).first()
        if hit is not None:
            return decode(hit.value, node_step.output_annotation()), True
    journal = DatabaseJournal(run_id=run.id, scope=step.key, step_id=step.id,
                              attempt=step.attempt)
    output = _call_with_retries(node_step, step, journal, data, context)
    if cache_key is not None:
        _cache_store(cache_key, node_step, output)
    return output, False


def _call_with_retries(node_step: Step, step: StepRun, journal: DatabaseJournal,
                       data: Any, context: Any) -> Any:
    config = node_step.config
    for retry in range(config.max_retries + 1):
        try:
            return _invoke(node_step, journal, data, context)
        except (ClaimLost, NonDeterminismError, RunHalted):
            raise
        except Exception:
            if retry >= config.max_retries:
                raise
            StepRun.objects.filter(id=step.id, attempt=step.attempt).update(
                retries=F("retries") + 1)
            journal.restart()
            backoff = config.retry_backoff_s * (2 ** retry)
            time.sleep(backoff * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def _invoke(node_step: Step, journal: DatabaseJournal, data: Any, context: Any) -> Any:
    fn = node_step.func or node_step.agent.run
    args = (data,) if _takes_input(node_step) else ()
    kwargs = {"context": context} if node_step.takes_context else {}
    timeout = node_step.config.timeout_s
    token = _current.set(journal)
    try:
        if node_step.is_async:
            return _run_coroutine(_with_timeout(fn(*args, **kwargs), timeout, node_step.name))
        if timeout is None:
            return _maybe_await(fn(*args, **kwargs), timeout, node_step.name)
        return _sync_with_timeout(fn, args, kwargs, timeout, node_step.name)
    finally:
        _current.reset(token)


def _takes_input(node_step: Step) -> bool:
    if node_step.func is None:
        return True
    params = [p for p in _signature(node_step.func).parameters.values()
              if p.name != "context" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return bool(params)


def _maybe_await(result: Any, timeout: float | None, name: str) -> Any:
    if asyncio.iscoroutine(result):  # a sync agent wrapper handed back a coroutine
        return _run_coroutine(_with_timeout(result, timeout, name))
    return result


_runners = threading.local()


def _run_coroutine(coro: Any) -> Any:
    """``asyncio.run`` on one event loop per thread: a fresh loop per step cost 0.4 ms."""
    runner = getattr(_runners, "runner", None)
    if runner is None:
        runner = _runners.runner = asyncio.Runner()
    # The runner would otherwise run every step in the context it was created in,
    # without the journal this step set.
    try:
        return runner.run(coro, context=contextvars.copy_context())
    finally:
        _cancel_leftovers(runner.get_loop())


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Tasks a step started and left behind end with it, as under ``asyncio.run``."""
    leftovers = asyncio.all_tasks(loop)
    if not leftovers:
        return
    for task in leftovers:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))


def close_thread_loop() -> None:
    """Close this thread's step event loop (a pool thread that is about to end)."""
    runner = getattr(_runners, "runner", None)
    if runner is not None:
        _runners.runner = None
        runner.close()


async def _with_timeout(coro: Any, timeout: float | None, name: str) -> Any:
    if timeout is None:
        return await coro
    try:
        return await asyncio.wait_for(coro, timeout)
    except TimeoutError:
        raise StepTimeout(f"step {name} ran longer than {timeout:g}s") from None


def _sync_with_timeout(fn: Any, args: tuple, kwargs: dict, timeout: float, name: str) -> Any:
    # A thread cannot be killed: on timeout the step fails and the thread is abandoned.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowops-step")
    future = pool.submit(contextvars.copy_context().run, fn, *args, **kwargs)
    pool.shutdown(wait=False)
    try:
        return _maybe_await(future.result(timeout=timeout), timeout, name)
    except concurrent.futures.TimeoutError:
        raise StepTimeout(f"step {name} ran longer than {timeout:g}s") from None


def _cache_key(node_step: Step, data: Any, context_json: Any) -> str:
    import inspect

    fn = node_step.func or node_step.agent
    try:
        source = inspect.getsource(fn if callable(fn) else type(fn))
    except (OSError, TypeError):
        source = repr(fn)
    qualname = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', node_step.name)}"
    return digest([qualname.split(".", 1)[-1], digest(source), encode(data), context_json])


def _cache_store(cache_key: str, node_step: Step, output: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    expires = None
    if node_step.ttl_s:
        expires = timezone.now() + timedelta(seconds=node_step.ttl_s)
    CacheEntry.objects.update_or_create(
        cache_key=cache_key, defaults={"step_name": node_step.name, "expires_at": expires,
                                       "value": encode(output, node_step.output_annotation())})


def checkpoint(step: StepRun, *, output: Any, context: Any, duration_ms: float | None = None,
               cache_hit: bool = False, plan: Plan | None = None) -> Arrival | None:
    """Record a node's result; only the attempt that holds the claim may.

    With ``plan``, a node that ends a fork's branch also counts its arrival, in the same
    transaction, and returns it.
    """
    ends = plan.arrival(step.key) if plan is not None else None
    written, open_ = steps_sql.write_checkpoint(
        step, output=output, context=context, duration_ms=duration_ms, cache_hit=cache_hit,
        fork_key=ends[0].key if ends is not None else None)
    if not written:
        raise ClaimLost(f"step {step.key} was taken over; its result is discarded")
    arrival = Arrival(ends[0], open_) if ends is not None else None
    from apps.runs.services.journal import fault_point

    # After the commit, also when a decision's checkpoint sits in a larger transaction.
    transaction.on_commit(lambda: fault_point("after_checkpoint", step.key))
    return arrival


def _arrive(run_id: str, fork: Ref) -> Arrival:
    return Arrival(fork, steps_sql.arrive(run_id, fork.key))


def step_fail(run: Run, step: StepRun, loaded: LoadedWorkflow, exc: BaseException,
              gate: Gate | None = None) -> str:
    """Record a failure. A map item with ``on_item_failure="none"`` fails alone."""
    error = {"type": type(exc).__name__, "message": str(exc),
             "traceback": "".join(traceback.format_exception(exc))}
    item = _tolerant_item(loaded.plan, step.key)
    if item is None:
        _fail(run, step, error)
        return "failed"
    fork, index = item
    with transaction.atomic():
        StepRun.objects.filter(id=step.id, attempt=step.attempt).update(
            status=Status.FAILED, error=error, finished_at=Now())
        StepRun.objects.filter(run_id=run.id, key__startswith=f"{fork.key}[{index}]/",
                               status=Status.PENDING).update(status=Status.SKIPPED)
        arrival = _arrive(run.id, fork)  # the item's branch ends here
    if gate is not None:
        gate.arrival = arrival
    return "continue"


def _tolerant_item(plan: Plan, key: str) -> tuple[Ref, str] | None:
    """The map and item index when ``key`` sits in an item of an ``on_item_failure="none"`` map."""
    ref, _ = plan.locate(key)
    while True:
        owner, how = plan.owner_of(ref)
        if owner is None:
            return None
        if owner.node.kind == "map" and owner.node.step.on_item_failure == "none":
            return owner, how
        ref = owner


def run_fail(run_id: str, key: str, exc: BaseException) -> None:
    """Fail a running run for an error before its step could start (the step stays pending,
    so a resume retries it once the cause is fixed)."""
    log.error("run %s failed before step %s: %s", run_id, key, exc, exc_info=exc)
    _fail_run(run_id, key, type(exc).__name__, str(exc))


def _fail(run: Run, step: StepRun, error: dict, *, fence: bool = True) -> None:
    with transaction.atomic():
        rows = StepRun.objects.filter(id=step.id)
        if fence:
            rows = rows.filter(attempt=step.attempt)
        rows.update(status=Status.FAILED, error=error, finished_at=Now())
        _fail_run(run.id, step.key, error["type"], error["message"])


def _fail_run(run_id: str, key: str, kind: str, message: str) -> None:
    failed = Run.objects.filter(id=run_id, status=Run.Status.RUNNING).update(
        status=Run.Status.FAILED, finished_at=Now(),
        error={"step_key": key, "type": kind, "message": message})
    if failed:
        run_ended(run_id)


def _pause(run: Run, step: StepRun, node_step: Step) -> str:
    with transaction.atomic():
        StepRun.objects.filter(id=step.id, attempt=step.attempt).update(
            status=Status.PENDING, owner_pid=None, heartbeat_at=None)
        paused = Run.objects.filter(id=run.id, status=Run.Status.RUNNING).update(
            status=Run.Status.PAUSED, paused_step_key=step.key,
            pause_message=node_step.message)
        if paused:
            # After commit: whoever asks for the approval (Slack) must see the run paused,
            # and a slow or failing integration must not hold or fail this transaction.
            hooks.send_on_commit(hooks.run_paused, run_id=run.id, step_key=step.key,
                                 step=node_step)
    return "paused"


# -- decisions ---------------------------------------------------------------------------
def decide_execute(gate: Gate) -> tuple[str, Any]:
    """Evaluate a decision and create the rows it implies.

    Returns the outcome (``done``, ``failed`` or ``continue``) and the work that follows.
    """
    run, step, loaded = gate.run, gate.step, gate.loaded
    plan = loaded.plan
    ref, tag = plan.locate(step.key)
    try:
        if tag == "items":
            output, context_json, rows = _decide_items(run, plan, ref)
        elif tag == "choice":
            output, context_json, rows = _decide_choice(run, plan, ref, loaded)
        else:
            output, context_json, rows = _decide_exit(run, plan, ref, int(tag[5:]), loaded)
    except ClaimLost:
        raise
    except Exception as exc:
        return step_fail(run, step, loaded, exc, gate), None
    with transaction.atomic():
        checkpoint(step, output=output, context=context_json)
        StepRun.objects.bulk_create(new_rows(run.id, rows), ignore_conflicts=True)
        if tag == "items":
            spec = plan.fork_row(ref.key, ref.node, len(output))
            StepRun.objects.filter(run_id=run.id, key=ref.key).update(
                branches=spec.branches, branches_open=spec.branches, branches_sent=spec.sent)
    return "done", decision_rest(gate)


def new_rows(run_id: str, specs: Iterable[RowSpec]) -> list[StepRun]:
    """StepRun rows for a plan's row specs (a fork's join starts with all branches open)."""
    return [StepRun(run_id=run_id, key=r.key, name=r.name, kind=r.kind, branches=r.branches,
                    branches_open=r.branches, branches_sent=r.sent) for r in specs]


def decision_rest(gate: Gate) -> Any:
    """The work that follows a taken decision, from the rows as they stand."""
    plan = gate.loaded.plan
    ref, _ = plan.locate(gate.step.key)
    status, decisions = subtree_state(gate.run.id, ref.key)
    return plan.node_frontier(ref, status, decisions)


def _decide_items(run: Run, plan: Plan, ref: Ref):
    data_json, context_json = resolve_input(run, plan, ref)
    map_step = ref.node.step
    if map_step.iterable_input:
        source = (context_json or {}).get(map_step.iterable_input)
        if source is None and map_step.iterable_input not in (context_json or {}):
            raise PipelineDefinitionError(
                f"map {ref.key}: the context has no field {map_step.iterable_input!r}")
    else:
        source = data_json
    if not isinstance(source, list | tuple):
        raise TypeError(f"map {ref.key} needs a list to map over, got {type(source).__name__}")
    items = list(source)
    body = ref.node.children["[]"]
    rows = [r for i in range(len(items)) for r in plan.rows_for_scope(body, f"{ref.key}[{i}]/")]
    return items, context_json, rows


def _decide_choice(run: Run, plan: Plan, ref: Ref, loaded: LoadedWorkflow):
    data_json, context_json = resolve_input(run, plan, ref)
    branch_step = ref.node.step
    context = context_model_of(loaded).model_validate(context_json or {})
    chosen = branch_step._condition(data_json, context)
    choice = str(chosen)
    if choice not in ref.node.children or choice == DEFAULT_BRANCH:
        if DEFAULT_BRANCH not in ref.node.children:
            known = ", ".join(sorted(k for k in ref.node.children if k != DEFAULT_BRANCH))
            raise PipelineDefinitionError(
                f"branch {ref.key}: unknown branch key {choice!r} and no default (known: {known})")
        choice = DEFAULT_BRANCH
    rows = list(plan.rows_for_scope(ref.node.children[choice], f"{ref.key}/{choice}/"))
    return choice, context_json, rows


def _decide_exit(run: Run, plan: Plan, ref: Ref, iteration: int, loaded: LoadedWorkflow):
    loop = ref.node.step
    body = ref.node.children["[]"]
    last = plan.last_of_scope(body, f"{ref.key}[{iteration}]/")
    row = _row(run.id, last.key)
    context = context_model_of(loaded).model_validate(row.context or {})
    output = decode(row.output, last.node.step.output_annotation())
    done = bool(loop._exit_condition(output, context))
    rows, next_input = [], None
    if not done:
        if iteration + 1 >= loop.max_loops:
            raise RuntimeError(f"loop {ref.key} reached max_loops={loop.max_loops} "
                               "without meeting its exit condition")
        next_input = row.output
        if loop._iteration_input_mapper is not None:
            next_input = encode(loop._iteration_input_mapper(output, context, iteration + 1))
        rows = list(plan.loop_iteration_rows(ref, iteration + 1))
    return {"exit": done, "next_input": next_input}, row.context, rows


# -- joins -------------------------------------------------------------------------------
def _join_ready(run: Run, plan: Plan, key: str) -> bool:
    ref, _ = plan.locate(key)
    status, decisions = subtree_state(run.id, key)
    state = dict(decisions)
    if ref.node.kind == "loop":
        iteration = _exit_iteration(key, decisions)
        if iteration is None:
            return False
        state[f"{key}@last"] = iteration
    needed = plan.predecessors(key, state)
    ready = all(status.get(k) in DONE or status.get(k) == Status.FAILED for k in needed)
    return ready and bool(needed)


def _exit_iteration(loop_key: str, decisions: dict[str, Any]) -> int | None:
    """The iteration whose exit test said stop, among this loop's own decisions only."""
    own = re.compile(re.escape(loop_key) + r"\[(\d+)\]@exit")
    for key, value in decisions.items():
        match = own.fullmatch(key)
        if match and isinstance(value, dict) and value.get("exit"):
            return int(match[1])
    return None


def join_execute(gate: Gate) -> str:
    run, step, loaded = gate.run, gate.step, gate.loaded
    plan = loaded.plan
    ref, _ = plan.locate(step.key)
    node = ref.node
    status, decisions = subtree_state(run.id, ref.key)
    if node.kind in ("parallel", "map"):
        output, context = _join_fork(run, plan, ref, decisions)
    elif node.kind == "branch":
        choice = decisions[f"{ref.key}@choice"]
        last = _row(run.id, plan.last_of_scope(node.children[choice], f"{ref.key}/{choice}/").key)
        output, context = last.output, last.context
    else:
        iteration = _exit_iteration(ref.key, decisions)
        last = _row(run.id, plan.last_of_scope(node.children["[]"],
                                               f"{ref.key}[{iteration}]/").key)
        output, context = last.output, last.context
    gate.arrival = checkpoint(step, output=output, context=context, plan=plan)
    return "done"


def _join_fork(run: Run, plan: Plan, ref: Ref, decisions: dict[str, Any]):
    node = ref.node
    if node.kind == "parallel":
        scopes = [(b, plan.last_of_scope(seq, f"{ref.key}/{b}/").key)
                  for b, seq in node.children.items()]
    else:
        items = decisions.get(f"{ref.key}@items") or []
        body = node.children["[]"]
        scopes = [(i, plan.last_of_scope(body, f"{ref.key}[{i}]/").key)
                  for i in range(len(items))]
    rows = _rows(run.id, [k for _, k in scopes])
    _, base = resolve_input(run, plan, ref)
    merged = dict(base or {})
    outputs: dict[Any, Any] = {}
    for name, key in scopes:
        row = rows[key]
        ok = row.status == Status.SUCCEEDED
        outputs[name] = row.output if ok else None
        if ok:
            _apply_changes(merged, base or {}, row.context or {})
    if node.kind == "parallel":
        return outputs, merged
    return [outputs[i] for i in range(len(scopes))], merged


def _apply_changes(merged: dict, base: dict, after: dict) -> None:
    """Apply a branch's changes against the fork snapshot, field by field.

    Dict fields merge key by key (two map items each adding a finding keep both); any
    other value that changed replaces the field.
    """
    for field, value in after.items():
        before = base.get(field)
        if value == before:
            continue
        if isinstance(value, dict) and isinstance(before, dict) \
                and isinstance(merged.get(field), dict):
            merged[field] = dict(merged[field])
            _apply_changes(merged[field], before, value)
            for gone in before.keys() - value.keys():
                merged[field].pop(gone, None)
        else:
            merged[field] = value


# -- continuations (the Celery driver) ----------------------------------------------------
def continuation(gate: Gate) -> list[Any]:
    """What a task at the end of its Celery chain sends next, as frontier parts.

    Canvas chains stop after a fork or a decision (workers/canvas.py); what follows is read
    from the plan here, once the node before it is done: the rest of its scope, its
    composite's join or exit test, the run's finish; at the end of a fork's branch, the
    join when this branch was the last to arrive, and the next branch of a fork with
    ``max_concurrency``.
    """
    plan, run_id, key = gate.loaded.plan, gate.run.id, gate.step.key
    ends = plan.arrival(key)
    if ends is None:
        status, decisions = scope_state(run_id, plan.locate(key)[0].prefix)
        rest = plan.after(key, status, decisions)
        return [rest] if rest is not None else []
    fork, _ = ends
    if gate.arrival is None:  # a redelivery: the arrival was counted before
        return [Call("join", fork.key)] if _join_waits(run_id, fork.key) else []
    parts: list[Any] = [Call("join", fork.key)] if gate.arrival.open <= 0 else []
    if fork.node.step.max_concurrency:
        nxt = _next_branch(run_id, plan, fork)
        if nxt is not None:
            parts.append(nxt)
    return parts


def _join_waits(run_id: str, key: str) -> bool:
    return StepRun.objects.filter(run_id=run_id, key=key, status=Status.PENDING,
                                  branches_open__lte=0).exists()


def _next_branch(run_id: str, plan: Plan, fork: Ref) -> Any | None:
    """The next unsent branch that still has work (after a resume some are done)."""
    while (position := steps_sql.release(run_id, fork.key)) is not None:
        status, decisions = subtree_state(run_id, plan.branch_prefix(fork, position))
        branch = plan.branch_frontier(fork, position, status, decisions)
        if branch.parts:
            return branch
    return None


# -- the end -----------------------------------------------------------------------------
def run_finish(run_id: str) -> bool:
    """Mark a run succeeded with its last node's output; False when it was not running."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None or run.status != Run.Status.RUNNING:
        return False
    plan = loaded_for(run).plan
    last = plan.last_of_scope(plan.root, "")
    row = StepRun.objects.filter(run_id=run_id, key=last.key).first()
    if row is None or row.status not in DONE:
        return False
    done = Run.objects.filter(id=run_id, status=Run.Status.RUNNING).update(
        status=Run.Status.SUCCEEDED, output=row.output, finished_at=Now())
    if done and run.parent_id:
        run_ended(run_id)
    return bool(done)


def run_ended(run_id: str) -> None:
    """A run reached a final state: wake a parent waiting on it once that commits."""
    from apps.runs.services.children import parent_wake

    transaction.on_commit(lambda: parent_wake(run_id))
