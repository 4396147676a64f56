"""JSON in and out of checkpoints, with pydantic ``TypeAdapter``s of the annotations.

Outputs are stored as JSON (CONTRACTS.md §3) and read back through the consumer's
annotation, so a pydantic model defined in a script round-trips.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from flowops.exceptions import InputValidationError


@functools.lru_cache(maxsize=512)
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation)


def adapter(annotation: Any) -> TypeAdapter:
    if annotation is inspect.Signature.empty or annotation is None:
        annotation = Any
    try:
        return _adapter(annotation)
    except TypeError:  # unhashable annotation
        return TypeAdapter(annotation)


def encode(value: Any, annotation: Any = Any) -> Any:
    """Dump ``value`` to JSON-able data; ``TypeError`` names the type that cannot be."""
    try:
        if annotation in (Any, None, inspect.Signature.empty):
            return to_jsonable_python(value)
        return adapter(annotation).dump_python(value, mode="json", warnings="error")
    except Exception as exc:
        raise TypeError(f"cannot encode a {type(value).__name__} as JSON: {exc}") from None


def decode(data: Any, annotation: Any = Any) -> Any:
    if annotation in (Any, None, inspect.Signature.empty):
        return data
    return adapter(annotation).validate_python(data)


def validate_input(data: Any, annotation: Any, *, what: str) -> Any:
    """Validate run input against the first step's annotation, naming what failed."""
    try:
        return decode(data, annotation)
    except ValidationError as exc:
        raise InputValidationError(
            f"{what} does not fit {_type_name(annotation)}: {describe_errors(exc, root='input')}"
        ) from None


def describe_errors(exc: ValidationError, *, root: str = "") -> str:
    """pydantic's errors in one line, each naming its field: ``qty: Field required; ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or root}: {e['msg']}"
                     for e in exc.errors())


def canonical_json(value: Any) -> str:
    return json.dumps(to_jsonable_python(value, fallback=repr), sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or repr(annotation)
