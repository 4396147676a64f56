"""The REST API's row query string -> the query builder's arguments (``selectors``).

    ?where[plan]=pro                 equals (``where[plan][eq]=pro`` is the same)
    ?where[age][gte]=30&where[age][lt]=40
    ?where[plan][in]=free&where[plan][in]=pro     (repeat the parameter for each value)
    ?where[note][is_null]=true       ?where[name][contains]=ann   ?where[plan][not]=free
    ?ordering=-age,name   ?limit=50&offset=100

Query strings carry only text, so each value is parsed by its column's type (the way a
CSV cell is) before the selectors check it; an empty value means "no value".
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.http import QueryDict
from django.utils.dateparse import parse_date, parse_datetime

from apps.memory.models import Column
from apps.memory.selectors import OPERATORS, SYSTEM_FIELDS
from apps.memory.validation import TEXTUAL, MemoryValidationError, coerce

WHERE_KEY = re.compile(r"^where\[([^\[\]]+)\](?:\[([^\[\]]+)\])?$")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def where_from_params(params: QueryDict, columns: list[Column]) -> dict[str, dict[str, Any]]:
    by_name = {c.name: c for c in columns}
    where: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for key in params:
        if not key.startswith("where"):
            continue
        match = WHERE_KEY.match(key)
        if match is None:
            errors[key] = "expected where[field]=value or where[field][operator]=value"
            continue
        field, op = match.group(1), match.group(2) or "eq"
        try:
            where.setdefault(field, {})[op] = _operand(by_name.get(field), field, op,
                                                       params.getlist(key))
        except ValueError as exc:
            errors[key] = str(exc)
    if errors:
        raise MemoryValidationError(errors)
    return where


def _operand(column: Column | None, field: str, op: str, texts: list[str]) -> Any:
    if op not in OPERATORS:
        raise ValueError(f"unknown operator {op!r} (use {', '.join(sorted(OPERATORS))})")
    if op == "in":
        return [_typed(column, field, text) for text in texts]
    if len(texts) > 1:
        raise ValueError("given more than once; use [in] for a list of values")
    text = texts[0]
    if op == "is_null":
        return coerce(Column(type=Column.Type.BOOLEAN), text, from_text=True)
    if op == "contains":
        return text
    return _typed(column, field, text)


def _typed(column: Column | None, field: str, text: str) -> Any:
    if text.strip() == "":
        return None
    if column is None:
        # Unknown fields go through as text: the selectors name them in their error.
        return _system(field, text) if field in SYSTEM_FIELDS else text
    if column.type in TEXTUAL:
        return text  # a choice operand may be a removed option, so options are not checked
    return coerce(column, text, from_text=True)


def _system(field: str, text: str) -> Any:
    if field == "id":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    try:
        value = parse_datetime(text)
        day = None if value else parse_date(text)
    except ValueError:
        value = day = None
    if day is not None:
        value = dt.datetime.combine(day, dt.time.min)
    if value is None:
        raise ValueError(f"expected an ISO 8601 date or datetime, got {text!r}")
    # Naive times are UTC, as the validation takes them for datetime columns.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def ordering_from_params(params: QueryDict) -> list[str] | None:
    text = params.get("ordering", "").strip()
    return [name.strip() for name in text.split(",") if name.strip()] or None


def page_from_params(params: QueryDict) -> tuple[int, int]:
    """(limit, offset), each checked: a typo should not silently return the first page."""
    errors: dict[str, str] = {}
    limit = _count(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT, errors)
    offset = _count(params, "offset", 0, 0, None, errors)
    if errors:
        raise MemoryValidationError(errors)
    return limit, offset


def _count(params: QueryDict, name: str, default: int, low: int, high: int | None,
           errors: dict[str, str]) -> int:
    text = params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        upper = f" to {high}" if high is not None else " or more"
        errors[name] = f"expected an integer from {low}{upper}, got {text!r}"
        return default
    return value
