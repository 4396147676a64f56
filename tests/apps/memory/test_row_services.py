"""Every validation rule on the row services: a clear error naming the field, nothing stored."""

from __future__ import annotations

import pytest

from apps.memory import services
from apps.memory.models import Row
from apps.memory.services import MemoryValidationError
from tests.apps.memory.conftest import rows_of


def refused(table, data, **kwargs) -> dict[str, str]:
    with pytest.raises(MemoryValidationError) as caught:
        services.row_create(table=table, data=data, **kwargs)
    return caught.value.errors


def test_a_valid_row_is_stored_in_its_stored_form(people):
    row = services.row_create(table=people, data={
        "email": "ann@example.com", "age": 41, "score": 2.5, "born": "1983-04-05",
        "seen": "2024-01-02T03:04:05+02:00", "kind": "lead", "site": "https://ann.example",
        "bio": "long\ntext", "meta": {"tags": ["a"]}})

    assert rows_of(people) == [{
        "email": "ann@example.com", "age": 41, "score": 2.5, "active": True,
        "born": "1983-04-05", "seen": "2024-01-02T01:04:05.000000+00:00", "kind": "lead",
        "site": "https://ann.example", "bio": "long\ntext", "meta": {"tags": ["a"]}}]
    assert set(row.data) == {c.key for c in people.columns.all()}


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"email": "a@b.co", "nickname": "x"}, "nickname", "unknown field (the columns are: email"),
    ({"age": 3}, "email", "required"),
    ({"email": None}, "email", "required"),
    ({"email": "not an email"}, "email", "not a valid email address: 'not an email'"),
    ({"email": "a@b.co", "age": "41"}, "age", "expected an integer, got text '41'"),
    ({"email": "a@b.co", "age": 4.5}, "age", "expected an integer, got float 4.5"),
    ({"email": "a@b.co", "age": True}, "age", "expected an integer, got a boolean (True)"),
    ({"email": "a@b.co", "score": "high"}, "score", "expected a number, got text 'high'"),
    ({"email": "a@b.co", "active": 1}, "active", "expected true or false, got int 1"),
    ({"email": "a@b.co", "born": "5 April"}, "born", "expected a date (YYYY-MM-DD)"),
    ({"email": "a@b.co", "seen": "yesterday"}, "seen", "expected an ISO 8601 datetime"),
    ({"email": "a@b.co", "kind": "friend"}, "kind", "'friend' is not one of 'lead', 'customer'"),
    ({"email": "a@b.co", "site": "ann.example"}, "site", "not a valid URL: 'ann.example'"),
    ({"email": "a@b.co", "bio": 7}, "bio", "expected text, got int 7"),
    ({"email": "a@b.co", "meta": {1, 2}}, "meta", "expected a JSON value"),
])
def test_a_wrong_value_is_refused_naming_the_field_and_nothing_is_stored(people, data, field,
                                                                         message):
    errors = refused(people, data)

    assert list(errors) == [f"data.{field}"]
    assert errors[f"data.{field}"].startswith(message)
    assert Row.objects.count() == 0


def test_every_wrong_field_is_named_at_once(people):
    errors = refused(people, {"email": "x", "age": "y", "color": "red"})

    assert sorted(errors) == ["data.age", "data.color", "data.email"]


def test_a_duplicate_in_a_unique_column_is_refused(people):
    first = services.row_create(table=people, data={"email": "a@b.co"})

    errors = refused(people, {"email": "a@b.co", "age": 5})

    assert errors == {"data.email": f"'a@b.co' is already taken in row {first.id} (the column is "
                               "unique)"}
    assert rows_of(people) == [{"email": "a@b.co", "active": True}]


def test_an_update_checks_only_the_fields_it_names(people):
    row = services.row_create(table=people, data={"email": "a@b.co", "age": 3})

    services.row_update(row=row, data={"age": 4, "kind": "customer"})

    assert rows_of(people) == [{"email": "a@b.co", "age": 4, "active": True,
                                "kind": "customer"}]


