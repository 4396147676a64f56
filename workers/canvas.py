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

A map whose items are one step each sends them in chunks: one ``flowops.items`` message
carries a contiguous run of item keys, which its task claims, runs and checkpoints one
after another (workers/executor.py). A broker message costs a worker ~3.6 ms (receive,
ack, result) and a trivial item ~2.4 ms more, which held a map to ~65 % of a plain
group's throughput (benchmarks/RESULTS.md §2). Each item keeps its own claim and
checkpoint, so exactly-once is unchanged: a redelivered chunk finds its done items done,
and recovery rebuilds the frontier item by item. Slow items keep their parallelism: a
chunk task that has run for ``FLOWOPS_INLINE_SECONDS`` sends the rest of its chunk on,
in chunks that fit the time its items took so far (one item per message for model
calls). With ``max_concurrency`` the first N items go out one per message, and a task
whose item ends runs the item that ending released itself, up to a chunk's worth of
items or that time, so "at most N items at once" holds as before.
"""

from __future__ import annotations

import math

from celery import chain, group
from celery.canvas import Signature

from flowops._plan import Call, Chain, Fork

# A map without chunk_size gets chunks of ceil(items / CHUNKS) items, at most MAX_CHUNK:
# enough chunks for the workers to share (and a slow one to spill early), few enough
# messages that a trivial item's broker share is small (3.6 ms / 16 per item at 1000).
CHUNKS = 64
MAX_CHUNK = 32


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
    keys = _item_keys(fork)
    size = chunk_size(len(fork.branches), fork.chunk_size)
    if keys is not None and size > 1:
        return _chunks(run_id, keys, size, fork.max_concurrency)
    branches = fork.branches[:fork.max_concurrency] if fork.max_concurrency else fork.branches
    sigs = [to_signature(run_id, b) for b in branches]
    return sigs[0] if len(sigs) == 1 else group(sigs)


def chunk_size(items: int, chosen: int | None) -> int:
    """How many items of a map travel in one message."""
    return chosen or max(1, min(MAX_CHUNK, math.ceil(items / CHUNKS)))


def _item_keys(fork: Fork) -> list[str] | None:
    """The step keys of a map's items when each item is one step, else None."""
    if not fork.chunked:
        return None
    keys = []
    for branch in fork.branches:
        if len(branch.parts) != 1 or not _is_step(branch.parts[0]):
            return None
        keys.append(branch.parts[0].key)
    return keys


def _is_step(part) -> bool:
    return isinstance(part, Call) and part.task == "step"


def _chunks(run_id: str, keys: list[str], size: int, max_concurrency: int | None
            ) -> Signature:
    if max_concurrency:
        runs = [[key] for key in keys[:max_concurrency]]  # each arrival releases the next
    else:
        runs = [keys[i:i + size] for i in range(0, len(keys), size)]
    sigs = [items_signature(run_id, run, size) for run in runs]
    return sigs[0] if len(sigs) == 1 else group(sigs)


def items_signature(run_id: str, keys: list[str], size: int) -> Signature:
    from workers import executor

    return executor.items_task.si(run_id, keys, size)


def single_step(part) -> str | None:
    """The key of a frontier part that is one step and nothing else (a map item)."""
    if isinstance(part, Chain) and len(part.parts) == 1:
        part = part.parts[0]
    return part.key if _is_step(part) else None
