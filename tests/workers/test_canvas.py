"""How a map's items are compiled to Celery messages (workers/canvas.py): in chunks."""

from __future__ import annotations

import pytest

from flowops import Step, step
from flowops._plan import Plan
from workers.canvas import chunk_size, to_signature


@step
def double(x: int) -> int:
    return x * 2


@step
def inc(x: int) -> int:
    return x + 1


def _map_fork(pipeline, items: int):
    plan = Plan(pipeline)
    return plan.frontier({"each@items": "succeeded"}, {"each@items": list(range(items))}).parts[0]


def _messages(signature) -> list[tuple[str, tuple]]:
    tasks = signature.tasks if hasattr(signature, "tasks") else [signature]
    return [(t.task, tuple(t.args)) for t in tasks]


@pytest.mark.parametrize(("items", "chosen", "size"), [
    (1000, None, 16), (64, None, 1), (65, None, 2), (100_000, None, 32), (10, 3, 3), (5, 1, 1),
])
def test_chunk_size_comes_from_the_item_count_unless_the_map_sets_it(items, chosen, size):
    assert chunk_size(items, chosen) == size


def test_a_map_of_one_step_items_goes_out_in_contiguous_chunks():
    fork = _map_fork(Step.map_over("each", double, chunk_size=4), 10)

    assert _messages(to_signature("r1", fork)) == [
        ("flowops.items", ("r1", [f"each[{i}]/double" for i in range(0, 4)], 4)),
        ("flowops.items", ("r1", [f"each[{i}]/double" for i in range(4, 8)], 4)),
        ("flowops.items", ("r1", ["each[8]/double", "each[9]/double"], 4)),
    ]


def test_with_max_concurrency_the_first_items_go_out_one_per_message():
    fork = _map_fork(Step.map_over("each", double, chunk_size=4, max_concurrency=2), 10)

    assert _messages(to_signature("r1", fork)) == [
        ("flowops.items", ("r1", ["each[0]/double"], 4)),
        ("flowops.items", ("r1", ["each[1]/double"], 4)),
    ]


def test_chunk_size_one_sends_each_item_as_its_own_step_message():
    fork = _map_fork(Step.map_over("each", double, chunk_size=1), 3)

    assert _messages(to_signature("r1", fork)) == [
        ("flowops.step", ("r1", f"each[{i}]/double")) for i in range(3)]


def test_items_of_more_than_one_step_are_not_chunked():
    fork = _map_fork(Step.map_over("each", double >> inc, chunk_size=4), 2)

    signature = to_signature("r1", fork)

    assert [[(t.task, tuple(t.args)) for t in chain.tasks] for chain in signature.tasks] == [
        [("flowops.step", ("r1", f"each[{i}]/double")), ("flowops.step", ("r1", f"each[{i}]/inc"))]
        for i in range(2)]


def test_parallel_branches_are_not_chunked():
    plan = Plan(Step.parallel("fan", {"a": double, "b": inc}))

    signature = to_signature("r1", plan.frontier({}, {}).parts[0])

    assert _messages(signature) == [("flowops.step", ("r1", "fan/a/double")),
                                    ("flowops.step", ("r1", "fan/b/inc"))]
