"""The base class of every FlowOps task (CONTRACTS.md §6).

Contract of a step task ``(run_id, key)`` before its body runs. Usually one statement
does all of it: the claim of a pending step that holds only while the run is running
within its limits (``execution.fast_gate``). Otherwise, in order:

0. ``before_step``, the budget pre-check: a run whose limit is reached halts -> ``Ignore``;
1. the run is not running (halted, cancelled, failed, paused, finished) -> ``Ignore``;
2. the step is claimed with one conditional UPDATE that increments ``attempt`` (the
   fencing token); a dead owner's step is taken over the same way;
3. already succeeded and its continuation started -> ``Ignore`` (a pure duplicate);
   succeeded but the continuation never started -> the body sees ``Action.RESEND`` and
   returns without running again, so the continuation is sent (by Celery within a
   chain, by the task at a chain's end);
4. running and alive elsewhere -> ``Ignore``; attempts exhausted -> the step and the run
   fail with "worker lost N times in step x", and the task ends with ``Ignore``.

A stop for any of these is ``Ignore``, never a plain failure, which would fail the
surrounding chain. A step whose own code fails is recorded as failed, the run
with it, and then the task fails so Celery stops the chain.

The same contract holds for each item of a map's chunk (``run_held``): the chunk's task
delivers its items to the step task in its own process, one by one.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from celery import Task
from celery.exceptions import Ignore
from django.conf import settings
from django.db import DatabaseError

from apps.runs.models import StepRun
from apps.runs.services import execution, steps_sql
from apps.runs.services.budget import budget_exhausted, describe, halt
from apps.runs.services.execution import Action, Gate
from apps.runs.services.journal import ClaimLost
from apps.runs.services.liveness import heartbeats
from apps.runs.services.steps_sql import Head
from flowops._plan import DONE
from flowops.telemetry import step_span
from workers.canvas import single_step, to_signature

log = logging.getLogger("flowops.tasks")


STEP_TASK = "flowops.step"


def _step_link(link: dict, run_id: str) -> str | None:
    """The key of a chain link that is a step of this run, else None."""
    args = link.get("args") or ()
    if link.get("task") == STEP_TASK and len(args) == 2 and args[0] == run_id:
        return args[1]
    return None


class StepTaskFailed(Exception):
    """The step's code failed; the run is already marked failed."""


