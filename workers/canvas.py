"""Compile a plan's frontier (``flowops._plan`` Chain / Fork / Call) into Celery canvas.

Sequences become ``chain``s of immutable signatures and forks become ``group``s; only
``(run_id, key)`` travels (CONTRACTS.md §5). A chain stops after its first fork or
decision: what follows them is sent, once they are done, by the task that finishes them
(``execution.continuation``): the last branch to arrive sends the join, a decision sends
its expansion, the end of a chain sends the rest of its scope. Why not chords: a chord
costs a result write and a counter round trip in Redis per branch, which held a map of
trivial items to 45 % of a plain group's throughput (benchmarks/RESULTS.md); the
branch count in the join's row is written anyway, in the branch's checkpoint transaction.
A fork with ``max_concurrency`` sends that many branches; each arrival sends the next.
"""

from __future__ import annotations

from celery import chain, group
from celery.canvas import Signature

from flowops._plan import Call, Chain, Fork


def to_signature(run_id: str, part) -> Signature:
    from workers import executor

    if isinstance(part, Call):
        if part.task == "finish":
            return executor.finish_task.si(run_id)
        return executor.TASKS[part.task].si(run_id, part.key)
    if isinstance(part, Chain):
        links = []
        for p in part.parts:
            links.append(to_signature(run_id, p))
            if isinstance(p, Fork) or (isinstance(p, Call) and p.task == "decide"):
                break
        return links[0] if len(links) == 1 else chain(*links)
    if isinstance(part, Fork):
        return _fork(run_id, part)
    raise TypeError(f"not a canvas part: {part!r}")


def _fork(run_id: str, fork: Fork) -> Signature:
    branches = fork.branches[:fork.max_concurrency] if fork.max_concurrency else fork.branches
    sigs = [to_signature(run_id, b) for b in branches]
    return sigs[0] if len(sigs) == 1 else group(sigs)


def send(run_id: str, parts: list) -> None:
    for part in parts:
        to_signature(run_id, part).apply_async()
