"""The memory tables' REST API, through DRF's APIClient against the real database: auth,
staff-only schema changes, rows, filters, ordering, pages, CSV, errors naming the field
with nothing stored, and the OpenAPI schema."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.memory import services
from apps.memory.models import Column, Row, Table
from tests.apps.memory.conftest import column, rows_of

URL = "/api/memory/tables/"


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_user("ada", password="pw", is_staff=True)


@pytest.fixture
def member(db) -> User:
    return User.objects.create_user("bob", password="pw")


@pytest.fixture
def admin_api(staff) -> APIClient:
    client = APIClient()
    client.force_authenticate(staff)
    return client


@pytest.fixture
def api(member) -> APIClient:
    client = APIClient()
    client.force_authenticate(member)
    return client


@pytest.fixture
def plans(db) -> Table:
    table = services.table_create(name="plans", columns=[
        {"name": "name", "type": "text", "required": True},
        {"name": "age", "type": "integer"},
        {"name": "plan", "type": "choice", "options": ["free", "pro"]},
        {"name": "score", "type": "number"},
        {"name": "vip", "type": "boolean"}])
    for data in ({"name": "Ann", "age": 31, "plan": "pro", "score": 2.5, "vip": True},
                 {"name": "bob", "age": 25, "plan": "free", "score": 1},
                 {"name": "Cy", "age": 40, "plan": "pro"},
                 {"name": "Dee", "plan": "free", "vip": False}):
        services.row_create(table=table, data=data)
    return table


def names(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [r["data"]["name"] for r in response.json()["results"]]


# -- authentication and permissions ---------------------------------------------------------
def test_anonymous_requests_are_refused(plans):
    client = APIClient()
    assert client.get(URL).status_code == 401
    assert client.get(f"{URL}plans/rows/").status_code == 401
    assert client.post(f"{URL}plans/rows/", {"data": {"name": "x"}}, format="json"
                       ).status_code == 401
    assert Row.objects.filter(table=plans).count() == 4


def test_token_and_basic_auth_are_accepted(plans, member):
    token = Token.objects.create(user=member)
    by_token = APIClient(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert by_token.get(f"{URL}plans/rows/").status_code == 200
    basic = base64.b64encode(b"bob:pw").decode()
    assert APIClient(HTTP_AUTHORIZATION=f"Basic {basic}").get(URL).status_code == 200


def test_token_endpoint_hands_out_a_token(member):
    response = APIClient().post("/api/auth/token/", {"username": "bob", "password": "pw"},
                                format="json")
    assert response.status_code == 200
    assert response.json()["token"] == Token.objects.get(user=member).key


def test_schema_changes_are_for_staff_only(api, plans):
    assert api.get(URL).status_code == 200  # reading the schema is fine
    assert api.post(URL, {"name": "t2"}, format="json").status_code == 403
    assert api.patch(f"{URL}plans/", {"description": "x"}, format="json").status_code == 403
    assert api.delete(f"{URL}plans/").status_code == 403
    assert api.post(f"{URL}plans/columns/", {"name": "c"}, format="json").status_code == 403
    assert api.patch(f"{URL}plans/columns/age/", {"name": "years"},
                     format="json").status_code == 403
    assert api.delete(f"{URL}plans/columns/age/?force=true").status_code == 403
    assert list(Table.objects.values_list("name", "description")) == [("plans", "")]
    assert [c.name for c in Column.objects.filter(table=plans)] == [
        "name", "age", "plan", "score", "vip"]


def test_members_may_write_rows(api, plans):
    response = api.post(f"{URL}plans/rows/", {"data": {"name": "Eve"}}, format="json")
    assert response.status_code == 201


# -- tables and columns ------------------------------------------------------------------
def test_create_a_table_with_columns_then_add_one(admin_api):
    # given
    body = {"name": "contacts", "description": "people we know", "columns": [
        {"name": "email", "type": "email", "required": True, "unique": True},
        {"name": "plan", "type": "choice", "options": ["free", "pro"], "default": "free"}]}
    # when
    created = admin_api.post(URL, body, format="json")
    added = admin_api.post(f"{URL}contacts/columns/", {"name": "age", "type": "integer"},
                           format="json")
    # then
    assert created.status_code == 201
    assert created.json()["name"] == "contacts"
    assert [c["name"] for c in created.json()["columns"]] == ["email", "plan"]
    assert created.json()["columns"][1] == {
        "name": "plan", "type": "choice", "options": ["free", "pro"], "required": False,
        "default": "free", "unique": False, "indexed": False, "position": 1}
    assert added.status_code == 201
    listed = admin_api.get(f"{URL}contacts/columns/").json()
    assert [c["name"] for c in listed] == ["email", "plan", "age"]
    assert admin_api.get(f"{URL}contacts/").json()["description"] == "people we know"


def test_a_refused_table_creates_nothing(admin_api):
    # given: the second column is refused by the service, after the table was inserted
    body = {"name": "contacts", "columns": [{"name": "ok"}, {"name": "bad", "type": "choice"}]}
    # when
    response = admin_api.post(URL, body, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "columns[1].options": "a choice column needs a list of distinct, non-empty texts"}
    assert not Table.objects.exists()
    assert not Column.objects.exists()


def test_malformed_column_specs_name_the_column(admin_api):
    body = {"name": "contacts", "columns": [{"name": "ok"}, {"name": "bad", "type": "nope"}]}
    response = admin_api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"columns[1].type": '"nope" is not a valid choice.'}
    assert not Table.objects.exists()


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "1bad"}, "name"),
    ({"name": "plans"}, "name"),
    ({}, "name"),
])
def test_table_name_errors_name_the_field(admin_api, plans, body, field):
    response = admin_api.post(URL, body, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]
    assert Table.objects.count() == 1


def test_rename_a_table_and_change_its_description(admin_api, plans):
    response = admin_api.patch(f"{URL}plans/", {"name": "customers", "description": "d"},
                               format="json")
    assert response.status_code == 200
    assert Table.objects.get(pk=plans.pk).name == "customers"
    assert admin_api.get(f"{URL}plans/").status_code == 404
    assert admin_api.get(f"{URL}customers/rows/").json()["count"] == 4


def test_renaming_a_table_to_a_taken_name_is_400(admin_api, plans):
    services.table_create(name="other")
    response = admin_api.patch(f"{URL}other/", {"name": "plans"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"name": "a table named 'plans' exists"}
    assert sorted(Table.objects.values_list("name", flat=True)) == ["other", "plans"]


def test_listing_tables_costs_two_queries(api, plans, django_assert_num_queries):
    services.table_create(name="other", columns=[{"name": "x"}])
    with django_assert_num_queries(2):
        listed = api.get(URL).json()
    assert [(t["name"], len(t["columns"])) for t in listed] == [("other", 1), ("plans", 5)]


def test_delete_a_table(admin_api, plans):
    assert admin_api.delete(f"{URL}plans/").status_code == 204
    assert not Table.objects.exists()
    assert not Row.objects.exists()


def test_unknown_table_column_or_row_is_404(admin_api, plans):
    assert admin_api.get(f"{URL}nope/").status_code == 404
    assert admin_api.get(f"{URL}nope/rows/").status_code == 404
    assert admin_api.post(f"{URL}nope/rows/", {"data": {}}, format="json").status_code == 404
    assert admin_api.get(f"{URL}plans/columns/nope/").status_code == 404
    assert admin_api.get(f"{URL}plans/rows/999999/").status_code == 404
    response = admin_api.delete(f"{URL}plans/rows/999999/")
    assert response.status_code == 404
    assert "999999" in response.json()["detail"]


def test_rename_a_column_keeps_its_values(admin_api, plans):
    response = admin_api.patch(f"{URL}plans/columns/age/", {"name": "years"}, format="json")
    assert response.status_code == 200
    assert response.json()["name"] == "years"
    assert rows_of(plans)[0]["years"] == 31


def test_change_a_column_type_converts_every_value(admin_api, plans):
    response = admin_api.patch(f"{URL}plans/columns/age/", {"type": "text"}, format="json")
    assert response.status_code == 200
    assert [r.get("age") for r in rows_of(plans)] == ["31", "25", "40", None]


def test_a_type_change_that_does_not_convert_is_409_with_the_rows(admin_api, plans):
    # given: "Ann" and "bob" are not numbers
    ids = list(Row.objects.filter(table=plans).order_by("pk").values_list("pk", flat=True))
    # when: a rename and a type change in one request
    response = admin_api.patch(f"{URL}plans/columns/name/", {"name": "n", "type": "number"},
                               format="json")
    # then: nothing changed, not even the rename
    assert response.status_code == 409
    assert response.json()["rows"] == ids
    assert response.json()["errors"] == {"type": "cannot change text to number: expected a "
                                         f"number, got 'Ann' (rows {', '.join(map(str, ids))})"}
    assert column(plans, "name").type == "text"
    assert rows_of(plans)[0]["name"] == "Ann"


def test_change_a_columns_rules(admin_api, plans):
    response = admin_api.patch(f"{URL}plans/columns/name/", {"unique": True, "default": "x"},
                               format="json")
    assert response.status_code == 200
    assert (response.json()["unique"], response.json()["default"]) == (True, "x")
    refused = admin_api.patch(f"{URL}plans/columns/plan/", {"unique": True}, format="json")
    assert refused.status_code == 409
    assert refused.json()["rows"] == list(
        Row.objects.filter(table=plans).order_by("pk").values_list("pk", flat=True))
    assert column(plans, "plan").unique is False


def test_deleting_a_column_with_values_needs_force(admin_api, plans):
    refused = admin_api.delete(f"{URL}plans/columns/vip/")
    assert refused.status_code == 409
    assert len(refused.json()["rows"]) == 2
    assert list(refused.json()["errors"]) == ["force"]
    assert refused.json()["message"].startswith("column 'vip', force: rows hold values")
    assert column(plans, "vip")
    assert admin_api.delete(f"{URL}plans/columns/vip/?force=true").status_code == 204
    assert not Column.objects.filter(table=plans, name="vip").exists()
    assert all("vip" not in r for r in rows_of(plans))


def test_a_required_column_without_default_is_refused_on_a_table_with_rows(admin_api, plans):
    response = admin_api.post(f"{URL}plans/columns/", {"name": "email", "required": True},
                              format="json")
    assert response.status_code == 409
    assert list(response.json()["errors"]) == ["required"]
    assert not Column.objects.filter(table=plans, name="email").exists()


# -- rows ----------------------------------------------------------------------------------
def test_create_read_update_and_delete_a_row(api, people):
    # when
    created = api.post("/api/memory/tables/people/rows/", {"data": {
        "email": "ann@example.com", "age": 31, "seen": "2024-05-01T12:00:00+02:00",
        "meta": {"tags": ["a"]}}}, format="json")
    # then
    assert created.status_code == 201
    row = created.json()
    assert row["data"] == {"email": "ann@example.com", "age": 31, "score": None,
                           "active": True, "born": None,
                           "seen": "2024-05-01T10:00:00.000000+00:00", "kind": None,
                           "site": None, "bio": None, "meta": {"tags": ["a"]}}
    assert (row["workflow"], row["run"]) == (None, None)
    url = f"/api/memory/tables/people/rows/{row['id']}/"
    assert api.get(url).json() == row
    patched = api.patch(url, {"data": {"age": 32, "meta": None}}, format="json")
    assert patched.status_code == 200
    assert (patched.json()["data"]["age"], patched.json()["data"]["meta"]) == (32, None)
    assert rows_of(people) == [{"email": "ann@example.com", "age": 32, "active": True,
                                "seen": "2024-05-01T10:00:00.000000+00:00"}]
    assert api.delete(url).status_code == 204
    assert not Row.objects.filter(table=people).exists()


@pytest.mark.parametrize(("data", "field"), [
    ({"email": "a@example.com", "nope": 1}, "nope"),
    ({"age": 3}, "email"),
    ({"email": None}, "email"),
    ({"email": "not an email"}, "email"),
    ({"email": "a@example.com", "age": "3"}, "age"),
    ({"email": "a@example.com", "age": 2.5}, "age"),
    ({"email": "a@example.com", "score": "high"}, "score"),
    ({"email": "a@example.com", "active": "yes"}, "active"),
    ({"email": "a@example.com", "born": "2024-13-01"}, "born"),
    ({"email": "a@example.com", "seen": "yesterday"}, "seen"),
    ({"email": "a@example.com", "kind": "vip"}, "kind"),
    ({"email": "a@example.com", "site": "not a url"}, "site"),
    ({"email": "a@example.com", "bio": 5}, "bio"),
    ({"email": "taken@example.com"}, "email"),
])
def test_every_rule_answers_400_naming_the_field_and_stores_nothing(api, people, data, field):
    # given
    services.row_create(table=people, data={"email": "taken@example.com"})
    # when
    response = api.post("/api/memory/tables/people/rows/", {"data": data}, format="json")
    # then
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [f"data.{field}"]
    assert f"data.{field}: " in response.json()["message"]
    assert rows_of(people) == [{"email": "taken@example.com", "active": True}]


def test_value_errors_and_definition_errors_have_distinct_keys(admin_api):
    # given columns named like the fields of a column's definition
    admin_api.post(URL, {"name": "odd", "columns": [
        {"name": "name", "type": "integer"}, {"name": "type", "type": "integer"}]},
        format="json")
    admin_api.post(f"{URL}odd/rows/", {"data": {"name": 1}}, format="json")
    # when
    value = admin_api.post(f"{URL}odd/rows/", {"data": {"name": "x", "type": "y"}},
                           format="json")
    definition = admin_api.patch(f"{URL}odd/columns/name/", {"type": "boolean"},
                                 format="json")
    # then
    assert value.json()["errors"] == {"data.name": "expected an integer, got text 'x'",
                                      "data.type": "expected an integer, got text 'y'"}
    assert list(definition.json()["errors"]) == ["type"]
    assert Row.objects.count() == 1
    assert column(Table.objects.get(name="odd"), "name").type == "integer"


@pytest.mark.parametrize("body", [{"data": ["a"]}, {"data": "x"}, {"email": "a@b.io"}, {}])
def test_a_row_body_without_a_data_object_is_400(api, people, body):
    response = api.post("/api/memory/tables/people/rows/", body, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["data"]
    assert not Row.objects.exists()


def test_a_refused_update_changes_nothing(api, people):
    row = services.row_create(table=people, data={"email": "a@example.com", "age": 1})
    services.row_create(table=people, data={"email": "b@example.com"})
    response = api.patch(f"/api/memory/tables/people/rows/{row.id}/",
                         {"data": {"age": 2, "email": "b@example.com"}}, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["data.email"]
    assert rows_of(people)[0] == {"email": "a@example.com", "age": 1, "active": True}


def test_malformed_json_is_400(api, people):
    response = api.post("/api/memory/tables/people/rows/", "{bad",
                        content_type="application/json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["body"]
    assert not Row.objects.exists()


# -- filters, ordering, pages -----------------------------------------------------------------
@pytest.mark.parametrize(("query", "expected"), [
    ("where[plan]=pro", ["Ann", "Cy"]),
    ("where[plan][eq]=free", ["bob", "Dee"]),
    ("where[age]=25", ["bob"]),
    ("where[vip]=false", ["Dee"]),
    ("where[plan][not]=pro", ["bob", "Dee"]),
    ("where[age][lt]=31", ["bob"]),
    ("where[age][lte]=31", ["Ann", "bob"]),
    ("where[age][gt]=25", ["Ann", "Cy"]),
    ("where[age][gte]=30&where[age][lt]=40", ["Ann"]),
    ("where[score][gte]=1.5", ["Ann"]),
    ("where[name][contains]=B", ["bob"]),
    ("where[name][in]=Ann&where[name][in]=Dee", ["Ann", "Dee"]),
    ("where[age][in]=25&where[age][in]=40", ["bob", "Cy"]),
    ("where[age][is_null]=true", ["Dee"]),
    ("where[vip][is_null]=false", ["Ann", "Dee"]),
    ("where[score]=", ["Cy", "Dee"]),
    ("where[plan]=pro&where[age][gt]=35", ["Cy"]),
])
def test_filter_with_each_operator(api, plans, query, expected):
    assert names(api.get(f"{URL}plans/rows/?{query}")) == expected


def test_filter_on_system_fields(api, plans):
    first = Row.objects.filter(table=plans).order_by("pk").first()
    assert names(api.get(f"{URL}plans/rows/?where[id][gt]={first.id}")) == ["bob", "Cy", "Dee"]
    assert names(api.get(f"{URL}plans/rows/?where[created_at][gte]=2000-01-01")) == [
        "Ann", "bob", "Cy", "Dee"]


@pytest.mark.parametrize(("query", "field"), [
    ("where[age][gte]=thirty", "where[age][gte]"),
    ("where[age][between]=1", "where[age][between]"),
    ("where[nope]=1", "where[nope]"),
    ("where[age][contains]=3", "where[age]"),
    ("where[name][contains]=a&where[name][contains]=b", "where[name][contains]"),
    ("where[vip][is_null]=maybe", "where[vip][is_null]"),
    ("where[created_at][gt]=soon", "where[created_at][gt]"),
    ("where[age", "where[age"),
    ("ordering=nope", "ordering"),
    ("limit=0", "limit"),
    ("limit=abc", "limit"),
    ("offset=-1", "offset"),
])
def test_bad_query_parameters_are_400_naming_the_parameter(api, plans, query, field):
    response = api.get(f"{URL}plans/rows/?{query}")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]


@pytest.mark.parametrize(("ordering", "expected"), [
    ("age", ["bob", "Ann", "Cy", "Dee"]),
    ("-age", ["Cy", "Ann", "bob", "Dee"]),  # Dee has no age: last either way
    ("-vip", ["Ann", "Dee", "bob", "Cy"]),
    ("plan,-age", ["bob", "Dee", "Cy", "Ann"]),
    ("-id", ["Dee", "Cy", "bob", "Ann"]),
    ("created_at", ["Ann", "bob", "Cy", "Dee"]),
])
def test_ordering(api, plans, ordering, expected):
    assert names(api.get(f"{URL}plans/rows/?ordering={ordering}")) == expected


def test_pages_carry_the_count_and_links(api, plans):
    first = api.get(f"{URL}plans/rows/?limit=2").json()
    assert (first["count"], first["limit"], first["offset"]) == (4, 2, 0)
    assert [r["data"]["name"] for r in first["results"]] == ["Ann", "bob"]
    assert first["previous"] is None
    second = api.get(first["next"]).json()
    assert [r["data"]["name"] for r in second["results"]] == ["Cy", "Dee"]
    assert second["next"] is None
    assert api.get(second["previous"]).json()["results"] == first["results"]
    filtered = api.get(f"{URL}plans/rows/?where[plan]=pro&limit=1").json()
    assert (filtered["count"], len(filtered["results"])) == (2, 1)


# -- CSV ----------------------------------------------------------------------------------------
def upload(text: str | bytes) -> dict[str, SimpleUploadedFile]:
    content = text.encode() if isinstance(text, str) else text
    return {"file": SimpleUploadedFile("rows.csv", content, content_type="text/csv")}


def test_csv_import_inserts_every_line(api, plans):
    text = "\ufeffname,age,plan,vip\nEve,22,pro,yes\n\"Fay, Jr.\",,free,\n"
    response = api.post(f"{URL}plans/csv/", upload(text), format="multipart")
    assert response.status_code == 201
    assert response.json() == {"imported": 2}
    assert rows_of(plans)[-2:] == [{"name": "Eve", "age": 22, "plan": "pro", "vip": True},
                                   {"name": "Fay, Jr.", "plan": "free"}]


def test_csv_import_is_all_or_nothing_and_names_lines(api, plans):
    # given: line 2 is fine, lines 3 and 4 are not
    text = "name,age,plan\nEve,22,pro\nFay,old,free\n,5,gold\n"
    # when
    response = api.post(f"{URL}plans/csv/", upload(text), format="multipart")
    # then
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "line 3, data.age": "expected an integer, got 'old'",
        "line 4, data.name": "required",
        "line 4, data.plan": "'gold' is not one of 'free', 'pro'"}
    assert response.json()["message"].startswith("nothing imported: ")
    assert Row.objects.filter(table=plans).count() == 4


@pytest.mark.parametrize(("files", "field"), [
    ({}, "file"),
    ({"file": "name\nEve\n"}, "file"),
])
def test_csv_import_needs_a_file(api, plans, files, field):
    response = api.post(f"{URL}plans/csv/", files, format="multipart")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]
    assert Row.objects.filter(table=plans).count() == 4


def test_csv_import_refuses_text_that_is_not_utf8(api, plans):
    response = api.post(f"{URL}plans/csv/", upload("name\nJosé\n".encode("latin-1")),
                        format="multipart")
    assert response.status_code == 400
    assert "UTF-8" in response.json()["errors"]["file"]
    assert Row.objects.filter(table=plans).count() == 4


def test_csv_export(api, plans):
    response = api.get(f"{URL}plans/csv/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == 'attachment; filename="plans.csv"'
    assert response.content.decode().splitlines() == [
        "name,age,plan,score,vip", "Ann,31,pro,2.5,true", "bob,25,free,1,", "Cy,40,pro,,",
        "Dee,,free,,false"]


def test_csv_export_imports_back(api, plans):
    exported = api.get(f"{URL}plans/csv/").content
    response = api.post(f"{URL}plans/csv/", upload(exported), format="multipart")
    assert response.json() == {"imported": 4}
    assert rows_of(plans)[4:] == rows_of(plans)[:4]


# -- the OpenAPI schema ---------------------------------------------------------------------------
def test_schema_documents_data_as_an_object_and_the_filters(api):
    response = api.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    components = schema["components"]["schemas"]
    assert components["RowInputRequest"]["properties"]["data"]["type"] == "object"
    assert components["RowOutput"]["properties"]["data"]["type"] == "object"
    rows_list = schema["paths"]["/api/memory/tables/{table}/rows/"]["get"]
    parameters = {p["name"]: p for p in rows_list["parameters"]}
    assert {"where", "ordering", "limit", "offset"} <= set(parameters)
    assert parameters["where"]["style"] == "deepObject"
    assert "where[FIELD][OPERATOR]=VALUE" in parameters["where"]["description"]
    for op in ("eq", "not", "lt", "lte", "gt", "gte", "contains", "in", "is_null"):
        assert op in parameters["where"]["description"]
    assert "/api/memory/tables/{table}/csv/" in schema["paths"]


def test_schema_needs_a_signed_in_user(db):
    assert APIClient().get("/api/schema/").status_code == 401