@pytest.mark.parametrize(("data", "field"), [
    ({"age": "x"}, "age"), ({"email": None}, "email"), ({"color": "red"}, "color"),
    ({"email": "b@b.co"}, "email"),
])
def test_a_refused_update_changes_nothing(people, data, field):
    services.row_create(table=people, data={"email": "b@b.co"})
    row = services.row_create(table=people, data={"email": "a@b.co", "age": 3})

    with pytest.raises(MemoryValidationError) as caught:
        services.row_update(row=row, data=data)

    assert list(caught.value.errors) == [f"data.{field}"]
    assert rows_of(people)[1] == {"email": "a@b.co", "age": 3, "active": True}


def test_an_update_to_none_empties_an_optional_field(people):
    row = services.row_create(table=people, data={"email": "a@b.co", "age": 3})

    services.row_update(row=row, data={"age": None})

    assert rows_of(people) == [{"email": "a@b.co", "active": True}]


def test_an_update_may_keep_its_own_unique_value(people):
    row = services.row_create(table=people, data={"email": "a@b.co"})

    services.row_update(row=row, data={"email": "a@b.co", "age": 1})

    assert rows_of(people)[0]["age"] == 1


def test_text_input_is_parsed_as_a_form_or_csv_gives_it(people):
    services.row_create(table=people, from_text=True, data={
        "email": "a@b.co", "age": "41", "score": "2.5", "active": "no", "meta": '{"a": 1}',
        "born": "", "kind": "lead"})

    assert rows_of(people) == [{"email": "a@b.co", "age": 41, "score": 2.5, "active": False,
                                "meta": {"a": 1}, "kind": "lead"}]


def test_a_row_delete_removes_the_row(people):
    row = services.row_create(table=people, data={"email": "a@b.co"})

    services.row_delete(row=row)

    assert Row.objects.count() == 0


def test_a_table_name_must_be_an_identifier_and_unique(db):
    with pytest.raises(MemoryValidationError) as caught:
        services.table_create(name="my table")
    assert list(caught.value.errors) == ["name"]

    services.table_create(name="t")
    with pytest.raises(MemoryValidationError) as caught:
        services.table_create(name="t")
    assert caught.value.errors == {"name": "a table named 't' exists"}


def test_a_table_with_a_bad_column_is_not_created(db):
    from apps.memory.models import Table

    with pytest.raises(MemoryValidationError) as caught:
        services.table_create(name="t", columns=[{"name": "a"}, {"name": "b", "type": "money"}])

    assert caught.value.errors == {"columns[1].type": "'money' is not a column type (text, "
                                   "long_text, number, integer, boolean, date, datetime, "
                                   "choice, json, url, email)"}
    assert not Table.objects.exists()


@pytest.fixture
def clashing(db):
    """Columns named like the keys of definition errors."""
    return services.table_create(name="clash", columns=[
        {"name": "name", "type": "integer"}, {"name": "type", "type": "integer"},
        {"name": "data", "type": "integer"}])


def test_value_errors_sit_under_data_even_for_columns_named_like_definitions(clashing):
    errors = refused(clashing, {"name": "x", "type": "y", "data": "z"})

    assert errors == {"data.name": "expected an integer, got text 'x'",
                      "data.type": "expected an integer, got text 'y'",
                      "data.data": "expected an integer, got text 'z'"}
    assert Row.objects.count() == 0


def test_definition_errors_name_the_part_of_the_definition(clashing):
    from apps.memory.services.schema import SchemaChangeError
    from tests.apps.memory.conftest import column

    services.row_create(table=clashing, data={"name": 1, "type": 2})

    with pytest.raises(SchemaChangeError) as removing:
        services.column_remove(column=column(clashing, "type"))
    with pytest.raises(MemoryValidationError) as creating:
        services.table_create(name="t2", columns=[{"name": "type"},
                                                  {"name": "name", "type": "choice"}])

    assert list(removing.value.errors) == ["force"]
    assert removing.value.message.startswith("column 'type', force: rows hold values")
    assert creating.value.errors == {
        "columns[1].options": "a choice column needs a list of distinct, non-empty texts"}
