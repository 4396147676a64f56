"""The query builder: operators, ordering, limits, and errors naming the field."""

from __future__ import annotations

import pytest

from apps.memory import services
from apps.memory.selectors import row_filter, row_list


@pytest.fixture
def tasks(db):
    table = services.table_create(name="tasks", columns=[
        {"name": "title", "type": "text"}, {"name": "points", "type": "integer"},
        {"name": "done", "type": "boolean"}, {"name": "due", "type": "date"},
        {"name": "weight", "type": "number"}])
    for data in ({"title": "Write docs", "points": 3, "done": True, "due": "2024-05-01",
                  "weight": 1.5},
                 {"title": "fix 100% bug", "points": 8, "done": False, "due": "2024-04-01"},
                 {"title": "review", "points": 1},
                 {"title": "Deploy docs", "points": 5, "done": False, "weight": 2}):
        services.row_create(table=table, data=data)
    return table


def titles(table, **kwargs) -> list[str]:
    columns, rows = row_list(table=table, **kwargs)
    return [services.row_to_dict(r, columns)["title"] for r in rows]


@pytest.mark.parametrize(("where", "expected"), [
    ({"title": "review"}, ["review"]),
    ({"points": {"eq": 8}}, ["fix 100% bug"]),
    ({"done": False}, ["fix 100% bug", "Deploy docs"]),
    ({"done": {"not": True}}, ["fix 100% bug", "review", "Deploy docs"]),
    ({"points": {"lt": 3}}, ["review"]),
    ({"points": {"lte": 3}}, ["Write docs", "review"]),
    ({"points": {"gt": 3, "lt": 8}}, ["Deploy docs"]),
    ({"points": {"gte": 5}}, ["fix 100% bug", "Deploy docs"]),
    ({"weight": {"gte": 1.6}}, ["Deploy docs"]),
    ({"due": {"lt": "2024-04-15"}}, ["fix 100% bug"]),
    ({"title": {"contains": "DOCS"}}, ["Write docs", "Deploy docs"]),
    ({"title": {"contains": "100%"}}, ["fix 100% bug"]),
    ({"title": {"contains": "_"}}, []),
    ({"points": {"in": [1, 5, 7]}}, ["review", "Deploy docs"]),
    ({"points": {"in": []}}, []),
    ({"due": {"is_null": True}}, ["review", "Deploy docs"]),
    ({"due": {"is_null": False}}, ["Write docs", "fix 100% bug"]),
    ({"due": None}, ["review", "Deploy docs"]),
    ({"done": False, "points": {"gt": 5}}, ["fix 100% bug"]),
])
def test_where_operators(tasks, where, expected):
    assert titles(tasks, where=where) == expected


@pytest.mark.parametrize(("order_by", "expected"), [
    ("due", ["fix 100% bug", "Write docs", "review", "Deploy docs"]),
    ("-due", ["Write docs", "fix 100% bug", "review", "Deploy docs"]),
    ("weight", ["Write docs", "Deploy docs", "fix 100% bug", "review"]),
    ("-weight", ["Deploy docs", "Write docs", "fix 100% bug", "review"]),
])
def test_empty_values_sort_last_in_either_direction(tasks, order_by, expected):
    assert titles(tasks, order_by=order_by) == expected


def test_order_by_a_column_and_limit(tasks):
    assert titles(tasks, order_by="-points", limit=2) == ["fix 100% bug", "Deploy docs"]
    assert titles(tasks, order_by="due") == ["fix 100% bug", "Write docs", "review",
                                             "Deploy docs"]
    assert titles(tasks, order_by=["-id"]) == ["Deploy docs", "review", "fix 100% bug",
                                              "Write docs"]


@pytest.mark.parametrize(("kwargs", "errors"), [
    ({"where": {"colour": "red"}}, {"where.colour": "unknown field (the columns are: title, "
                                                    "points, done, due, weight)"}),
    ({"where": {"points": "many"}}, {"where.points": "bad operand: expected an integer, got "
                                                     "text 'many'"}),
    ({"where": {"points": {"contains": "1"}}}, {"where.points": "contains works on text "
                                                                "columns, with a text operand"}),
    ({"where": {"points": {"in": 3}}}, {"where.points": "in takes a list of values"}),
    ({"where": {"due": {"is_null": "yes"}}}, {"where.due": "is_null takes true or false"}),
    ({"where": {"created_at": {"gte": "soon"}}}, {"where.created_at": "'soon' is not a valid "
                                                                      "created_at"}),
    ({"where": {"id": {"in": [1, "x"]}}}, {"where.id": "'x' is not a valid id"}),
    ({"order_by": "colour"}, {"order_by": "unknown field 'colour'"}),
    ({"limit": -1}, {"limit": "expected an integer from 0 to 10000"}),
])
def test_a_bad_query_names_the_field(tasks, kwargs, errors):
    with pytest.raises(services.MemoryValidationError) as caught:
        row_list(table=tasks, **kwargs)

    assert caught.value.errors == errors


def test_the_count_follows_the_filter(tasks):
    assert row_filter(table=tasks, where={"done": False}).count() == 2
