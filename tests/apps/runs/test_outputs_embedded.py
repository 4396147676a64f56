"""Step outputs are JSON through the annotations; a script's models round-trip (§3)."""

from __future__ import annotations

import pytest

from apps.runs.models import Run
from tests.apps.runs.conftest import EMBEDDED, statuses, steps_of

pytestmark = EMBEDDED

MODELS = '''
import datetime as dt

from pydantic import BaseModel

from flowops import Step, step


class Line(BaseModel):
    sku: str
    qty: int


class Order(BaseModel):
    id: int
    placed: dt.datetime
    lines: list[Line]


SEEN = []
'''


def test_a_model_defined_in_the_script_round_trips_between_steps(make_flow):
    flow = make_flow(MODELS, '''
    @step
    def load(order_id: int) -> Order:
        return Order(id=order_id, placed=dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC),
                     lines=[Line(sku="a", qty=2), Line(sku="b", qty=3)])

    @step
    def count(order: Order) -> int:
        SEEN.append((type(order).__name__, type(order.placed).__name__,
                     type(order.lines[0]).__name__))
        return sum(line.qty for line in order.lines)

    pipeline = load >> count
    ''')

    run = flow.run(7)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 5)
    assert steps_of(run)["load"].output == {
        "id": 7, "placed": "2024-03-01T12:00:00Z",
        "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}]}
    assert flow.module.SEEN == [("Order", "datetime", "Line")]


def test_a_list_of_models_round_trips_through_a_map(make_flow):
    flow = make_flow(MODELS, '''
    @step
    def lines(text: str) -> list[Line]:
        return [Line(sku=s, qty=len(s)) for s in text.split()]

    @step
    def bump(line: Line) -> Line:
        SEEN.append(type(line).__name__)
        return Line(sku=line.sku.upper(), qty=line.qty + 1)

    pipeline = lines >> Step.map_over("each", bump)
    ''')

    run = flow.run("ab c")

    assert run.status == Run.Status.SUCCEEDED
    assert run.output == [{"sku": "AB", "qty": 3}, {"sku": "C", "qty": 2}]
    assert flow.module.SEEN == ["Line", "Line"]


def test_models_under_postponed_annotations_round_trip(make_flow):
    flow = make_flow('''
    from __future__ import annotations

    from pydantic import BaseModel

    from flowops import step

    class Point(BaseModel):
        x: int
        y: int

    KINDS = []

    @step
    def make(n: int) -> Point:
        return Point(x=n, y=n * 2)

    @step
    def norm(p: Point) -> int:
        KINDS.append(type(p).__name__)
        return p.x + p.y

    pipeline = make >> norm
    ''')

    run = flow.run(2)

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 6)
    assert flow.module.KINDS == ["Point"]


def test_a_model_as_run_input_is_validated_from_json(make_flow):
    flow = make_flow(MODELS, '''
    @step
    def total(order: Order) -> int:
        return sum(line.qty for line in order.lines)

    pipeline = total
    ''')

    run = flow.run({"id": 1, "placed": "2024-01-01T00:00:00Z",
                    "lines": [{"sku": "x", "qty": 4}]})

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 4)
    assert run.input == {"id": 1, "placed": "2024-01-01T00:00:00Z",
                         "lines": [{"sku": "x", "qty": 4}]}


def test_an_output_that_is_not_json_fails_the_step_naming_the_type(make_flow):
    flow = make_flow('''
    from flowops import step

    class Widget:
        pass

    CALLS = []

    @step
    def build(x: int):
        return Widget()

    @step
    def after(w) -> str:
        CALLS.append(w)
        return "never"

    pipeline = build >> after
    ''')

    run = flow.run(1)

    assert run.status == Run.Status.FAILED
    assert run.output is None
    assert run.error["step_key"] == "build"
    assert run.error["type"] == "TypeError"
    assert run.error["message"].startswith("step build: output cannot encode a Widget as JSON: ")
    assert steps_of(run)["build"].output is None
    assert statuses(run) == {"build": "failed", "after": "pending"}
    assert flow.module.CALLS == []


def test_an_output_annotated_with_an_unencodable_class_fails_naming_it(make_flow):
    flow = make_flow('''
    from flowops import step

    class Handle:
        pass

    @step
    def build(x: int) -> Handle:
        return Handle()

    pipeline = build
    ''')

    run = flow.run(1)

    assert run.status == Run.Status.FAILED
    assert run.error["type"] == "TypeError"
    assert run.error["message"].startswith("step build: output cannot encode a Handle as JSON: ")


def test_an_agent_step_runs_its_agent(make_flow):
    flow = make_flow('''
    from flowops import Step, step

    class Shouter:
        async def run(self, data):
            return str(data).upper() + "!"

    class Counter:
        def run(self, data):
            return len(data)

    pipeline = (Step.model_validate({"name": "Shout", "agent": Shouter()})
                >> Step.model_validate({"name": "Count", "agent": Counter()}))
    ''')

    run = flow.run("hey")

    assert (run.status, run.output) == (Run.Status.SUCCEEDED, 4)
    assert {k: r.output for k, r in steps_of(run).items()} == {"Shout": "HEY!", "Count": 4}


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
def test_an_output_that_does_not_fit_its_annotation_fails_the_producing_step(make_flow):
    flow = make_flow('''
    from flowops import step

    @step
    def make(x: int) -> int:
        return "abc"

    @step
    def use(x: int) -> int:
        return x

    pipeline = make >> use
    ''')

    run = flow.run(1)

    assert run.status == Run.Status.FAILED
    assert run.error["step_key"] == "make"
    assert steps_of(run)["make"].output is None
