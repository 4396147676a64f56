"""Checking and converting a row's values against its table's columns.

Two ways in: JSON values (the SDK, the REST API), where a wrong type is an error, and
text (CSV cells, admin form fields), which is parsed. Both give the stored form: ``date``
as ``YYYY-MM-DD``, ``datetime`` as ISO 8601 in UTC, everything else as plain JSON.
Empty values (``None``, or an empty cell) are not stored at all.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator

from apps.core.exceptions import ApplicationError
from apps.memory.models import Column

T = Column.Type
TEXTUAL = {T.TEXT, T.LONG_TEXT, T.URL, T.EMAIL, T.CHOICE}
TRUE = {"true", "yes", "1", "y", "t", "on"}
FALSE = {"false", "no", "0", "n", "f", "off"}


class MemoryValidationError(ApplicationError):
    """A request refused because of what it holds; ``errors`` maps the path of each wrong
    input to what is wrong with it, so a column's value never reads as a definition:

    * a row's values: ``data.<column>`` (``data.email``), or ``data`` for the whole object;
      a CSV import adds the line: ``line 3, data.age`` (``line 3`` for the line itself);
    * a table's definition: ``name``, ``description``, ``columns[2].type`` (a column of
      ``table_create``);
    * one column's definition (the column services, as the REST API's column endpoints
      and the admin's column forms call them): ``name``, ``type``, ``options``,
      ``required``, ``default``, ``unique``, ``indexed``, ``force``;
    * a query: ``where.<column>``, ``order_by``, ``limit``; SDK arguments: ``table``,
      ``id``, ``workflow_id``.
    """

    def __init__(self, errors: dict[str, str], message: str | None = None):
        self.errors = errors
        text = message or "; ".join(f"{field}: {why}" for field, why in errors.items())
        super().__init__(text, {"errors": errors})


def coerce(column: Column, value: Any, *, from_text: bool = False) -> Any:
    """The stored form of ``value`` for ``column``; ``None`` for empty; ValueError if wrong."""
    if value is None or (from_text and isinstance(value, str) and value.strip() == ""):
        return None
    if from_text and not isinstance(value, str):
        from_text = False  # a form may hand over typed values too
    convert = _TEXT if from_text else _JSON
    stored = convert[column.type](value)
    if column.type == T.CHOICE and stored not in column.options:
        raise ValueError(f"{stored!r} is not one of {', '.join(map(repr, column.options))}")
    return stored


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {_kind(value)}")
    return value


def _url(value: Any) -> str:
    return _checked(_text(value).strip(), URLValidator(), "not a valid URL")


def _email(value: Any) -> str:
    return _checked(_text(value).strip(), EmailValidator(), "not a valid email address")


def _checked(value: str, validator: Any, message: str) -> str:
    try:
        validator(value)
    except ValidationError:
        raise ValueError(f"{message}: {value!r}") from None
    return value


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {_kind(value)}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_kind(value)}")
    return value


def _date(value: Any) -> str:
    if isinstance(value, dt.datetime):
        raise ValueError("expected a date, got a datetime")
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(_text(value).strip()).isoformat()
    except ValueError:
        raise ValueError(f"expected a date (YYYY-MM-DD), got {_kind(value)}") from None


def _datetime(value: Any) -> str:
    if not isinstance(value, dt.datetime):
        try:
            value = dt.datetime.fromisoformat(_text(value).strip())
        except ValueError:
            raise ValueError(f"expected an ISO 8601 datetime, got {_kind(value)}") from None
    if value.tzinfo is None:  # naive times are taken as UTC, as Django stores them
        value = value.replace(tzinfo=dt.UTC)
    # One fixed form, so that stored datetimes compare and sort as text.
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _json(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        raise ValueError(f"expected a JSON value, got {_kind(value)}") from None


def _choice(value: Any) -> str:
    return _text(value)


def _parse_number(text: str) -> int | float:
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        return _number(float(text.strip()))
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def _parse_integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _parse_boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE | FALSE:
        return word in TRUE
    raise ValueError(f"expected true or false, got {text!r}")


def _parse_json(text: str) -> Any:
    try:
        return _json(json.loads(text))
    except ValueError:
        raise ValueError(f"expected JSON, got {text!r}") from None


_JSON = {T.TEXT: _text, T.LONG_TEXT: _text, T.URL: _url, T.EMAIL: _email, T.CHOICE: _choice,
         T.NUMBER: _number, T.INTEGER: _integer, T.BOOLEAN: _boolean, T.DATE: _date,
         T.DATETIME: _datetime, T.JSON: _json}
_TEXT = {**_JSON, T.NUMBER: _parse_number, T.INTEGER: _parse_integer,
         T.BOOLEAN: _parse_boolean, T.JSON: _parse_json}


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, str):
        return f"text {value!r}" if len(value) <= 40 else f"text {value[:40]!r}..."
    return f"{type(value).__name__} {value!r}"[:60]


def data_path(name: Any) -> str:
    """The error key of a row's value (``MemoryValidationError``)."""
    return f"data.{name}"


def check_row(columns: Iterable[Column], values: dict[str, Any], *, partial: bool = False,
              from_text: bool = False) -> tuple[dict[str, Any], set[str]]:
    """Values by column name -> (stored values by column key, keys set to empty).

    ``partial``: an update, which checks only the fields it names and fills no defaults.
    Raises ``MemoryValidationError`` naming every field that is wrong.
    """
    columns = list(columns)
    by_name = {c.name: c for c in columns}
    errors: dict[str, str] = {}
    if not isinstance(values, dict):
        raise MemoryValidationError({"data": f"expected an object of fields, got {_kind(values)}"})
    for name in values:
        if name not in by_name:
            known = ", ".join(by_name) or "none"
            errors[data_path(name)] = f"unknown field (the columns are: {known})"
    stored: dict[str, Any] = {}
    cleared: set[str] = set()
    for column in columns:
        if column.name not in values:
            if partial:
                continue
            value = column.default
        else:
            value = values[column.name]
        try:
            result = coerce(column, value, from_text=from_text)
        except ValueError as exc:
            errors[data_path(column.name)] = str(exc)
            continue
        if result is None:
            if column.required:
                errors[data_path(column.name)] = "required"
            cleared.add(column.key)
        else:
            stored[column.key] = result
    if errors:
        raise MemoryValidationError(errors)
    return stored, cleared
