"""Plans: a pipeline compiled to nodes with stable keys, and the frontier of a run.

A step key is the path of node names (CONTRACTS.md §3)::

    parse                 a step of the top-level pipeline
    fan/d/double          step ``double`` in branch ``d`` of parallel ``fan``
    sign/big/negate       step ``negate`` in branch ``big`` chosen by ``sign``
    grow[4]/inc           step ``inc`` in iteration 4 of loop ``grow``
    each[2]/double        step ``double`` for item 2 of map ``each``
    double#2              the second sibling named ``double``

Decisions are nodes too, so they are checkpointed and replayed rather than re-evaluated:
``each@items`` (the list of map items), ``sign@choice`` (the branch key chosen) and
``grow[4]@exit`` (iteration 4's exit test). A composite node's own key (``fan``) is its
join, which writes the combined output.

Three kinds of task run a plan: ``step`` (a leaf), ``decide`` (a decision, which then
expands into the work it decided) and ``join`` (a composite's result), plus ``finish``
for the run. ``frontier`` describes what is left to do as a small canvas (``Chain``,
``Fork``, ``Call``) that the Celery compiler and the embedded driver both execute.
This module is pure Python: no Django, no Celery.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowops._steps import (
    DEFAULT_BRANCH,
    BranchStep,
    LoopStep,
    MapStep,
    ParallelStep,
    Pipeline,
    Step,
)
from flowops.exceptions import PipelineDefinitionError

SUCCEEDED = "succeeded"
SKIPPED = "skipped"
DONE = frozenset({SUCCEEDED, SKIPPED})


@dataclass(frozen=True)
class Call:
    """One task invocation: ``task`` is step, decide, join or finish."""

    task: str
    key: str


@dataclass(frozen=True)
class Chain:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Fork:
    branches: tuple[Chain, ...]
    join: Call
    max_concurrency: int | None = None
    positions: tuple[int, ...] = ()  # each branch's place among all of the fork's branches
    chunked: bool = False  # a map's items: the Celery canvas may send several in a message
    chunk_size: int | None = None  # the map's own chunk size (None: chosen from the count)


@dataclass(eq=False)
class Node:
    name: str
    step: Step
    seq: Seq
    index: int
    children: dict[str, Seq] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.step.kind

    @property
    def is_leaf(self) -> bool:
        return self.step.is_leaf


@dataclass(eq=False)
class Seq:
    nodes: list[Node]
    owner: Node | None
    scope: str  # "" for the root, else the branch name, or "[]" for map items/loop iterations


@dataclass(frozen=True)
class Ref:
    """A node instance: the template node plus the key prefix of its scope."""

    node: Node
    prefix: str

    @property
    def key(self) -> str:
        return self.prefix + self.node.name


@dataclass(frozen=True)
class RowSpec:
    key: str
    name: str
    kind: str
    branches: int | None = None  # a parallel's join: its branch count
    sent: int | None = None  # a parallel's join with max_concurrency: branches sent first


_SEGMENT = re.compile(r"^(?P<name>[^\[\]@/]+)(?:\[(?P<index>\d+)\])?$")


class Plan:
    """A compiled pipeline. Build with ``Plan(pipeline)``."""

    def __init__(self, pipeline: Step | Pipeline):
        self.pipeline = Pipeline.of(pipeline)
        self.root = _compile_seq(self.pipeline, owner=None, scope="")
        self._refs: dict[str, tuple[Ref, str | None]] = {}

    # -- lookup ----------------------------------------------------------------------
    @property
    def first_step(self) -> Step:
        return self.root.nodes[0].step

    def locate(self, key: str) -> tuple[Ref, str | None]:
        """Return the node instance a key names, and the decision tag (``items`` ...) if any."""
        found = self._refs.get(key)
        if found is None:
            found = self._refs[key] = self._locate(key)
        return found

    def _locate(self, key: str) -> tuple[Ref, str | None]:
        base, _, tag = key.partition("@")
        segments = base.split("/")
        seq, prefix, i = self.root, "", 0
        while True:
            match = _SEGMENT.match(segments[i])
            if not match:
                raise KeyError(key)
            node = _find(seq, match["name"], key)
            if i == len(segments) - 1:
                if match["index"] is not None:
                    # ``grow[4]@exit``: the instance is the loop itself, iteration on the tag
                    if tag != "exit" or node.kind != "loop":
                        raise KeyError(key)
                    return Ref(node, prefix), f"exit:{match['index']}"
                if tag and tag != _decision_tag(node):
                    raise KeyError(key)
                return Ref(node, prefix), tag or None
            if match["index"] is not None:
                if node.kind not in ("map", "loop"):
                    raise KeyError(key)
                seq = node.children["[]"]
                prefix = f"{prefix}{node.name}[{match['index']}]/"
                i += 1
            else:
                if node.kind not in ("parallel", "branch") or i + 1 >= len(segments):
                    raise KeyError(key)
                branch = segments[i + 1]
                if branch not in node.children:
                    raise KeyError(key)
                seq = node.children[branch]
                prefix = f"{prefix}{node.name}/{branch}/"
                i += 2
                if i >= len(segments):
                    raise KeyError(key)

    def task_for(self, key: str) -> str:
        ref, tag = self.locate(key)
        if tag:
            return "decide"
        return "step" if ref.node.is_leaf else "join"

    # -- rows ------------------------------------------------------------------------
    def rows_for_scope(self, seq: Seq, prefix: str) -> Iterator[RowSpec]:
        """The StepRun rows that exist as soon as a scope is entered."""
        for node in seq.nodes:
            key = prefix + node.name
            if node.kind == "parallel":
                yield self.fork_row(key, node, len(node.children))
            else:
                yield RowSpec(key, node.name, node.kind)
            if node.kind == "parallel":
                for branch, child in node.children.items():
                    yield from self.rows_for_scope(child, f"{key}/{branch}/")
            elif node.kind in ("map", "branch"):
                tag = _decision_tag(node)
                yield RowSpec(f"{key}@{tag}", node.name, "decision")
            elif node.kind == "loop":
                yield from self.loop_iteration_rows(Ref(node, prefix), 0)

    @staticmethod
    def fork_row(key: str, node: Node, branches: int) -> RowSpec:
        limit = node.step.max_concurrency
        sent = min(limit, branches) if limit else None
        return RowSpec(key, node.name, node.kind, branches=branches, sent=sent)

    def loop_iteration_rows(self, loop: Ref, iteration: int) -> Iterator[RowSpec]:
        yield from self.rows_for_scope(loop.node.children["[]"], f"{loop.key}[{iteration}]/")
        yield RowSpec(f"{loop.key}[{iteration}]@exit", loop.node.name, "decision")

    def initial_rows(self) -> list[RowSpec]:
        return list(self.rows_for_scope(self.root, ""))

    def all_static_keys(self) -> list[RowSpec]:
        """Every row known before running, for ``validate``."""
        return self.initial_rows()

    # -- data flow -------------------------------------------------------------------
    def scope_of(self, ref: Ref) -> tuple[Seq, str]:
        return ref.node.seq, ref.prefix

    def owner_of(self, ref: Ref) -> tuple[Ref | None, str]:
        """The composite instance whose scope holds ``ref``, and how (branch name or index)."""
        seq = ref.node.seq
        if seq.owner is None:
            return None, ""
        owner_node = seq.owner
        # prefix looks like "<owner prefix><owner name>/<branch>/" or "...<name>[i]/"
        inner = ref.prefix[:-1]
        if seq.scope == "[]":
            head, _, index = inner.rpartition("[")
            owner_prefix = head[: len(head) - len(owner_node.name)]
            return Ref(owner_node, owner_prefix), index.rstrip("]")
        head, _, branch = inner.rpartition("/")
        owner_prefix = head[: len(head) - len(owner_node.name)]
        return Ref(owner_node, owner_prefix), branch

    def previous(self, ref: Ref) -> Ref | None:
        if ref.node.index == 0:
            return None
        return Ref(ref.node.seq.nodes[ref.node.index - 1], ref.prefix)

    def last_of_scope(self, seq: Seq, prefix: str) -> Ref:
        return Ref(seq.nodes[-1], prefix)

    def predecessors(self, key: str, state: Mapping[str, Any] | None = None) -> list[str]:
        """The task keys whose completion sent this task (a join waits for all of them).

        ``state`` maps decision keys to their outputs where a join needs them.
        """
        if key == "":
            return [self.last_of_scope(self.root, "").key]
        ref, tag = self.locate(key)
        if tag and tag.startswith("exit:"):
            return [self.last_of_scope(ref.node.children["[]"],
                                       f"{ref.key}[{tag[5:]}]/").key]
        if tag or ref.node.is_leaf:
            return self._entry_predecessors(ref)
        return self._join_predecessors(ref, state or {})

    def _entry_predecessors(self, ref: Ref) -> list[str]:
        prev = self.previous(ref)
        if prev is not None:
            return [prev.key]
        owner, how = self.owner_of(ref)
        if owner is None:
            return []
        kind = owner.node.kind
        if kind == "map":
            return [f"{owner.key}@items"]
        if kind == "branch":
            return [f"{owner.key}@choice"]
        if kind == "loop" and how != "0":
            return [f"{owner.key}[{int(how) - 1}]@exit"]
        return self._entry_predecessors(owner)

    def _join_predecessors(self, ref: Ref, state: Mapping[str, Any]) -> list[str]:
        node, key = ref.node, ref.key
        body = node.children.get("[]")
        if node.kind == "parallel":
            return [self.last_of_scope(seq, f"{key}/{b}/").key for b, seq in node.children.items()]
        if node.kind == "map":
            items = state.get(f"{key}@items") or []
            if not items:
                return [f"{key}@items"]
            return [self.last_of_scope(body, f"{key}[{i}]/").key for i in range(len(items))]
        if node.kind == "branch":
            choice = state.get(f"{key}@choice")
            if choice is None:
                return []
            return [self.last_of_scope(node.children[choice], f"{key}/{choice}/").key]
        iteration = state.get(f"{key}@last")
        return [] if iteration is None else [f"{key}[{iteration}]@exit"]

    # -- frontier --------------------------------------------------------------------
    def frontier(self, status: Mapping[str, str], decisions: Mapping[str, Any]) -> Chain:
        """What is left of the whole run, given row statuses and decision outputs."""
        rest = self._seq_frontier(self.root, "", status, decisions)
        return Chain((*rest.parts, Call("finish", "")))

    def node_frontier(self, ref: Ref, status: Mapping[str, str],
                      decisions: Mapping[str, Any]) -> Any | None:
        """What is left of one node instance (``None`` when it is done)."""
        key, node = ref.key, ref.node
        if status.get(key) in DONE:
            return None
        if node.is_leaf:
            return Call("step", key)
        if node.kind == "parallel" or node.kind == "map":
            if node.kind == "map" and status.get(f"{key}@items") not in DONE:
                return Call("decide", f"{key}@items")
            branches = [self.branch_frontier(ref, i, status, decisions)
                        for i in range(self.branch_count(ref, decisions))]
            return _fork(branches, Call("join", key), node.step)
        if node.kind == "branch":
            if status.get(f"{key}@choice") not in DONE:
                return Call("decide", f"{key}@choice")
            choice = decisions[f"{key}@choice"]
            rest = self._seq_frontier(node.children[choice], f"{key}/{choice}/", status, decisions)
            return Chain((*rest.parts, Call("join", key)))
        return self._loop_frontier(ref, status, decisions)

    def branch_count(self, fork: Ref, decisions: Mapping[str, Any]) -> int:
        if fork.node.kind == "parallel":
            return len(fork.node.children)
        return len(decisions.get(f"{fork.key}@items") or [])

    def branch_prefix(self, fork: Ref, position: int) -> str:
        if fork.node.kind == "parallel":
            return f"{fork.key}/{list(fork.node.children)[position]}/"
        return f"{fork.key}[{position}]/"

    def branch_frontier(self, fork: Ref, position: int, status: Mapping[str, str],
                        decisions: Mapping[str, Any]) -> Chain:
        """What is left of one branch (a parallel's by its place, a map's item)."""
        if fork.node.kind == "parallel":
            seq = list(fork.node.children.values())[position]
        else:
            seq = fork.node.children["[]"]
        return self._seq_frontier(seq, self.branch_prefix(fork, position), status, decisions)

    # -- continuations (the Celery driver) -------------------------------------------
    def arrival(self, key: str) -> tuple[Ref, int] | None:
        """The fork and branch place whose branch ends when node instance ``key`` is done."""
        ref, tag = self.locate(key)
        if tag or ref.node.index != len(ref.node.seq.nodes) - 1:
            return None
        owner, how = self.owner_of(ref)
        if owner is None or owner.node.kind not in ("parallel", "map"):
            return None
        if owner.node.kind == "parallel":
            return owner, list(owner.node.children).index(how)
        return owner, int(how)

    def after(self, key: str, status: Mapping[str, str],
              decisions: Mapping[str, Any]) -> Chain | None:
        """What follows node instance ``key`` (a step or a join) once it is done.

        ``None`` at the end of a fork's branch: the branch's arrival decides what follows.
        """
        ref, _ = self.locate(key)
        seq = ref.node.seq
        rest = Seq(seq.nodes[ref.node.index + 1:], seq.owner, seq.scope)
        parts = self._seq_frontier(rest, ref.prefix, status, decisions).parts
        if parts:
            return Chain(parts)
        owner, how = self.owner_of(ref)
        if owner is None:
            return Chain((Call("finish", ""),))
        if owner.node.kind in ("parallel", "map"):
            return None
        if owner.node.kind == "branch":
            return Chain((Call("join", owner.key),))
        return Chain((Call("decide", f"{owner.key}[{how}]@exit"),))

    def _loop_frontier(self, ref: Ref, status, decisions) -> Any:
        key, body = ref.key, ref.node.children["[]"]
        iteration = 0
        while True:
            exit_key = f"{key}[{iteration}]@exit"
            if status.get(exit_key) not in DONE:
                rest = self._seq_frontier(body, f"{key}[{iteration}]/", status, decisions)
                return Chain((*rest.parts, Call("decide", exit_key)))
            if (decisions.get(exit_key) or {}).get("exit"):
                return Call("join", key)
            iteration += 1

    def _seq_frontier(self, seq: Seq, prefix: str, status, decisions) -> Chain:
        parts = []
        for node in seq.nodes:
            part = self.node_frontier(Ref(node, prefix), status, decisions)
            if part is None:
                continue
            parts.extend(part.parts if isinstance(part, Chain) else [part])
        return Chain(tuple(parts))

    def describe(self) -> Iterator[tuple[int, str, str]]:
        """(depth, key, kind) of every node known before running, for ``validate``."""
        yield from _describe(self.root, "", 0)


def _describe(seq: Seq, prefix: str, depth: int) -> Iterator[tuple[int, str, str]]:
    for node in seq.nodes:
        key = prefix + node.name
        yield depth, key, node.kind
        if node.kind == "parallel":
            for branch, child in node.children.items():
                yield from _describe(child, f"{key}/{branch}/", depth + 1)
        elif node.kind == "branch":
            yield depth + 1, f"{key}@choice", "decision"
            for branch, child in node.children.items():
                yield from _describe(child, f"{key}/{branch}/", depth + 1)
        elif node.kind == "map":
            yield depth + 1, f"{key}@items", "decision"
            yield from _describe(node.children["[]"], f"{key}[i]/", depth + 1)
        elif node.kind == "loop":
            yield from _describe(node.children["[]"], f"{key}[k]/", depth + 1)
            yield depth + 1, f"{key}[k]@exit", "decision"


def _fork(branches: list[Chain], join: Call, step: Step) -> Any:
    positions = tuple(i for i, b in enumerate(branches) if b.parts)
    if not positions:
        return join
    chunked = isinstance(step, MapStep)
    return Fork(tuple(branches[i] for i in positions), join, step.max_concurrency, positions,
                chunked=chunked, chunk_size=step.chunk_size if chunked else None)


def _decision_tag(node: Node) -> str | None:
    return {"map": "items", "branch": "choice"}.get(node.kind)


def _find(seq: Seq, name: str, key: str) -> Node:
    for node in seq.nodes:
        if node.name == name:
            return node
    raise KeyError(key)


def _compile_seq(pipeline: Pipeline, owner: Node | None, scope: str) -> Seq:
    if not pipeline.steps:
        raise PipelineDefinitionError("a pipeline needs at least one step")
    seq = Seq(nodes=[], owner=owner, scope=scope)
    seen: dict[str, int] = {}
    for index, item in enumerate(pipeline.steps):
        seen[item.name] = seen.get(item.name, 0) + 1
        name = item.name if seen[item.name] == 1 else f"{item.name}#{seen[item.name]}"
        node = Node(name=name, step=item, seq=seq, index=index)
        seq.nodes.append(node)
        if item.kind in ("step", "cached") and item.func is None and item.agent is None:
            raise PipelineDefinitionError(f"step {item.name!r} has neither a function nor an agent")
        if isinstance(item, ParallelStep):
            node.children = {b: _compile_seq(p, node, b) for b, p in item.branches.items()}
        elif isinstance(item, BranchStep):
            node.children = {b: _compile_seq(p, node, b) for b, p in item.branches.items()}
            if item.default is not None:
                node.children[DEFAULT_BRANCH] = _compile_seq(item.default, node, DEFAULT_BRANCH)
        elif isinstance(item, MapStep | LoopStep):
            node.children = {"[]": _compile_seq(item.body, node, "[]")}
    return seq
