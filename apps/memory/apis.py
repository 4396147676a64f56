"""REST API of the memory tables (README "REST API"): parse, call a service, serialize.

Schema changes (tables, columns) are for staff; rows and CSV for any signed-in user.
Every write goes through ``apps.memory.services``, which validate and write all or
nothing; their errors become JSON in ``apps.core.api.exception_handler``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import StaffWrites
from apps.memory import services
from apps.memory.models import Column, Row, Table
from apps.memory.query_params import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ordering_from_params,
    page_from_params,
    where_from_params,
)
from apps.memory.selectors import row_list, table_columns
from apps.memory.validation import MemoryValidationError

TAG = ["memory"]


# -- lookups -----------------------------------------------------------------------------
def get_table(name: str) -> Table:
    table = Table.objects.filter(name=name).first()
    if table is None:
        raise NotFound(f"No table named {name!r}.")
    return table


def get_column(table: Table, name: str) -> Column:
    column = Column.objects.filter(table=table, name=name).select_related("table").first()
    if column is None:
        raise NotFound(f"Table {table.name!r} has no column named {name!r}.")
    return column


def get_row(table: Table, row_id: int) -> Row:
    row = Row.objects.filter(table=table, pk=row_id).select_related("table").first()
    if row is None:
        raise NotFound(f"Table {table.name!r} has no row {row_id}.")
    return row


def columns_of(table: Table) -> list[Column]:
    return list(Column.objects.filter(table=table))


# -- serializers (shapes only: the services check the values) ---------------------------
class ColumnOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=Column.Type.choices)
    options = serializers.ListField(child=serializers.CharField())
    required = serializers.BooleanField()
    default = serializers.JSONField(allow_null=True)
    unique = serializers.BooleanField()
    indexed = serializers.BooleanField()
    position = serializers.IntegerField()


class ColumnInputSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=Column.Type.choices, required=False)
    options = serializers.ListField(child=serializers.CharField(), required=False,
                                    help_text="The allowed values of a choice column.")
    required = serializers.BooleanField(required=False)
    default = serializers.JSONField(required=False, allow_null=True)
    unique = serializers.BooleanField(required=False)
    indexed = serializers.BooleanField(required=False)


class TableOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    columns = ColumnOutputSerializer(many=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def table_output(table: Table) -> dict[str, Any]:
    return TableOutputSerializer({
        # .all(): the list view prefetches every table's columns in one query.
        "name": table.name, "description": table.description, "columns": table.columns.all(),
        "created_at": table.created_at, "updated_at": table.updated_at}).data


DATA_HELP = "The row's fields by column name, e.g. {\"email\": \"ann@example.com\", \"age\": 31}."


class RowOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    data = serializers.DictField(help_text=DATA_HELP + " Empty fields are null.")
    workflow = serializers.IntegerField(allow_null=True, help_text="The workflow that wrote it.")
    run = serializers.CharField(allow_null=True, help_text="The run that wrote it.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def row_output(row: Row, columns: list[Column]) -> dict[str, Any]:
    return RowOutputSerializer({
        "id": row.id, "data": {c.name: row.data.get(c.key) for c in columns},
        "workflow": row.workflow_id, "run": row.run_id,
        "created_at": row.created_at, "updated_at": row.updated_at}).data


class RowInputSerializer(serializers.Serializer):
    data = serializers.DictField(help_text=DATA_HELP)


def parsed(serializer_class: type[serializers.Serializer], request: Request,
           partial: bool = False) -> dict[str, Any]:
    serializer = serializer_class(data=request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# -- tables ------------------------------------------------------------------------------
class TableCreateSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField(required=False, allow_blank=True, default="")
    columns = ColumnInputSerializer(many=True, required=False)


class TableUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class TableListApi(APIView):
    permission_classes = [StaffWrites]

    @extend_schema(tags=TAG, responses=TableOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        tables = Table.objects.prefetch_related("columns")
        return Response([table_output(t) for t in tables])

    @extend_schema(tags=TAG, request=TableCreateSerializer, responses={201: TableOutputSerializer})
    def post(self, request: Request) -> Response:
        fields = parsed(TableCreateSerializer, request)
        columns = [dict(c) for c in fields.pop("columns", [])]
        table = services.table_create(**fields, columns=columns)
        return Response(table_output(table), status=201)


class TableDetailApi(APIView):
    permission_classes = [StaffWrites]

    @extend_schema(tags=TAG, responses=TableOutputSerializer)
    def get(self, request: Request, table: str) -> Response:
        return Response(table_output(get_table(table)))

    @extend_schema(tags=TAG, request=TableUpdateSerializer, responses=TableOutputSerializer)
    def patch(self, request: Request, table: str) -> Response:
        fields = parsed(TableUpdateSerializer, request, partial=True)
        return Response(table_output(services.table_update(table=get_table(table), **fields)))

    @extend_schema(tags=TAG, responses={204: None})
    def delete(self, request: Request, table: str) -> Response:
        services.table_delete(table=get_table(table))
        return Response(status=204)


# -- columns -----------------------------------------------------------------------------
class ColumnUpdateSerializer(ColumnInputSerializer):
    name = serializers.CharField(required=False, help_text="A new name renames the column.")


FORCE = OpenApiParameter(
    "force", OpenApiTypes.BOOL, description="Delete the column even though rows hold values "
    "in it (the values are dropped). Without it such a delete answers 409 with the rows.")


class ColumnListApi(APIView):
    permission_classes = [StaffWrites]

    @extend_schema(tags=TAG, responses=ColumnOutputSerializer(many=True))
    def get(self, request: Request, table: str) -> Response:
        columns = columns_of(get_table(table))
        return Response(ColumnOutputSerializer(columns, many=True).data)

    @extend_schema(tags=TAG, request=ColumnInputSerializer,
                   responses={201: ColumnOutputSerializer})
    def post(self, request: Request, table: str) -> Response:
        fields = parsed(ColumnInputSerializer, request)
        column = services.column_add(table=get_table(table), **fields)
        return Response(ColumnOutputSerializer(column).data, status=201)


class ColumnDetailApi(APIView):
    permission_classes = [StaffWrites]

    @extend_schema(tags=TAG, responses=ColumnOutputSerializer)
    def get(self, request: Request, table: str, column: str) -> Response:
        return Response(ColumnOutputSerializer(get_column(get_table(table), column)).data)

    @extend_schema(tags=TAG, request=ColumnUpdateSerializer, responses=ColumnOutputSerializer,
                   description="Rename, change the type (every value must convert, else 409 "
                               "with the rows in the way) or change the rules, all or nothing.")
    def patch(self, request: Request, table: str, column: str) -> Response:
        fields = parsed(ColumnUpdateSerializer, request, partial=True)
        changed = services.column_edit(column=get_column(get_table(table), column), **fields)
        return Response(ColumnOutputSerializer(changed).data)

    @extend_schema(tags=TAG, parameters=[FORCE], responses={204: None})
    def delete(self, request: Request, table: str, column: str) -> Response:
        force = request.query_params.get("force", "").lower() in {"true", "1", "yes"}
        services.column_remove(column=get_column(get_table(table), column), force=force)
        return Response(status=204)


# -- rows --------------------------------------------------------------------------------
WHERE = OpenApiParameter(
    "where", OpenApiTypes.OBJECT, style="deepObject", explode=True,
    description=(
        "Filter by column values: `where[FIELD]=VALUE` (equals) or "
        "`where[FIELD][OPERATOR]=VALUE`, with OPERATOR one of eq, not, lt, lte, gt, gte, "
        "contains (text, case-insensitive), in (repeat the parameter once per value), "
        "is_null (true/false). FIELD is a column name, or id, created_at, updated_at. "
        "Values are parsed by the column's type; an empty value means no value. "
        "Conditions combine with AND. Example: `?where[plan]=pro&where[age][gte]=30`."))
ORDERING = OpenApiParameter(
    "ordering", OpenApiTypes.STR,
    description="Comma-separated fields, `-` for descending: a column name, id, "
                "created_at or updated_at (default: id). Rows without a value come last "
                "either way. Example: `-age,name`.")
LIMIT = OpenApiParameter("limit", OpenApiTypes.INT,
                         description=f"Rows per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).")
OFFSET = OpenApiParameter("offset", OpenApiTypes.INT, description="Rows to skip (default 0).")
ROW_PAGE = inline_serializer("RowPage", {
    "count": serializers.IntegerField(help_text="Rows matching the filter, on all pages."),
    "limit": serializers.IntegerField(), "offset": serializers.IntegerField(),
    "next": serializers.URLField(allow_null=True),
    "previous": serializers.URLField(allow_null=True),
    "results": RowOutputSerializer(many=True)})


def page_links(request: Request, limit: int, offset: int, count: int) -> tuple[Any, Any]:
    from rest_framework.utils.urls import replace_query_param

    url = request.build_absolute_uri()
    after = offset + limit
    following = replace_query_param(url, "offset", after) if after < count else None
    previous = replace_query_param(url, "offset", max(offset - limit, 0)) if offset else None
    return following, previous


class RowListApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(tags=TAG, parameters=[WHERE, ORDERING, LIMIT, OFFSET], responses=ROW_PAGE,
                   operation_id="memory_tables_rows_list")
    def get(self, request: Request, table: str) -> Response:
        found = get_table(table)
        params = request.query_params
        limit, offset = page_from_params(params)
        columns = table_columns(found)
        where = where_from_params(params, columns)
        try:
            columns, rows = row_list(table=found, where=where, columns=columns,
                                     order_by=ordering_from_params(params))
        except MemoryValidationError as exc:
            raise in_query_terms(exc) from None
        count = rows.count()
        following, previous = page_links(request, limit, offset, count)
        results = [row_output(r, columns) for r in rows[offset:offset + limit]]
        return Response({"count": count, "limit": limit, "offset": offset, "next": following,
                         "previous": previous, "results": results})

    @extend_schema(tags=TAG, request=RowInputSerializer, responses={201: RowOutputSerializer})
    def post(self, request: Request, table: str) -> Response:
        found = get_table(table)
        row = services.row_create(table=found, data=parsed(RowInputSerializer, request)["data"])
        return Response(row_output(row, columns_of(found)), status=201)


def in_query_terms(exc: MemoryValidationError) -> MemoryValidationError:
    """The selectors name ``where.<field>`` and ``order_by``; name the parameters the
    caller sent (``where[<field>]``, ``ordering``)."""
    def param(key: str) -> str:
        if key == "order_by":
            return "ordering"
        return f"where[{key.removeprefix('where.')}]" if key.startswith("where.") else key

    return MemoryValidationError({param(k): v for k, v in exc.errors.items()})


class RowDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(tags=TAG, responses=RowOutputSerializer)
    def get(self, request: Request, table: str, row_id: int) -> Response:
        found = get_table(table)
        return Response(row_output(get_row(found, row_id), table_columns(found)))

    @extend_schema(tags=TAG, request=RowInputSerializer, responses=RowOutputSerializer,
                   description="Changes only the fields `data` names; null empties a field.")
    def patch(self, request: Request, table: str, row_id: int) -> Response:
        found = get_table(table)
        data = parsed(RowInputSerializer, request)["data"]
        row = services.row_update(row=get_row(found, row_id), data=data)
        return Response(row_output(row, columns_of(found)))

    @extend_schema(tags=TAG, responses={204: None})
    def delete(self, request: Request, table: str, row_id: int) -> Response:
        services.row_delete(row=get_row(get_table(table), row_id))
        return Response(status=204)


# -- CSV ---------------------------------------------------------------------------------
CSV_UPLOAD = inline_serializer("CsvUpload", {
    "file": serializers.FileField(help_text="UTF-8 CSV; the header line names columns.")})


class TableCsvApi(APIView):
    permission_classes = [IsAuthenticated]
    parser_classes = [MultiPartParser]

    @extend_schema(tags=TAG, responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request, table: str) -> HttpResponse:
        found = get_table(table)
        response = HttpResponse(services.csv_export(table=found), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{found.name}.csv"'
        return response

    @extend_schema(tags=TAG, request={"multipart/form-data": CSV_UPLOAD},
                   responses={201: inline_serializer("CsvImported", {
                       "imported": serializers.IntegerField()})},
                   description="All or nothing: on any error nothing is stored and `errors` "
                               "names each line and value, e.g. `line 3, data.age` "
                               "(`line 1`: the header).")
    def post(self, request: Request, table: str) -> Response:
        found = get_table(table)
        upload = request.data.get("file")
        if upload is None or isinstance(upload, str):
            raise MemoryValidationError({"file": "attach the CSV as a file field named file"})
        try:
            text = upload.read().decode("utf-8-sig")  # -sig: spreadsheets often add a BOM
        except UnicodeDecodeError as exc:
            raise MemoryValidationError({"file": f"not UTF-8 text ({exc.reason} at byte "
                                                 f"{exc.start})"}) from None
        return Response({"imported": services.csv_import(table=found, source=text)},
                        status=201)
