"""``flowops.memory`` outside a run (a plain script or a shell): the seed's example on a
fresh install, and every call validating through the services."""

from __future__ import annotations

import pytest

from apps.memory.models import Column, Row, Table
from apps.workflows.models import Workflow
from flowops import memory


def test_the_seed_example_creates_its_table_from_the_first_row(db):
    stored = memory.store(table="messages", workflow_id=None,
                          data={"type": "question", "content": "hi", "n": 1, "ok": True,
                                "meta": {"a": [1]}})

    columns = {c.name: (c.type, c.required) for c in Column.objects.all()}
    assert columns == {"type": ("text", False), "content": ("text", False),
                       "n": ("number", False), "ok": ("boolean", False),
                       "meta": ("json", False)}
    assert stored == {"id": Row.objects.get().id, "type": "question", "content": "hi", "n": 1,
                      "ok": True, "meta": {"a": [1]}}


def test_later_rows_must_fit_the_inferred_columns(db):
    memory.store(table="messages", data={"type": "question"})

    with pytest.raises(memory.MemoryValidationError) as caught:
        memory.store(table="messages", data={"type": 3, "mood": "ok"})

    assert caught.value.errors == {"data.mood": "unknown field (the columns are: type)",
                                   "data.type": "expected text, got int 3"}
    assert Row.objects.count() == 1


def test_a_workflow_is_named_by_id_or_slug_and_checked(db):
    workflow = Workflow.objects.create(slug="support")

    by_slug = memory.store(table="t", workflow_id="support", data={"a": "x"})
    by_id = memory.store(table="t", workflow_id=workflow.id, data={"a": "y"})

    assert {r.workflow_id for r in Row.objects.filter(pk__in=[by_slug["id"], by_id["id"]])} == {
        workflow.id}
    with pytest.raises(memory.MemoryValidationError) as caught:
        memory.store(table="t", workflow_id="nope", data={"a": "z"})
    assert caught.value.errors == {"workflow_id": "no workflow 'nope'"}
    assert Row.objects.count() == 2


def test_query_get_update_delete_count(db):
    memory.define_table("tasks", columns=[{"name": "title", "type": "text", "required": True},
                                          {"name": "points", "type": "integer"}])
    ids = [memory.store(table="tasks", data={"title": t, "points": p})["id"]
           for t, p in (("a", 3), ("b", 8), ("c", 1))]

    assert [r["title"] for r in memory.query("tasks", where={"points": {"gte": 3}},
                                             order_by="-points")] == ["b", "a"]
    assert memory.query("tasks", limit=1) == [{"id": ids[0], "title": "a", "points": 3}]
    assert memory.update("tasks", ids[2], {"points": 2}) == {"id": ids[2], "title": "c",
                                                             "points": 2}
    assert memory.get("tasks", ids[2])["points"] == 2
    assert memory.delete("tasks", ids[0]) is True
    assert memory.delete("tasks", ids[0]) is False
    assert memory.get("tasks", ids[0]) is None
    assert memory.count("tasks") == 2
    assert memory.count("tasks", where={"title": {"in": ["b", "x"]}}) == 1


@pytest.mark.parametrize(("call", "errors"), [
    (lambda: memory.update("tasks", 999, {"title": "x"}), {"id": "table 'tasks' has no row 999"}),
    (lambda: memory.update("tasks", "1", {"title": "x"}),
     {"id": "expected a row id (an integer), got '1'"}),
    (lambda: memory.query("nope"), {"table": "no table named 'nope'"}),
    (lambda: memory.store(table="bad name", data={"a": 1}),
     {"table": "'bad name': Use letters, digits and underscores, starting with a letter or "
               "underscore (at most 63 characters)."}),
    (lambda: memory.store(table="tasks", data=["x"]),
     {"data": "expected an object of fields, got list ['x']"}),
    (lambda: memory.define_table("tasks", columns=[{"name": "title", "type": "integer"}]),
     {"columns": "table 'tasks' exists and its columns differ for: ['title']; change them "
                 "in the admin or with the schema services"}),
])
def test_bad_calls_name_what_is_wrong_and_write_nothing(db, call, errors):
    memory.define_table("tasks", columns=[{"name": "title", "type": "text"}])

    with pytest.raises(memory.MemoryValidationError) as caught:
        call()

    assert caught.value.errors == errors
    assert Row.objects.count() == 0
    assert list(Table.objects.values_list("name", flat=True)) == ["tasks"]


def test_define_table_again_with_the_same_columns_is_fine(db):
    spec = [{"name": "email", "type": "email", "unique": True}]

    first = memory.define_table("contacts", columns=spec)

    assert memory.define_table("contacts", columns=spec) == first
    assert first["columns"][0]["unique"] is True
