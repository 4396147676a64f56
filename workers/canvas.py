"""Compile a plan's frontier (``flowops._plan`` Chain / Fork / Call) into Celery canvas.

Sequences become ``chain``s of immutable signatures, forks become ``chord``s whose body is
the join task; only ``(run_id, key)`` travels (CONTRACTS.md §5). A fork with
``max_concurrency`` runs its branches in batches of that size, each batch a chord.
"""

from __future__ import annotations

from celery import chain, chord, group
from celery.canvas import Signature

from flowops._plan import Call, Chain, Fork


def to_signature(run_id: str, part) -> Signature:
    from workers import executor

    if isinstance(part, Call):
        if part.task == "finish":
            return executor.finish_task.si(run_id)
        return executor.TASKS[part.task].si(run_id, part.key)
    if isinstance(part, Chain):
        links = [to_signature(run_id, p) for p in part.parts]
        return links[0] if len(links) == 1 else chain(*links)
    if isinstance(part, Fork):
        return _fork(run_id, part)
    raise TypeError(f"not a canvas part: {part!r}")


def _fork(run_id: str, fork: Fork) -> Signature:
    from workers import executor

    branches = [to_signature(run_id, b) for b in fork.branches]
    join = to_signature(run_id, fork.join)
    size = fork.max_concurrency or len(branches)
    if size >= len(branches):
        return chord(group(branches), join)
    batches = [branches[i:i + size] for i in range(0, len(branches), size)]
    links = [chord(group(batch), executor.barrier_task.si()) for batch in batches]
    return chain(*links, join)
