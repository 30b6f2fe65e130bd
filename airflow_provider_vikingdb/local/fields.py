"""Typed scalar fields: what a collection declares for filtering, ordering and counting.

The real service filters, orders and counts only on fields that have a *scalar index*.
The local server has no index schema, so a collection declares its scalar fields
instead (``--field COLLECTION:NAME:TYPE``, or ``fields={"coll": {"name": "type"}}``);
every index of the collection indexes all of them. Writes are checked against the
declared types (a wrong type is a 400 that names the field); undeclared fields are
stored as given and can be returned, but not filtered on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

FIELD_TYPES = ("int64", "float32", "string", "bool", "list<string>", "list<int64>")
#: ``range``, ``range_out`` and ``search/scalar`` work on these.
NUMERIC_TYPES = ("int64", "float32")
#: ``must`` and ``must_not`` work on these.
DISCRETE_TYPES = ("int64", "string", "bool", "list<string>", "list<int64>")
#: ``agg`` groups by these (the documented types).
GROUP_TYPES = ("int64", "string", "bool")
LIST_TYPES = {"list<string>": "string", "list<int64>": "int64"}


def is_int64(value: Any) -> bool:
    # bool is an int subclass in Python, but JSON true is not an int64.
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not isinstance(value, float) or math.isfinite(value)


def scalar_problem(value: Any, scalar_type: str) -> str | None:
    """Why ``value`` is not a value of ``scalar_type`` (int64, float32, string, bool), or None."""
    if scalar_type == "int64":
        if isinstance(value, int) and not isinstance(value, bool) and not is_int64(value):
            return f"{value} is out of the int64 range"
        return None if is_int64(value) else f"{value!r} is not an int64"
    if scalar_type == "float32":
        return None if is_number(value) else f"{value!r} is not a finite number (float32)"
    if scalar_type == "string":
        return None if isinstance(value, str) else f"{value!r} is not a string"
    if scalar_type == "bool":
        return None if isinstance(value, bool) else f"{value!r} is not true or false"
    raise ValueError(f"not a scalar type: {scalar_type!r}")


def value_problem(value: Any, field_type: str) -> str | None:
    """Why ``value`` cannot be stored in a field of ``field_type``, or None if it can."""
    element = LIST_TYPES.get(field_type)
    if element is None:
        return scalar_problem(value, field_type)
    if not isinstance(value, list):
        return f"{value!r} is not a {field_type}"
    for position, item in enumerate(value):
        problem = scalar_problem(item, element)
        if problem:
            return f"element {position}: {problem}"
    return None


def check_field_type(field_type: object, where: str) -> str:
    if not isinstance(field_type, str) or field_type not in FIELD_TYPES:
        raise ValueError(f"{where}: field type {field_type!r} is not one of {', '.join(FIELD_TYPES)}")
    return field_type


def parse_field_spec(spec: str) -> tuple[str, str, str]:
    """``COLLECTION:FIELD:TYPE`` -> (collection, field, type), e.g. ``docs:created_at:int64``."""
    parts = spec.split(":")
    if len(parts) != 3 or not all(parts):
        raise ValueError(
            f"field spec {spec!r} is not COLLECTION:FIELD:TYPE (TYPE one of {', '.join(FIELD_TYPES)})"
        )
    collection, name, field_type = parts
    return collection, name, check_field_type(field_type, f"field spec {spec!r}")


def check_fields(fields: object, where: str) -> dict[str, str]:
    """A ``{name: type}`` mapping (or None: no fields), checked; ValueError names the bad entry."""
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise ValueError(f"{where}: fields must be a mapping of field name to type, not {fields!r}")
    checked: dict[str, str] = {}
    for name, field_type in fields.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: field names must be non-empty strings, not {name!r}")
        checked[name] = check_field_type(field_type, f"{where}, field {name!r}")
    return checked
