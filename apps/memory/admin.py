"""Admin for the no-code database: tables with their columns, rows, CSV import and export.

Every write calls ``apps.memory.services`` (STYLE.md: admin), so the admin checks rows
and schema changes exactly as the SDK and the API do. A service refuses after the form
has validated, when Django no longer shows errors; ``RefusalsOnForm`` rolls the save back
and validates once more with the refusals attached, so they appear on the fields named.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.db import transaction
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from apps.core.exceptions import ApplicationError
from apps.memory.expressions import ColumnValue, EmptyLast
from apps.memory.forms import (
    ColumnForm,
    ColumnFormSet,
    CsvImportForm,
    Refusal,
    RowForm,
    TableForm,
    row_form_class,
)
from apps.memory.models import Column, Row, Table
from apps.memory.selectors import column_values, row_filter
from apps.memory.services import (
    column_add,
    column_change_type,
    column_remove,
    column_rename,
    column_update,
    csv_export,
    csv_import,
    row_create,
    row_delete,
    row_update,
    table_create,
    table_delete,
)
from apps.memory.services.edits import table_update
from apps.memory.validation import TEXTUAL
from apps.runs.admin import admin_link, preview

T = Column.Type
TABLE_PARAM = "table__id__exact"
FLAGS = ["required", "unique", "indexed", "default"]


class Refused(Exception):
    """Services refused a save; ``refusals`` are (form prefix, field, message)."""

    def __init__(self, refusals: list[Refusal]):
        super().__init__(refusals)
        self.refusals = refusals


def refusals_of(exc: ApplicationError, prefix: str | None, fields: Any,
                fallback: str | None, under: str = "") -> list[Refusal]:
    """A service's errors, each on the form field its key names, else on ``fallback``.

    ``under``: the keys' prefix for this form's fields: ``data.`` on a row form, whose
    fields are the columns (``data.name`` is the column "name"; a bare ``name`` never is).
    """
    errors = exc.extra.get("errors") or {fallback: exc.message}
    refusals = []
    for key, why in errors.items():
        field = key[len(under):] if key.startswith(under) else None
        refusals.append((prefix, field if field in fields else fallback, why))
    return refusals


class RefusalsOnForm:
    """Show service refusals on the form. The first pass raises ``Refused`` out of the
    admin's transaction, which rolls back every write of the save (and drops the index
    builds queued for after commit); the second validates with them and writes nothing."""

    def changeform_view(self, request: HttpRequest, object_id: str | None = None,
                        form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except Refused as refused:
            request.memory_refusals = refused.refusals
            return super().changeform_view(request, object_id, form_url, extra_context)


def refusals_for(request: HttpRequest) -> list[Refusal]:
    return getattr(request, "memory_refusals", [])


def changelist_url(model: type, **filters: Any) -> str:
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


# -- tables and columns -------------------------------------------------------------------
class ColumnInline(admin.TabularInline):
    model = Column
    form = ColumnForm
    formset = ColumnFormSet
    extra = 1
    ordering = ["position", "id"]
    fields = ["name", "type", "options", "required", "default", "unique", "indexed", "force"]

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        formset.refusals = refusals_for(request)  # a new class per call: safe to set
        return formset


@admin.register(Table)
class TableAdmin(RefusalsOnForm, admin.ModelAdmin):
    form = TableForm
    inlines = [ColumnInline]
    list_display = ["name", "description", "column_names", "rows_link", "updated_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["rows_link", "created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Table]:
        return super().get_queryset(request).annotate(
            row_count=Count("rows")).prefetch_related("columns")

    def get_fieldsets(self, request: HttpRequest, obj: Table | None = None) -> list:
        if obj is None:
            return [(None, {"fields": ["name", "description"]})]
        return [(None, {"fields": ["name", "description", "rows_link"]}),
                ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]})]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False,
                 **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        form.refusals = refusals_for(request)
        return form

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.import_view)
        return [path("<path:object_id>/import/", view, name="memory_table_import"),
                *super().get_urls()]

    @admin.display(description="columns")
    def column_names(self, table: Table) -> str:
        return ", ".join(c.name for c in table.columns.all())

    @admin.display(description="rows")
    def rows_link(self, table: Table) -> str:
        if table.pk is None:
            return "-"
        return format_html('<a href="{}">{} rows</a> · <a href="{}">import CSV</a>',
                           changelist_url(Row, **{TABLE_PARAM: table.pk}),
                           getattr(table, "row_count", None) or table.rows.count(),
                           reverse("admin:memory_table_import", args=[table.pk]))

    # -- saving: through the services, in the admin's transaction
    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Table:
        return form.instance  # save_model and save_related write, through the services

    def save_model(self, request: HttpRequest, obj: Table, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            if change:
                # Scripts reach a table by its name: a rename is theirs to follow.
                table_update(table=Table.objects.get(pk=obj.pk), name=data["name"],
                             description=data["description"])
            else:
                table = table_create(name=data["name"], description=data["description"])
                obj.pk, obj.created_at, obj.updated_at = (
                    table.pk, table.created_at, table.updated_at)
        except ApplicationError as exc:
            raise Refused(refusals_of(exc, None, form.fields, None)) from exc

    def save_related(self, request: HttpRequest, form: Any, formsets: list,
                     change: bool) -> None:
        refusals: list[Refusal] = []
        for formset in formsets:
            ColumnChanges(form.instance, formset, refusals).apply()
        if refusals:
            raise Refused(refusals)

    def delete_model(self, request: HttpRequest, obj: Table) -> None:
        table_delete(table=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Table]) -> None:
        for table in queryset:
            table_delete(table=table)

    # -- CSV import
    def import_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        table = get_object_or_404(Table, pk=object_id)
        if not request.user.has_perm(f"{Row._meta.app_label}.add_row"):
            return HttpResponse(status=403)
        form = CsvImportForm(request.POST or None, request.FILES or None)
        errors: dict[str, str] = {}
        if request.method == "POST" and form.is_valid():
            errors = self._import(request, table, form.cleaned_data["file"])
            if not errors:
                return HttpResponseRedirect(changelist_url(Row, **{TABLE_PARAM: table.pk}))
        context = {**self.admin_site.each_context(request), "opts": self.opts,
                   "title": f"Import CSV into {table.name}", "table": table, "form": form,
                   "errors": errors, "columns": list(table.columns.all())}
        return TemplateResponse(request, "admin/memory/table/import_csv.html", context)

    def _import(self, request: HttpRequest, table: Table, upload: Any) -> dict[str, str]:
        try:
            text = upload.read().decode("utf-8-sig")  # -sig: Excel starts with a BOM
        except UnicodeDecodeError:
            return {"file": "not UTF-8 text; save the CSV as UTF-8"}
        try:
            count = csv_import(table=table, source=text)
        except ApplicationError as exc:
            return exc.extra.get("errors") or {"file": exc.message}
        self.message_user(request, f"Imported {count} rows into {table.name}.",
                          level=messages.SUCCESS)
        return {}


class ColumnChanges:
    """The column inline's edits as service calls: removals, then renames, type changes
    and rule changes, then additions. Each call is its own savepoint, so one refusal
    does not hide the others; the caller rolls everything back if any was refused."""

    def __init__(self, table: Table, formset: Any, refusals: list[Refusal]):
        self.table, self.formset, self.refusals = table, formset, refusals
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def apply(self) -> None:
        for form in self.formset.initial_forms:
            if form in self.formset.deleted_forms:
                self._remove(form)
            elif form.has_changed():
                self._change(form)
        for form in self.formset.extra_forms:
            if form.has_changed() and form not in self.formset.deleted_forms:
                self._add(form)

    def _call(self, form: Any, fallback: str | None, call: Callable[[], Any]) -> bool:
        try:
            call()
        except ApplicationError as exc:
            self.refusals.extend(refusals_of(exc, form.prefix, form.fields, fallback))
            return False
        return True

    def _fresh(self, form: Any) -> Column:
        # form.instance already holds the edited values (ModelForm validation sets them);
        # the services must start from what is stored.
        return Column.objects.get(pk=form.instance.pk)

    def _remove(self, form: Any) -> None:
        column = self._fresh(form)
        force = bool(form.cleaned_data.get("force"))
        if self._call(form, "force", lambda: column_remove(column=column, force=force)):
            self.formset.deleted_objects.append(column)

    def _change(self, form: Any) -> None:
        data, column = form.cleaned_data, self._fresh(form)
        changed = []
        if data["name"] != column.name:
            changed.append("name")
            self._call(form, "name", lambda: column_rename(column=self._fresh(form),
                                                           name=data["name"]))
        if data["type"] != column.type or data["options"] != column.options:
            changed.append("type")
            self._call(form, "type", lambda: column_change_type(
                column=self._fresh(form), type=data["type"], options=data["options"]))
        flags = {f: data[f] for f in FLAGS if data[f] != getattr(column, f)}
        if flags:
            changed.extend(flags)
            self._call(form, next(iter(flags)),
                       lambda: column_update(column=self._fresh(form), **flags))
        self.formset.changed_objects.append((column, changed))

    def _add(self, form: Any) -> None:
        data = form.cleaned_data
        spec = {f: data[f] for f in ["name", "type", "options", *FLAGS]}
        added: list[Column] = []
        if self._call(form, None, lambda: added.append(column_add(table=self.table, **spec))):
            self.formset.new_objects.extend(added)


# -- rows ---------------------------------------------------------------------------------
def column_display(column: Column) -> Callable[[Row], Any]:
    """A list column showing one memory column, sortable by its value (empty ones last,
    as the SDK and the API sort)."""

    @admin.display(description=column.name, ordering=EmptyLast(ColumnValue(column.key)),
                   boolean=column.type == T.BOOLEAN)
    def show(row: Row) -> Any:
        value = row.data.get(column.key)
        if column.type == T.BOOLEAN or value is None:
            return value
        if column.type == T.DATETIME:
            return dt.datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S UTC")
        return preview(value) if column.type == T.JSON else str(value)

    show.__name__ = f"col_{column.name}"  # the header's CSS class: column-col_<name>
    return show


class ColumnFilter(admin.SimpleListFilter):
    """Base of the per-column list filters that ``column_filter`` builds."""

    column: Column

    def queryset(self, request: HttpRequest, queryset: QuerySet[Row]) -> QuerySet[Row]:
        where = self.where(self.value()) if self.value() else None
        if where is None:
            return queryset
        return queryset & row_filter(table=self.column.table, where={self.column.name: where})

    def where(self, value: str) -> Any:
        return value


class ChoiceFilter(ColumnFilter):
    """The column's options, then the values rows hold that are not options (removed
    since, or there before the column became a choice), then "no value": every row of
    the table is under one of them."""

    EMPTY = "__empty__"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list:
        options = self.column.options
        others = column_values(column=self.column, leave_out=options)
        empty = [] if self.EMPTY in options else [(self.EMPTY, "(no value)")]
        return [*((o, o) for o in options), *((v, f"{v} (not an option)") for v in others),
                *empty]

    def where(self, value: str) -> Any:
        if value == self.EMPTY and value not in self.column.options:
            return {"is_null": True}
        return value


class BooleanFilter(ColumnFilter):
    def lookups(self, request: HttpRequest, model_admin: Any) -> list:
        return [("true", "Yes"), ("false", "No")]

    def where(self, value: str) -> Any:
        return {"true": True, "false": False}.get(value)


class DateFilter(ColumnFilter):
    """Ranges from today, in UTC (as datetimes are stored), like Django's date filter."""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list:
        return [("today", "Today"), ("7d", "Past 7 days"), ("month", "This month"),
                ("year", "This year"), ("none", "No date")]

    def where(self, value: str) -> Any:
        if value == "none":
            return {"is_null": True}
        today = dt.datetime.now(dt.UTC).date()
        month = today.replace(day=1)
        starts = {"today": (today, today + dt.timedelta(days=1)),
                  "7d": (today - dt.timedelta(days=6), today + dt.timedelta(days=1)),
                  "month": (month, (month + dt.timedelta(days=32)).replace(day=1)),
                  "year": (today.replace(month=1, day=1), today.replace(year=today.year + 1,
                                                                        month=1, day=1))}
        if value not in starts:
            return None
        since, until = starts[value]
        if self.column.type == T.DATETIME:
            since, until = (dt.datetime.combine(d, dt.time(), dt.UTC) for d in (since, until))
        return {"gte": since, "lt": until}


