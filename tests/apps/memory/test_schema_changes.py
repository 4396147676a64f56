"""Changing a table that holds rows: add, rename, remove, change type."""

from __future__ import annotations

import pytest

from apps.memory import services
from apps.memory.models import Column, Row
from apps.memory.services.schema import SchemaChangeError
from tests.apps.memory.conftest import column, rows_of


@pytest.fixture
def notes(db):
    table = services.table_create(name="notes", columns=[
        {"name": "title", "type": "text"}, {"name": "n", "type": "integer"},
        {"name": "flag", "type": "boolean"}])
    ids = [services.row_create(table=table, data=d).id for d in (
        {"title": "a", "n": 1, "flag": True}, {"title": "b", "n": 2}, {"title": "a"})]
    return table, ids


def test_an_added_column_fills_its_default_into_existing_rows(notes):
    table, _ = notes

    services.column_add(table=table, name="status", type="choice", options=["new", "done"],
                        default="new")

    assert [r["status"] for r in rows_of(table)] == ["new", "new", "new"]


def test_a_required_column_without_default_is_refused_while_rows_exist(notes):
    table, ids = notes

    with pytest.raises(SchemaChangeError) as caught:
        services.column_add(table=table, name="owner", required=True)

    assert caught.value.rows == ids
    assert not Column.objects.filter(name="owner").exists()


def test_a_bad_default_is_refused(notes):
    table, _ = notes

    with pytest.raises(services.MemoryValidationError) as caught:
        services.column_add(table=table, name="x", type="integer", default="many")

    assert caught.value.errors == {"default": "expected an integer, got text 'many'"}


def test_a_rename_keeps_the_values_and_the_key(notes):
    table, _ = notes
    title = column(table, "title")
    before = [r.data for r in Row.objects.order_by("pk")]

    services.column_rename(column=title, name="heading")

    assert [r.data for r in Row.objects.order_by("pk")] == before
    assert rows_of(table)[0]["heading"] == "a"
    assert column(table, "heading").key == title.key


def test_a_rename_onto_another_column_is_refused(notes):
    table, _ = notes

    with pytest.raises(services.MemoryValidationError) as caught:
        services.column_rename(column=column(table, "title"), name="n")

    assert caught.value.errors == {"name": "the table already has a column named 'n'"}


def test_removing_a_column_with_values_is_refused_unless_forced(notes):
    table, ids = notes
    flag = column(table, "flag")

    with pytest.raises(SchemaChangeError) as caught:
        services.column_remove(column=flag)
    assert caught.value.rows == [ids[0]]
    assert "flag" in rows_of(table)[0]

    services.column_remove(column=flag, force=True)
    assert not Column.objects.filter(pk=flag.pk).exists()
    assert all(flag.key not in r.data for r in Row.objects.all())


def test_removing_an_empty_column_needs_no_force(notes):
    table, _ = notes
    services.column_add(table=table, name="spare")

    services.column_remove(column=column(table, "spare"))

    assert list(table.columns.values_list("name", flat=True)) == ["title", "n", "flag"]


@pytest.mark.parametrize(("name", "type", "options", "values"), [
    ("n", "number", None, [1, 2, None]),
    ("n", "text", None, ["1", "2", None]),
    ("flag", "text", None, ["true", None, None]),
    ("n", "json", None, [1, 2, None]),
    ("title", "choice", ["a", "b"], ["a", "b", "a"]),
    ("title", "long_text", None, ["a", "b", "a"]),
])
def test_a_type_change_converts_every_value(notes, name, type, options, values):
    table, _ = notes

    services.column_change_type(column=column(table, name), type=type, options=options)

    assert [r.get(name) for r in rows_of(table)] == values
    assert column(table, name).type == type


@pytest.mark.parametrize(("name", "type", "options", "blocking", "why"), [
    ("title", "choice", ["a"], [1], "'b' is not one of 'a'"),
    ("title", "integer", None, [0, 1, 2], "expected an integer, got 'a'"),
    ("flag", "number", None, [0], "expected a number, got a boolean (True)"),
    ("title", "email", None, [0, 1, 2], "not a valid email address: 'a'"),
])
def test_a_type_change_that_does_not_convert_is_refused_naming_the_rows(
        notes, name, type, options, blocking, why):
    table, ids = notes
    before = rows_of(table)

    with pytest.raises(SchemaChangeError) as caught:
        services.column_change_type(column=column(table, name), type=type, options=options)

    assert caught.value.rows == [ids[i] for i in blocking]
    assert list(caught.value.errors) == ["type"]  # not the column's name: it may be "type"
    assert why in caught.value.errors["type"]
    assert rows_of(table) == before
    assert column(table, name).type != type or options is not None


def test_making_a_column_unique_is_refused_while_values_repeat(notes):
    table, ids = notes

    with pytest.raises(SchemaChangeError) as caught:
        services.column_update(column=column(table, "title"), unique=True)

    assert caught.value.rows == [ids[0], ids[2]]
    assert column(table, "title").unique is False


def test_making_a_column_required_is_refused_while_rows_lack_it(notes):
    table, ids = notes

    with pytest.raises(SchemaChangeError) as caught:
        services.column_update(column=column(table, "n"), required=True)

    assert caught.value.rows == [ids[2]]


def test_new_options_and_other_rules_change_together(db):
    table = services.table_create(name="plans", columns=[
        {"name": "plan", "type": "choice", "options": ["free", "pro"]}])
    services.row_create(table=table, data={"plan": "free"})

    services.column_update(column=column(table, "plan"), options=["free", "pro", "team"],
                           required=True, indexed=True)

    plan = column(table, "plan")
    assert (plan.options, plan.required, plan.indexed) == (["free", "pro", "team"], True, True)


def test_unsaved_edits_on_the_callers_column_are_not_written(notes):
    # given a caller's instance edited in memory (as a form does) but never converted
    table, _ = notes
    edited = column(table, "n")
    edited.type, edited.unique = "text", True

    # when it is only renamed
    services.column_rename(column=edited, name="count")

    # then the rename is stored and nothing else changed
    stored = column(table, "count")
    assert (stored.type, stored.unique) == ("integer", False)
    assert [r.get("count") for r in rows_of(table)] == [1, 2, None]
