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
"""

from __future__ import annotations

import logging

from celery import Task
from celery.exceptions import Ignore
from django.db import DatabaseError

from apps.runs.services import execution, steps_sql
from apps.runs.services.budget import budget_exhausted, describe, halt
from apps.runs.services.execution import Action, Gate
from apps.runs.services.journal import ClaimLost
from apps.runs.services.liveness import heartbeats
from apps.runs.services.steps_sql import Head
from flowops.telemetry import step_span

log = logging.getLogger("flowops.tasks")


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
            return self._gated(gate, run_id, key)

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
