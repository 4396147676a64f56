"""Admin forms for memory tables: columns as an inline, rows generated from the columns.

The forms only collect input. Every check that matters (types, required, unique, schema
rules) is the services' (``apps.memory.services``); their errors come back onto these
forms through ``refusals``: (form prefix, field, message) triples set by the admin.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.memory.models import Column, Row, Table
from apps.memory.services.schema import as_text
from apps.memory.validation import coerce

T = Column.Type
Refusal = tuple[str | None, str | None, str]


def add_refusals(form: forms.BaseForm, refusals: list[Refusal]) -> bool:
    """Put the services' errors for ``form`` on its fields; True if there were any."""
    found = False
    for prefix, field, why in refusals:
        if prefix == form.prefix:
            form.add_error(field if field in form.fields else None, why)
            found = True
    return found


class TableForm(forms.ModelForm):
    refusals: list[Refusal] = []

    class Meta:
        model = Table
        fields = ["name", "description"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        add_refusals(self, self.refusals)
        return cleaned


class ColumnForm(forms.ModelForm):
    """One column. ``options`` and ``default`` are typed as text and parsed here, so a
    person writes ``free, pro`` and ``free`` rather than JSON."""

    options = forms.CharField(required=False, widget=forms.TextInput(attrs={"size": 16}),
                              help_text="Choice columns: the options, separated by commas.")
    default = forms.CharField(required=False, widget=forms.TextInput(attrs={"size": 12}),
                              help_text="Filled in when a row has no value.")
    force = forms.BooleanField(required=False, label="force removal",
                               help_text="Remove even though rows hold values in it.")

    class Meta:
        model = Column
        fields = ["name", "type", "options", "required", "default", "unique", "indexed"]
        widgets = {"name": forms.TextInput(attrs={"size": 16})}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        column = self.instance
        if column.pk:
            self.initial["options"] = ", ".join(column.options or [])
            self.initial["default"] = ("" if column.default is None
                                       else as_text(column.default, column.type))

    def clean_options(self) -> list[str]:
        text = self.cleaned_data.get("options") or ""
        return [part.strip() for part in text.split(",") if part.strip()]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        text = cleaned.get("default") or ""
        kind = cleaned.get("type")
        # A choice default must be one of the options; the service checks that again.
        sample = Column(type=kind, options=cleaned.get("options") or [])
        try:
            cleaned["default"] = coerce(sample, text, from_text=True) if kind else None
        except ValueError as exc:
            self.add_error("default", str(exc))
        return cleaned


class ColumnFormSet(forms.BaseInlineFormSet):
    refusals: list[Refusal] = []

    def clean(self) -> None:
        super().clean()
        deleted = {}
        for form in self.forms:
            marked = getattr(form, "cleaned_data", {}).get("DELETE")
            if add_refusals(form, self.refusals) and marked:
                deleted[form.prefix] = form.initial.get("name")
        # A form marked for deletion does not count in is_valid(), so say it once more
        # where it does: above the columns.
        if deleted:
            raise ValidationError([f"{deleted[prefix]}: {why}"
                                   for prefix, _, why in self.refusals if prefix in deleted])


# -- rows --------------------------------------------------------------------------------
def row_field(column: Column) -> forms.Field:
    """The form field for one column: the widget fits the type, the value stays text (the
    services parse and check it), except a checkbox's true or false."""
    help_text = "Required." if column.required else ""
    if column.type == T.BOOLEAN:
        return forms.BooleanField(required=False, label=column.name, help_text=help_text)
    widget = WIDGETS.get(column.type, forms.TextInput)()
    if column.type == T.CHOICE:
        widget = forms.Select(choices=[("", "---------")] + [(o, o) for o in column.options])
    if column.type == T.DATETIME:
        help_text = (help_text + " In UTC.").strip()
    strip = column.type not in {T.LONG_TEXT, T.JSON}
    return forms.CharField(required=False, label=column.name, widget=widget, strip=strip,
                           help_text=help_text)


class DatetimeInput(forms.DateTimeInput):
    input_type = "datetime-local"


WIDGETS: dict[str, Any] = {
    T.LONG_TEXT: lambda: forms.Textarea(attrs={"rows": 4}),
    T.NUMBER: lambda: forms.NumberInput(attrs={"step": "any"}),
    T.INTEGER: lambda: forms.NumberInput(attrs={"step": "1"}),
    T.DATE: lambda: forms.DateInput(attrs={"type": "date"}),
    T.DATETIME: lambda: DatetimeInput(attrs={"step": "1"}),
    T.JSON: lambda: forms.Textarea(attrs={"rows": 4, "class": "vLargeTextField"}),
    T.URL: forms.URLInput,
    T.EMAIL: forms.EmailInput,
}


def initial_value(column: Column, value: Any) -> Any:
    """A stored value as its form field shows it."""
    if value is None:
        return None
    if column.type == T.BOOLEAN:
        return value
    if column.type == T.JSON:
        return json.dumps(value, ensure_ascii=False, indent=2)
    if column.type == T.DATETIME:
        # datetime-local shows neither a zone nor microseconds; the value is in UTC.
        return dt.datetime.fromisoformat(value).strftime("%Y-%m-%dT%H:%M:%S")
    return as_text(value, column.type)


class RowForm(forms.ModelForm):
    """Base of the per-table row forms that ``row_form_class`` builds."""

    columns: list[Column] = []
    refusals: list[Refusal] = []

    class Meta:
        model = Row
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for column in self.columns:
            # A new row shows each default: what the form shows is what gets stored.
            value = self.instance.data.get(column.key) if self.instance.pk else column.default
            if value is not None:
                self.initial.setdefault(column.name, initial_value(column, value))
            if column.type == T.CHOICE and value is not None and value not in column.options:
                # An option removed since: show it rather than blank the select.
                self.fields[column.name].widget.choices.append((value, value))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        add_refusals(self, self.refusals)
        return cleaned

    def _post_clean(self) -> None:
        # No model validation: the fields are the table's columns, which the services
        # check. Django would validate a model field of the same name ("table", "run")
        # instead, and refuse the form for it.
        pass

    def values(self) -> dict[str, Any]:
        """Field values by column name, for ``row_create(from_text=True)``."""
        return {c.name: self.cleaned_data.get(c.name) for c in self.columns}

    def changed_values(self) -> dict[str, Any]:
        """Only the fields a person changed, for ``row_update``: a field left alone keeps
        its stored value exactly (a datetime input drops microseconds; a choice may hold
        an option removed since)."""
        return {name: value for name, value in self.values().items()
                if name in self.changed_data}


def row_form_class(columns: list[Column], refusals: list[Refusal]) -> type[RowForm]:
    form = type("RowDataForm", (RowForm,), {c.name: row_field(c) for c in columns})
    # Set after the class is built: a column may be named "columns" too.
    form.columns, form.refusals = columns, refusals
    return form


class CsvImportForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text="UTF-8, a header line of column "
                                                       "names, then one row per line.")
