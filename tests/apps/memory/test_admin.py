"""The memory admin: tables and columns, rows per table, CSV import and export, all
through the services; a refusal shows on the field it names and stores nothing."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse

from apps.memory import services
from apps.memory.indexes import index_name
from apps.memory.models import Column, Row, Table
from apps.runs.services.runs import run_create
from apps.workflows.services import workflow_version_from_path
from tests.apps.memory.conftest import column, rows_of

pytestmark = pytest.mark.django_db

TABLES = reverse("admin:memory_table_changelist")
ADD_TABLE = reverse("admin:memory_table_add")
ROWS = reverse("admin:memory_row_changelist")
ADD_ROW = reverse("admin:memory_row_add")
EXPORT = reverse("admin:memory_row_export")
SCRIPT = """
from flowops import step

name = "memory-admin"


@step
def shout(text: str) -> str:
    return text + "!"


pipeline = shout
"""


def column_form(prefix: str, spec: dict[str, Any]) -> dict[str, Any]:
    """POST fields of one inline column form; booleans are sent only when ticked."""
    data = {}
    for field, value in spec.items():
        if value is True:
            data[f"{prefix}-{field}"] = "on"
        elif value not in (False, None):
            data[f"{prefix}-{field}"] = value
    return data


def table_post(table: Table | None, edits: dict[str, dict] | None = None,
               new: list[dict] | None = None, **fields: Any) -> dict[str, Any]:
    """The table's change (or add) form as a browser posts it: each existing column as
    stored, with ``edits`` by column name, then ``new`` columns."""
    existing = list(Column.objects.filter(table=table)) if table else []
    data = {"name": table.name if table else "", "description": "", **fields}
    for i, col in enumerate(existing):
        spec = {"id": col.pk, "table": table.pk, "name": col.name, "type": col.type,
                "options": ", ".join(col.options), "required": col.required,
                "default": "" if col.default is None else str(col.default),
                "unique": col.unique, "indexed": col.indexed}
        data.update(column_form(f"columns-{i}", {**spec, **(edits or {}).get(col.name, {})}))
    for i, spec in enumerate(new or [], start=len(existing)):
        data.update(column_form(f"columns-{i}", spec))
    total = len(existing) + len(new or [])
    data.update({"columns-TOTAL_FORMS": str(total), "columns-INITIAL_FORMS": str(len(existing)),
                 "columns-MIN_NUM_FORMS": "0", "columns-MAX_NUM_FORMS": "1000"})
    return data


def change_table(client, table: Table, **kwargs: Any):
    url = reverse("admin:memory_table_change", args=[table.pk])
    return client.post(url, table_post(table, **kwargs))


def rows_url(table: Table, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"table__id__exact": table.pk, **params}.items())
    return f"{ROWS}?{query}"


def form_errors(response) -> dict[str, list[str]]:
    return dict(response.context["adminform"].form.errors)


def inline_errors(response) -> list[dict]:
    [formset] = response.context["inline_admin_formsets"]
    return [dict(f.errors) for f in formset.formset.forms]


@pytest.fixture
def contacts(db) -> Table:
    table = services.table_create(name="contacts", description="people", columns=[
        {"name": "email", "type": "email", "required": True, "unique": True},
        {"name": "name", "type": "text"},
        {"name": "age", "type": "integer"},
        {"name": "vip", "type": "boolean"},
        {"name": "plan", "type": "choice", "options": ["free", "pro"]},
        {"name": "joined", "type": "date"},
        {"name": "notes", "type": "long_text"},
        {"name": "meta", "type": "json"},
    ])
    for data in ({"email": "ann@example.com", "name": "Ann Lee", "age": 31, "vip": True,
                  "plan": "pro", "joined": "2024-01-05"},
                 {"email": "bob@example.com", "name": "Bob", "age": 40, "vip": False,
                  "plan": "free"},
                 {"email": "cy@example.com", "name": "Cyrus Leeds", "plan": "free"}):
        services.row_create(table=table, data=data)
    return table


def emails(response) -> list[str]:
    key = column(Table.objects.get(name="contacts"), "email").key
    return [row.data[key] for row in response.context["cl"].result_list]


# -- tables and columns ----------------------------------------------------------------------
def test_a_table_is_created_with_its_columns(admin_client):
    data = table_post(None, name="leads", description="from the form", new=[
        {"name": "email", "type": "email", "required": True, "unique": True},
        {"name": "stage", "type": "choice", "options": "new, won", "default": "new"},
        {"name": "score", "type": "number", "indexed": True}])

    response = admin_client.post(ADD_TABLE, data)

    assert response.status_code == 302
    table = Table.objects.get(name="leads")
    assert table.description == "from the form"
    assert [(c.name, c.type, c.options, c.default, c.required, c.unique, c.indexed)
            for c in table.columns.all()] == [
        ("email", "email", [], None, True, True, False),
        ("stage", "choice", ["new", "won"], "new", False, False, False),
        ("score", "number", [], None, False, False, True)]


def test_a_refused_column_shows_on_its_field_and_creates_no_table(admin_client):
    data = table_post(None, name="leads", new=[
        {"name": "email", "type": "email"},
        {"name": "meta", "type": "json", "unique": True}])

    response = admin_client.post(ADD_TABLE, data)

    assert response.status_code == 200
    assert inline_errors(response)[1] == {
        "unique": ["a json column cannot be unique or indexed"]}
    assert not Table.objects.filter(name="leads").exists()
    assert not Column.objects.exists()


def test_a_bad_choice_default_is_refused_on_the_default_field(admin_client):
    data = table_post(None, name="leads", new=[
        {"name": "stage", "type": "choice", "options": "new, won", "default": "lost"}])

    response = admin_client.post(ADD_TABLE, data)

    assert response.status_code == 200
    assert inline_errors(response)[0] == {"default": ["'lost' is not one of 'new', 'won'"]}
    assert not Table.objects.filter(name="leads").exists()


def test_the_description_changes_and_a_column_is_added_with_its_default(admin_client,
                                                                        contacts):
    response = change_table(admin_client, contacts, description="customers",
                            new=[{"name": "source", "type": "text", "default": "web"}])

    assert response.status_code == 302
    contacts.refresh_from_db()
    assert contacts.description == "customers"
    assert [r["source"] for r in rows_of(contacts)] == ["web", "web", "web"]


def test_a_table_is_renamed_and_a_taken_name_is_refused(admin_client, contacts):
    services.table_create(name="leads")

    taken = change_table(admin_client, contacts, name="leads")
    renamed = change_table(admin_client, contacts, name="people")

    assert taken.status_code == 200
    assert taken.context_data["adminform"].form.errors["name"] == [
        "Table with this Name already exists."]
    assert renamed.status_code == 302
    contacts.refresh_from_db()
    assert contacts.name == "people"
    assert len(rows_of(contacts)) == 3


def test_renaming_a_column_keeps_its_values(admin_client, contacts):
    response = change_table(admin_client, contacts, edits={"name": {"name": "full_name"}})

    assert response.status_code == 302
    assert [r.get("full_name") for r in rows_of(contacts)] == ["Ann Lee", "Bob", "Cyrus Leeds"]


def test_a_rename_onto_a_taken_name_is_refused(admin_client, contacts):
    response = change_table(admin_client, contacts, edits={"name": {"name": "age"}})

    assert response.status_code == 200
    assert "Please correct the duplicate data for name." in response.content.decode()
    assert column(contacts, "name").type == "text"


def test_removing_a_column_that_holds_values_needs_force(admin_client, contacts):
    response = change_table(admin_client, contacts, edits={"age": {"DELETE": True}})

    assert response.status_code == 200
    ids = list(Row.objects.filter(table=contacts).values_list("pk", flat=True))
    message = (f"rows hold values in this column; remove it with force to drop them "
               f"(rows {ids[0]}, {ids[1]})")
    assert inline_errors(response)[2] == {"force": [message]}
    [formset] = response.context["inline_admin_formsets"]
    assert formset.formset.non_form_errors() == [f"age: {message}"]
    assert Column.objects.filter(table=contacts, name="age").exists()
    assert [r.get("age") for r in rows_of(contacts)] == [31, 40, None]


def test_removing_with_force_drops_the_column_and_its_values(admin_client, contacts):
    key = column(contacts, "age").key

    response = change_table(admin_client, contacts,
                            edits={"age": {"DELETE": True, "force": True}})

    assert response.status_code == 302
    assert not Column.objects.filter(table=contacts, name="age").exists()
    assert not any(key in r.data for r in Row.objects.filter(table=contacts))


def test_a_type_change_that_does_not_convert_lists_the_blocking_rows(admin_client, contacts):
    ann, bob, _ = Row.objects.filter(table=contacts).values_list("pk", flat=True)

    response = change_table(admin_client, contacts, edits={"name": {"type": "integer"}})

    assert response.status_code == 200
    [message] = inline_errors(response)[1]["type"]  # the column is named "name"
    assert message == (f"cannot change text to integer: expected an integer, got 'Ann Lee' "
                       f"(rows {ann}, {bob}, {ann + 2})")
    assert column(contacts, "name").type == "text"


def test_a_refused_removal_is_named_above_the_columns_beside_other_refusals(admin_client,
                                                                           contacts):
    response = change_table(admin_client, contacts, edits={
        "name": {"type": "integer"}, "age": {"DELETE": True}})

    [formset] = response.context["inline_admin_formsets"]
    assert formset.formset.non_form_errors()[0].startswith("age: rows hold values")
    assert list(inline_errors(response)[1]) == ["type"]


def test_refusals_for_columns_named_like_rules_land_on_the_rule_changed(admin_client):
    table = services.table_create(name="odd", columns=[
        {"name": "unique", "type": "text"}, {"name": "required", "type": "text"}])
    row = services.row_create(table=table, data={"unique": "x", "required": "y"})

    response = change_table(admin_client, table, edits={
        "unique": {"type": "integer"}, "required": {"DELETE": True}})

    assert inline_errors(response)[0] == {"type": [
        f"cannot change text to integer: expected an integer, got 'x' (rows {row.pk})"]}
    assert inline_errors(response)[1] == {"force": [
        f"rows hold values in this column; remove it with force to drop them (rows {row.pk})"]}
    assert [(c.name, c.type) for c in Column.objects.filter(table=table)] == [
        ("unique", "text"), ("required", "text")]


def test_a_type_change_that_converts_goes_through(admin_client, contacts):
    response = change_table(admin_client, contacts, edits={"age": {"type": "number"}})

    assert response.status_code == 302
    assert column(contacts, "age").type == "number"


def test_making_a_column_required_is_refused_while_rows_lack_it(admin_client, contacts):
    cyrus = Row.objects.filter(table=contacts).order_by("-pk").first().pk

    response = change_table(admin_client, contacts, edits={"age": {"required": True}})

    assert response.status_code == 200
    assert inline_errors(response)[2] == {
        "required": [f"rows have no value, so it cannot be required (rows {cyrus})"]}
    assert column(contacts, "age").required is False


def test_one_refusal_rolls_back_the_other_changes_of_the_save(admin_client, contacts):
    response = change_table(admin_client, contacts, description="changed",
                            edits={"name": {"name": "full_name"}, "age": {"DELETE": True}})

    assert response.status_code == 200
    contacts.refresh_from_db()
    assert contacts.description == "people"
    assert column(contacts, "name").name == "name"


def test_the_table_page_links_to_its_rows_and_import(admin_client, contacts):
    page = admin_client.get(reverse("admin:memory_table_change", args=[contacts.pk]))

    content = page.content.decode()
    assert page.status_code == 200
    assert f"?table__id__exact={contacts.pk}" in content and "3 rows" in content
    assert reverse("admin:memory_table_import", args=[contacts.pk]) in content


# -- rows ------------------------------------------------------------------------------------
def test_the_row_list_shows_the_columns_values(admin_client, contacts):
    response = admin_client.get(rows_url(contacts))

    content = response.content.decode()
    assert response.status_code == 200
    assert emails(response) == ["ann@example.com", "bob@example.com", "cy@example.com"]
    for name in ["email", "name", "age", "vip", "plan", "joined", "notes", "meta"]:
        assert f'class="sortable column-col_{name}"' in content
    assert '<td class="field-col_name">Ann Lee</td>' in content
    assert '<td class="field-col_joined">2024-01-05</td>' in content


def test_the_row_list_sorts_by_a_column(admin_client, contacts):
    names = [c.name for c in Column.objects.filter(table=contacts)]
    name = names.index("name") + 2  # after the checkbox and the id

    response = admin_client.get(rows_url(contacts, o=f"-{name}"))

    assert emails(response) == ["cy@example.com", "bob@example.com", "ann@example.com"]


@pytest.mark.parametrize("order", ["", "-"])
def test_rows_without_a_value_are_listed_last_in_either_direction(admin_client, contacts,
                                                                  order):
    names = [c.name for c in Column.objects.filter(table=contacts)]
    age = names.index("age") + 2  # after the checkbox and the id

    response = admin_client.get(rows_url(contacts, o=f"{order}{age}"))

    ages = ["ann@example.com", "bob@example.com"]  # 31, 40
    assert emails(response) == [*(ages if order == "" else ages[::-1]), "cy@example.com"]


@pytest.mark.parametrize(("params", "expected"), [
    ({"col_plan": "free"}, ["bob@example.com", "cy@example.com"]),
    ({"col_vip": "true"}, ["ann@example.com"]),
    ({"col_vip": "false"}, ["bob@example.com"]),
    ({"col_joined": "none"}, ["bob@example.com", "cy@example.com"]),
    ({"q": "lee"}, ["ann@example.com", "cy@example.com"]),
    ({"q": "lee", "col_plan": "pro"}, ["ann@example.com"]),
])
def test_filters_and_search_narrow_the_rows(admin_client, contacts, params, expected):
    response = admin_client.get(rows_url(contacts, **params))

    assert response.status_code == 200
    assert emails(response) == expected


def test_the_choice_filter_offers_every_value_rows_hold(admin_client, contacts):
    # given "free" removed from the options while rows hold it, a value never an option
    # (written past the services, as rows from before the column was a choice), no value
    plan, email = column(contacts, "plan"), column(contacts, "email")
    Column.objects.filter(pk=plan.pk).update(options=["pro", "team"])
    Row.objects.create(table=contacts, data={email.key: "dee@example.com", plan.key: "1"})
    services.row_create(table=contacts, data={"email": "eve@example.com"})

    # when
    listed = admin_client.get(rows_url(contacts))
    found = {value: emails(admin_client.get(rows_url(contacts, col_plan=value)))
             for value in ["free", "1", "__empty__"]}

    # then
    [spec] = [f for f in listed.context["cl"].filter_specs
              if getattr(f, "parameter_name", "") == "col_plan"]
    assert spec.lookup_choices == [
        ("pro", "pro"), ("team", "team"), ("1", "1 (not an option)"),
        ("free", "free (not an option)"), ("__empty__", "(no value)")]
    assert found == {"free": ["bob@example.com", "cy@example.com"], "1": ["dee@example.com"],
                     "__empty__": ["eve@example.com"]}


def test_the_table_filter_leaves_the_other_tables_column_filters_behind(admin_client,
                                                                       contacts):
    other = services.table_create(name="other", columns=[{"name": "x", "type": "text"}])

    response = admin_client.get(rows_url(contacts, col_plan="free", q="lee"))

    content = response.content.decode()
    assert f'href="?table__id__exact={other.pk}"' in content
    assert admin_client.get(f"{ROWS}?table__id__exact={other.pk}").status_code == 200


def test_a_date_filter_finds_this_years_rows(admin_client, contacts):
    import datetime as dt

    today = dt.datetime.now(dt.UTC).date().isoformat()
    services.row_create(table=contacts, data={"email": "new@example.com", "joined": today})

    response = admin_client.get(rows_url(contacts, col_joined="year"))

    assert emails(response) == ["new@example.com"]


def test_a_row_is_added_through_the_form(admin_client, contacts):
    response = admin_client.post(f"{ADD_ROW}?table={contacts.pk}", {
        "email": "dee@example.com", "name": "Dee", "age": "27", "vip": "on", "plan": "pro",
        "joined": "2024-02-29", "notes": "line one\nline two", "meta": '{"tags": ["a"]}'})

    assert response.status_code == 302
    assert response["Location"] == rows_url(contacts)
    assert rows_of(contacts)[-1] == {
        "email": "dee@example.com", "name": "Dee", "age": 27, "vip": True, "plan": "pro",
        "joined": "2024-02-29", "notes": "line one\nline two", "meta": {"tags": ["a"]}}


def test_a_new_row_form_shows_the_defaults(admin_client, contacts):
    services.column_update(column=column(contacts, "plan"), default="free")
    services.column_update(column=column(contacts, "vip"), default=True)

    form = admin_client.get(f"{ADD_ROW}?table={contacts.pk}").context["adminform"].form

    assert (form["plan"].value(), form["vip"].value(), form["age"].value()) == (
        "free", True, None)


def test_the_row_form_has_a_widget_per_type(admin_client, contacts):
    page = admin_client.get(f"{ADD_ROW}?table={contacts.pk}").content.decode()

    assert '<input type="email" name="email"' in page
    assert '<input type="number" name="age"' in page and 'step="1"' in page
    assert '<input type="checkbox" name="vip"' in page
    assert '<select name="plan"' in page and '<option value="pro">pro</option>' in page
    assert '<input type="date" name="joined"' in page
    assert '<textarea name="notes"' in page and '<textarea name="meta"' in page


@pytest.mark.parametrize(("data", "errors"), [
    ({"email": "dee@example.com", "age": "old"}, {"age": ["expected an integer, got 'old'"]}),
    ({"email": "not-an-email"}, {"email": ["not a valid email address: 'not-an-email'"]}),
    ({"email": ""}, {"email": ["required"]}),
    ({"email": "ann@example.com"},
     {"email": ["'ann@example.com' is already taken in row {ann} (the column is unique)"]}),
    ({"email": "dee@example.com", "meta": "{oops"}, {"meta": ["expected JSON, got '{{oops'"]}),
])
def test_a_bad_value_shows_on_its_field_and_stores_nothing(admin_client, contacts, data,
                                                          errors):
    ann = Row.objects.filter(table=contacts).first().pk

    response = admin_client.post(f"{ADD_ROW}?table={contacts.pk}", data)

    assert response.status_code == 200
    assert form_errors(response) == {field: [m.format(ann=ann) for m in messages]
                                     for field, messages in errors.items()}
    assert Row.objects.filter(table=contacts).count() == 3


def test_a_value_error_shows_on_the_column_named_like_a_model_field(admin_client):
    table = services.table_create(name="odd", columns=[
        {"name": "data", "type": "integer"}, {"name": "table", "type": "integer"}])

    response = admin_client.post(f"{ADD_ROW}?table={table.pk}", {"data": "x", "table": "1"})

    assert form_errors(response) == {"data": ["expected an integer, got 'x'"]}
    assert not Row.objects.filter(table=table).exists()


def test_a_row_is_changed_and_a_bad_change_stores_nothing(admin_client, contacts):
    bob = Row.objects.filter(table=contacts).order_by("pk")[1]
    url = reverse("admin:memory_row_change", args=[bob.pk])
    page = admin_client.get(url).content.decode()
    fields = {"email": "bob@example.com", "name": "Bobby", "age": "41", "plan": "free"}

    refused = admin_client.post(url, {**fields, "age": "forty"})
    saved = admin_client.post(url, fields)

    assert 'value="bob@example.com"' in page and 'value="40"' in page
    assert form_errors(refused) == {"age": ["expected an integer, got 'forty'"]}
    assert saved.status_code == 302
    assert rows_of(contacts)[1] == {"email": "bob@example.com", "name": "Bobby", "age": 41,
                                    "vip": False, "plan": "free"}


@pytest.fixture
def visits(db) -> Row:
    table = services.table_create(name="visits", columns=[
        {"name": "at", "type": "datetime"}, {"name": "page", "type": "text"},
        {"name": "kind", "type": "choice", "options": ["old", "new"]}])
    row = services.row_create(table=table, data={
        "at": "2024-03-01T10:30:15.123456+00:00", "page": "/", "kind": "old"})
    services.column_change_type(column=column(table, "kind"), type="choice",
                                options=["old", "new", "gone"])
    Column.objects.filter(table=table, name="kind").update(options=["new"])  # as if removed
    return row


def test_a_change_leaves_the_fields_not_touched_exactly_as_stored(admin_client, visits):
    url = reverse("admin:memory_row_change", args=[visits.pk])
    page = admin_client.get(url).content.decode()

    response = admin_client.post(url, {"at": "2024-03-01T10:30:15", "page": "/home",
                                       "kind": "old"})

    assert 'type="datetime-local" name="at" value="2024-03-01T10:30:15"' in page
    assert '<option value="old" selected>old</option>' in page
    assert response.status_code == 302
    assert rows_of(visits.table) == [{"at": "2024-03-01T10:30:15.123456+00:00",
                                      "page": "/home", "kind": "old"}]


def test_a_datetime_is_stored_in_utc_from_the_form(admin_client, visits):
    url = reverse("admin:memory_row_change", args=[visits.pk])

    response = admin_client.post(url, {"at": "2024-03-02T08:00", "page": "/", "kind": "new"})

    assert response.status_code == 302
    assert rows_of(visits.table)[0]["at"] == "2024-03-02T08:00:00.000000+00:00"


def test_a_row_links_to_the_workflow_and_run_that_wrote_it(admin_client, contacts,
                                                          write_script):
    version, loaded = workflow_version_from_path(write_script(SCRIPT))
    run = run_create(version=version, loaded=loaded, input="hi")
    Row.objects.filter(table=contacts).update(workflow=run.version.workflow, run=run)

    content = admin_client.get(rows_url(contacts)).content.decode()

    assert reverse("admin:runs_run_change", args=[run.pk]) in content
    assert reverse("admin:workflows_workflow_change",
                   args=[run.version.workflow_id]) in content


def test_bulk_delete_removes_the_selected_rows(admin_client, contacts):
    ann, bob, cy = Row.objects.filter(table=contacts).values_list("pk", flat=True)

    response = admin_client.post(rows_url(contacts), {
        "action": "delete_selected", "post": "yes", "_selected_action": [ann, cy]})

    assert response.status_code == 302
    assert list(Row.objects.filter(table=contacts).values_list("pk", flat=True)) == [bob]


def test_adding_a_row_without_a_table_sends_back_to_the_list(admin_client, contacts):
    response = admin_client.get(ADD_ROW)

    assert response.status_code == 302
    assert response["Location"] == ROWS


# -- CSV -------------------------------------------------------------------------------------
def upload(client, table: Table, text: str):
    url = reverse("admin:memory_table_import", args=[table.pk])
    file = io.BytesIO(text.encode("utf-8"))
    file.name = "rows.csv"
    return client.post(url, {"file": file})


def test_the_import_page_names_the_columns_and_the_rule(admin_client, contacts):
    url = reverse("admin:memory_table_import", args=[contacts.pk])

    page = admin_client.get(url).content.decode()

    assert "(email, name, age, vip, plan, joined, notes, meta)" in page
    assert "all or nothing" in page
    assert 'type="file" name="file"' in page


def test_csv_import_adds_every_line(admin_client, contacts):
    response = upload(admin_client, contacts,
                      "email,age,plan\ndee@example.com,27,pro\neve@example.com,,free\n")

    assert response.status_code == 302
    assert response["Location"] == rows_url(contacts)
    assert rows_of(contacts)[3:] == [
        {"email": "dee@example.com", "age": 27, "plan": "pro"},
        {"email": "eve@example.com", "plan": "free"}]


def test_a_failing_csv_import_lists_line_and_header_and_stores_nothing(admin_client, contacts):
    response = upload(admin_client, contacts,
                      "email,age\ndee@example.com,27\neve@example.com,old\nann@example.com,3\n")

    content = response.content.decode()
    assert response.status_code == 200
    assert response.context["errors"] == {
        "line 3, data.age": "expected an integer, got 'old'"}
    assert "line 3, data.age: expected an integer, got &#x27;old&#x27;" in content
    assert Row.objects.filter(table=contacts).count() == 3


def test_a_csv_with_an_unknown_header_is_refused(admin_client, contacts):
    response = upload(admin_client, contacts, "email,colour\ndee@example.com,red\n")

    assert list(response.context["errors"]) == ["line 1"]
    assert "unknown column 'colour'" in response.context["errors"]["line 1"]
    assert Row.objects.filter(table=contacts).count() == 3


def test_csv_export_holds_the_filtered_rows(admin_client, contacts):
    response = admin_client.get(f"{EXPORT}?table__id__exact={contacts.pk}&col_plan=free")

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="contacts.csv"'
    assert response.content.decode().splitlines() == [
        "email,name,age,vip,plan,joined,notes,meta",
        "bob@example.com,Bob,40,false,free,,,",
        "cy@example.com,Cyrus Leeds,,,free,,,"]


def test_the_row_list_links_to_export_with_its_filters(admin_client, contacts):
    content = admin_client.get(rows_url(contacts, col_plan="free")).content.decode()

    assert f"{EXPORT}?table__id__exact={contacts.pk}&amp;col_plan=free" in content
    assert f'href="{ADD_ROW}?table={contacts.pk}" class="addlink"' in content


# -- indexes: PostgreSQL builds them after the admin's transaction commits -------------------
@pytest.mark.django_db(transaction=True)
def test_a_unique_column_added_in_the_admin_gets_its_index(admin_client):
    response = admin_client.post(ADD_TABLE, table_post(None, name="keys", new=[
        {"name": "code", "type": "text", "unique": True}]))

    assert response.status_code == 302
    code = Column.objects.get(name="code")
    with connection.cursor() as cursor:
        found = [name for name in connection.introspection.get_constraints(cursor, "memory_row")
                 if name == index_name(code)]
    assert found == [index_name(code)]
