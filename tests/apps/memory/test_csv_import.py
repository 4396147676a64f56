"""CSV import is all or nothing; each error names its line (and header)."""

from __future__ import annotations

import pytest

from apps.memory import services
from apps.memory.models import Row
from apps.memory.services.csv_io import CsvImportError
from tests.apps.memory.conftest import rows_of


def refused(table, text: str) -> dict[str, str]:
    with pytest.raises(CsvImportError) as caught:
        services.csv_import(table=table, source=text)
    assert caught.value.message.startswith("nothing imported: ")
    return caught.value.errors


def test_an_import_stores_every_line(people):
    count = services.csv_import(table=people, source=(
        "email,age,active,born,meta\n"
        "a@b.co,41,yes,1983-04-05,\"{\"\"x\"\": 1}\"\n"
        "c@d.co,,false,,\n"))

    assert count == 2
    assert rows_of(people) == [
        {"email": "a@b.co", "age": 41, "active": True, "born": "1983-04-05", "meta": {"x": 1}},
        {"email": "c@d.co", "active": False}]


@pytest.mark.parametrize(("text", "errors"), [
    ("email,age\na@b.co,1\nc@d.co,old\n", {"line 3, data.age": "expected an integer, got 'old'"}),
    ("email,age\na@b.co,1\n,2\n", {"line 3, data.email": "required"}),
    ("email,kind\na@b.co,friend\n", {"line 2, data.kind": "'friend' is not one of 'lead', "
                                                      "'customer'"}),
    ("email,age\na@b.co,1,9\n", {"line 2": "3 values for 2 columns"}),
    ("email,color\na@b.co,red\n", {"line 1": "unknown column 'color' (the columns are: "
                                             "active, age, bio, born, email, kind, meta, "
                                             "score, seen, site)"}),
    ("email,email\na@b.co,a@b.co\n", {"line 1": "column 'email' appears twice"}),
    ("", {"line 1": "the file is empty; expected a header line of column names"}),
    ("email\na@b.co\nx@y.co\na@b.co\n", {"line 4, data.email": "'a@b.co' repeats line 2 (the "
                                                          "column is unique)"}),
    ("email\n\"a@b.co\n", {"line 2": "not valid CSV: unexpected end of data"}),
])
def test_a_bad_line_refuses_the_whole_import(people, text, errors):
    assert refused(people, text) == errors
    assert Row.objects.count() == 0


def test_a_line_clashing_with_a_stored_row_refuses_the_import(people):
    held = services.row_create(table=people, data={"email": "a@b.co"})

    errors = refused(people, "email\nx@y.co\na@b.co\n")

    assert errors == {"line 3, data.email": f"'a@b.co' is already taken in row {held.id} (the "
                                       "column is unique)"}
    assert rows_of(people) == [{"email": "a@b.co", "active": True}]


def test_an_export_imports_back_the_same_rows(people):
    services.row_create(table=people, data={
        "email": "a@b.co", "age": 3, "score": 1.5, "active": False, "born": "2020-01-02",
        "kind": "lead", "meta": {"a": [1, "x"]}, "bio": "two, \"quoted\"\nlines"})
    text = services.csv_export(table=people)
    before = rows_of(people)
    Row.objects.all().delete()

    services.csv_import(table=people, source=text)

    assert rows_of(people) == before
    assert text.splitlines()[0] == "email,age,score,active,born,seen,kind,site,bio,meta"


def test_a_value_error_names_the_line_and_the_value_path(db):
    table = services.table_create(name="clash", columns=[
        {"name": "name", "type": "text", "required": True}, {"name": "type", "type": "integer"}])

    errors = refused(table, "name,type\nann,1\n,x\n")

    assert errors == {"line 3, data.name": "required",
                      "line 3, data.type": "expected an integer, got 'x'"}
    assert Row.objects.count() == 0