class TableFilter(admin.SimpleListFilter):
    """Choose the table. Its links drop the column filters, search, sort and page of the
    table shown now: another table has other columns, and Django would refuse them."""

    title = "table"
    parameter_name = TABLE_PARAM
    left_behind = ["col_", "o", "q", "p"]  # prefixes of query parameters

    def lookups(self, request: HttpRequest, model_admin: Any) -> list:
        return list(Table.objects.values_list("pk", "name"))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Row]) -> QuerySet[Row]:
        return queryset.filter(table_id=self.value()) if self.value() else queryset

    def choices(self, changelist: Any) -> Any:
        yield {"selected": self.value() is None, "display": "All",
               "query_string": changelist.get_query_string(
                   remove=[self.parameter_name, *self.left_behind])}
        for pk, name in self.lookup_choices:
            yield {"selected": self.value() == str(pk), "display": name,
                   "query_string": changelist.get_query_string({self.parameter_name: pk},
                                                               self.left_behind)}


FILTERS = {T.CHOICE: ChoiceFilter, T.BOOLEAN: BooleanFilter, T.DATE: DateFilter,
           T.DATETIME: DateFilter}


def column_filter(column: Column) -> type[ColumnFilter]:
    return type(f"{column.name}Filter", (FILTERS[column.type],), {
        "title": column.name, "parameter_name": f"col_{column.name}", "column": column})


