"""``flowops.start_run``: a script starts another workflow as a child run.

Starting is a journaled database effect: the child run row and the journal entry commit
together, so a replayed parent gets the same child back instead of starting another.
``wait=True`` pauses the parent without holding a worker: its step gives its slot back,
and the child's end resumes it; the script then runs again from the top, its journaled
calls replay, and ``start_run`` returns the child's result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowops._runtime import current_journal


@dataclass(frozen=True)
class ChildRun:
    run_id: str
    workflow: str
    status: str
    output: Any = None


def start_run(workflow: str, input: Any = None, *, wait: bool = False,
              context: dict[str, Any] | None = None) -> ChildRun:
    """Start the active version of ``workflow`` (a slug) with ``input``.

    ``wait=False`` returns at once (status ``running``); ``wait=True`` returns when the
    child has succeeded, with its output, and raises ``StepFailed`` when it did not.
    """
    from flowops._django import ensure_django

    ensure_django()
    from apps.runs.services import children

    journal = current_journal()
    parent_id = getattr(journal, "run_id", None)
    args = (workflow, input, context)
    if journal is None:
        run_id = children.child_start(None, *args)
    else:
        run_id = journal.transact("flowops.start_run", children.child_start,
                                  (parent_id, *args), {}, returns=str)
    if wait:
        return children.child_wait(run_id)
    return ChildRun(run_id=run_id, workflow=workflow, status="running")