class FlowOpsTask(Task):
    acks_late = True
    reject_on_worker_lost = True
    typing = False  # the base class adds ``gate=`` to the body's arguments

    step_task = False  # tasks whose arguments are (run_id, step_key)
    task_kind = ""  # step, decide or join

    def __call__(self, *args, **kwargs):
        if not self.step_task:
            return super().__call__(*args, **kwargs)
        run_id, key = args
        started = time.monotonic()
        result = self._deliver(run_id, key)
        while (nxt := self._next_inline(run_id, started)) is not None:
            result = self._deliver(run_id, nxt)
        return result

    def _deliver(self, run_id: str, key: str):
        with step_span(run_id, key, self.task_kind):
            try:
                gate = execution.fast_gate(run_id=run_id, key=key, task=self.task_kind)
                if gate is None:
                    gate = self._checked_gate(run_id, key)
            except (Ignore, DatabaseError):
                raise  # the database may be briefly away: the message comes back
            except Exception as exc:  # e.g. the script does not load on this worker
                execution.run_fail(run_id, key, exc)
                raise Ignore() from None
            if gate.done and self._skip_done_links(run_id):
                return None  # Celery sends the first link that is not done
            return self._gated(gate, run_id, key)

    # -- running a map's items in this process -----------------------------------------------
    def run_held(self, run_id: str, key: str, held: deque[str]) -> bool:
        """Deliver step ``key`` here, for a task that runs a chunk of a map's items.

        Single-step branches that the step's end releases (``max_concurrency``) are added
        to ``held`` for the chunk's task to run or send. False when the step failed, and
        the run with it; a stop the gate decides (a duplicate, a live owner) is True.
        """
        self.push_request(args=[run_id, key], chain=None, is_eager=False, held=held)
        try:
            self._deliver(run_id, key)
        except Ignore:
            pass
        except StepTaskFailed:
            return False
        finally:
            self.pop_request()
        return True

    def send_next(self, run_id: str, parts: list) -> None:
        """Send what follows a step, keeping the branches a chunk's task runs itself."""
        held = getattr(self.request, "held", None)
        for part in parts:
            key = single_step(part) if held is not None else None
            if key is None:
                to_signature(run_id, part).apply_async()
            else:
                held.append(key)

    # -- running a chain's next links in this process ---------------------------------------
    def _next_inline(self, run_id: str, started: float) -> str | None:
        """The next link of this chain when it is a step this task can run itself.

        Sending a link through the broker costs a plain Celery chain ~2.5 ms here; a step
        task runs the following steps of its chain itself (popping them from the chain,
        so Celery continues after them) while it has run for less than
        FLOWOPS_INLINE_SECONDS. Each step still has its own claim and checkpoint.
        """
        chain = self.request.chain
        if (self.request.is_eager or not chain or self.name != STEP_TASK
                or time.monotonic() - started >= settings.FLOWOPS_INLINE_SECONDS):
            return None
        key = _step_link(chain[-1], run_id)
        if key is not None:
            chain.pop()
        return key

    def _skip_done_links(self, run_id: str) -> bool:
        """A redelivered message of a done step: skip the done links that follow it.

        A worker that ran several links of its chain itself and died has only the first
        link's message come back; Celery then sends the first link not done (whose dead
        owner's step is taken over there). Never skips the last link, so what follows
        the chain is still sent by a task that knows it.
        """
        chain = self.request.chain
        if self.request.is_eager or not chain:
            return False
        keys = []
        for link in reversed(chain[1:]):
            key = _step_link(link, run_id)
            if key is None:
                break
            keys.append(key)
        done = set(StepRun.objects.filter(run_id=run_id, key__in=keys, status__in=DONE)
                   .values_list("key", flat=True))
        while len(chain) > 1 and _step_link(chain[-1], run_id) in done:
            chain.pop()
        return True

    def _checked_gate(self, run_id: str, key: str) -> Gate:
        head = steps_sql.read_head(run_id)
        if head is None:
            log.info("ignore %s %s/%s: unknown run", self.name, run_id, key)
            raise Ignore()
        self.before_step(head, key)
        return execution.gate(run_id=run_id, key=key, task=self.task_kind, head=head)

    def _gated(self, gate: Gate, run_id: str, key: str):
        if gate.action is Action.IGNORE:
            log.info("ignore %s %s/%s: %s", self.name, run_id, key, gate.reason)
            raise Ignore()
        if gate.action is Action.RESEND:
            return self.run(run_id, key, gate=gate)
        heartbeats.track(gate.step.id)
        try:
            return self.run(run_id, key, gate=gate)
        except ClaimLost as exc:
            log.warning("%s", exc)
            raise Ignore() from None
        except (Ignore, StepTaskFailed):
            raise
        except Exception as exc:
            if type(exc).__module__.startswith("celery"):
                raise  # Retry, replace and friends are control flow
            execution.step_fail(gate.run, gate.step, gate.loaded, exc)
            raise
        finally:
            heartbeats.untrack(gate.step.id)

    def before_step(self, head: Head, key: str) -> None:
        """The budget pre-check: a step of a run whose limit is reached never starts.

        ``head`` carries the check's answer from the task's first query; the ledger is
        read again only when a limit looks reached.
        """
        if not head.budget_spent:
            return
        run_id = head.run.id
        budget = budget_exhausted(run_id)
        if budget is not None:
            halt(run_id=run_id, step_key=key,
                 message=f"the budget is spent before {key}: {describe(budget)}")
            raise Ignore()
