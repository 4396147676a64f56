"""The run engine's extension points, for apps the engine must not import.

An integration (Slack approvals, say) connects a receiver in its ``AppConfig.ready()``;
the engine only sends. Receivers run after the engine's transaction has committed, never
inside it, and a receiver that raises is logged: it can never fail or stall a run.

* ``run_paused``: a run paused at a human step. Keyword arguments: ``run_id``,
  ``step_key`` and ``step`` (the ``HumanStep``, with its ``message`` and options).
* ``approval_decided``: a paused run was approved or rejected. Keyword arguments:
  ``run_id``, ``step_key``, ``approved`` (bool) and ``decided_by`` (``slack:U0123``,
  ``api:ada``, ``admin:ada``, or empty).
* ``recovery_swept``: a recovery pass ended (the periodic task, ``resume --stuck``, the
  embedded dispatcher's sweep). Receivers retry work that failed earlier.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

log = logging.getLogger("flowops.runs")

run_paused = Signal()
approval_decided = Signal()
recovery_swept = Signal()


def send(signal: Signal, **kwargs: Any) -> None:
    """Call the receivers now; log, never raise, what they raise."""
    for receiver, result in signal.send_robust(sender=None, **kwargs):
        if isinstance(result, Exception):
            log.error("hook %s failed: %s", getattr(receiver, "__qualname__", receiver), result,
                      exc_info=result)


def send_on_commit(signal: Signal, **kwargs: Any) -> None:
    """Call the receivers once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send(signal, **kwargs))