@admin.register(Row)
class RowAdmin(RefusalsOnForm, admin.ModelAdmin):
    """Rows of one table at a time (``?table__id__exact=N``), its columns as list columns."""

    form = RowForm
    list_select_related = ["table", "workflow", "run"]
    list_per_page = 50
    actions = ["delete_selected"]
    search_help_text = "Searches the table's text columns."
    change_list_template = "admin/memory/row/change_list.html"

    # -- which table
    def table_of(self, request: HttpRequest, obj: Row | None = None) -> Table | None:
        if obj is not None and obj.pk:
            return obj.table
        raw = request.GET.get(TABLE_PARAM) or request.GET.get("table")
        return Table.objects.filter(pk=raw).first() if raw and raw.isdigit() else None

    def columns_of(self, request: HttpRequest, obj: Row | None = None) -> list[Column]:
        table = self.table_of(request, obj)
        return list(Column.objects.filter(table=table)) if table else []

    # -- the list
    def get_list_display(self, request: HttpRequest) -> list:
        # Built once per request: sorting matches these functions by identity
        # (get_sortable_by asks for the list again).
        if not hasattr(request, "memory_list_display"):
            columns = [column_display(c) for c in self.columns_of(request)]
            table = [] if columns else ["table"]
            request.memory_list_display = ["id", *table, *columns, "workflow_link",
                                           "run_link", "created_at"]
        return request.memory_list_display

    def get_list_filter(self, request: HttpRequest) -> list:
        return [TableFilter, *(column_filter(c) for c in self.columns_of(request)
                               if c.type in FILTERS)]

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return ["data"]  # shows the search box; get_search_results does the searching

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Row],
                           search_term: str) -> tuple[QuerySet[Row], bool]:
        table = self.table_of(request)
        text = [c for c in self.columns_of(request) if c.type in TEXTUAL]
        if not search_term or table is None or not text:
            return queryset, False
        found = Row.objects.none()
        for column in text:
            found |= row_filter(table=table, where={column.name: {"contains": search_term}})
        return queryset & found, False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        table = self.table_of(request)
        context = {"memory_table": table, **(extra_context or {})}
        if table is not None:
            context.update(
                add_row_url=f"{reverse('admin:memory_row_add')}?table={table.pk}",
                import_url=reverse("admin:memory_table_import", args=[table.pk]),
                export_url=f"{reverse('admin:memory_row_export')}?{request.GET.urlencode()}",
                table_url=reverse("admin:memory_table_change", args=[table.pk]))
        return super().changelist_view(request, context)

    @admin.display(description="workflow", ordering="workflow")
    def workflow_link(self, row: Row) -> str:
        return admin_link(row.workflow) if row.workflow_id else "-"

    @admin.display(description="run", ordering="run")
    def run_link(self, row: Row) -> str:
        return admin_link(row.run, row.run_id) if row.run_id else "-"

    @admin.display(description="table")
    def table_link(self, row: Row) -> str:
        return admin_link(row.table)

    # -- CSV export of the filtered list
    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.export_view)
        return [path("export/", view, name="memory_row_export"), *super().get_urls()]

    def export_view(self, request: HttpRequest) -> HttpResponse:
        table = self.table_of(request)
        if table is None or not self.has_view_permission(request):
            return HttpResponseRedirect(changelist_url(Row))
        try:
            rows = self.get_changelist_instance(request).queryset
        except IncorrectLookupParameters:
            self.message_user(request, "These filters do not fit the table; nothing "
                                       "exported.", level=messages.ERROR)
            return HttpResponseRedirect(changelist_url(Row, **{TABLE_PARAM: table.pk}))
        response = HttpResponse(csv_export(table=table, rows=rows),
                                content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{table.name}.csv"'
        return response

    # -- the form
    def add_view(self, request: HttpRequest, form_url: str = "",
                 extra_context: dict | None = None) -> HttpResponse:
        if self.table_of(request) is None:
            self.message_user(request, "Choose a table first, then use its “Add row”.",
                              level=messages.WARNING)
            return HttpResponseRedirect(changelist_url(Row))
        return super().add_view(request, form_url, extra_context)

    def get_form(self, request: HttpRequest, obj: Row | None = None, change: bool = False,
                 **kwargs: Any) -> Any:
        return row_form_class(self.columns_of(request, obj), refusals_for(request))

    def get_fieldsets(self, request: HttpRequest, obj: Row | None = None) -> list:
        values = (None, {"fields": [c.name for c in self.columns_of(request, obj)]})
        if obj is None:
            return [values]
        return [values, ("Written by", {"fields": ["table_link", "workflow_link", "run_link",
                                                    "created_at", "updated_at"]})]

    def get_readonly_fields(self, request: HttpRequest, obj: Row | None = None) -> list:
        return ["table_link", "workflow_link", "run_link", "created_at", "updated_at"]

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Row:
        return form.instance  # save_model writes, through the services

    def save_model(self, request: HttpRequest, obj: Row, form: Any, change: bool) -> None:
        try:
            if change:
                row_update(row=obj, data=form.changed_values(), from_text=True)
            else:
                table = self.table_of(request)
                row = row_create(table=table, data=form.values(), from_text=True)
                obj.pk, obj.table = row.pk, table
        except ApplicationError as exc:
            raise Refused(refusals_of(exc, None, form.fields, None, under="data.")) from exc

    def save_related(self, request: HttpRequest, form: Any, formsets: list,
                     change: bool) -> None:
        pass  # a row has no related objects to edit; save_model stored it all

    def delete_model(self, request: HttpRequest, obj: Row) -> None:
        row_delete(row=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Row]) -> None:
        with transaction.atomic():  # all selected rows or none
            for row in queryset:
                row_delete(row=row)

    def response_add(self, request: HttpRequest, obj: Row, post_url_continue: Any = None
                     ) -> HttpResponse:
        response = super().response_add(request, obj, post_url_continue)
        return self._back_to_table(request, obj, response)

    def response_change(self, request: HttpRequest, obj: Row) -> HttpResponse:
        return self._back_to_table(request, obj, super().response_change(request, obj))

    def _back_to_table(self, request: HttpRequest, obj: Row,
                       response: HttpResponse) -> HttpResponse:
        # Back to this table's rows (or its add form), not to every table's rows.
        if not isinstance(response, HttpResponseRedirect) or "_continue" in request.POST:
            return response
        if "_addanother" in request.POST:
            return HttpResponseRedirect(f"{reverse('admin:memory_row_add')}?table={obj.table_id}")
        return HttpResponseRedirect(changelist_url(Row, **{TABLE_PARAM: obj.table_id}))
