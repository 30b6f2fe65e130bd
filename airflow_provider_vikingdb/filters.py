"""Filters for deleting by filter (issue 12), checked before anything is searched or deleted.

Pure functions, no I/O and no heavy imports (DAG files import this at parse time).
VikingDB has no delete-by-filter: the operator searches an index with the filter
and deletes the ids it finds. A filter is VikingDB's filter language (see the API
notes, section 6), checked here structurally, every error naming the path inside
the filter (``filter.conds[1].gte``) and the fix::

    {"op": "must" | "must_not", "field": F, "conds": [value, ...]}     # str, int64, bool values
    {"op": "range" | "range_out", "field": F, "gt" | "gte" | "lt" | "lte": number, ...}
    {"op": "and" | "or", "conds": [filter, ...]}

A filter that restricts nothing (``{}``, an empty ``and``) would delete every
record: that is ``del_all``, and is refused here with that advice.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from airflow_provider_vikingdb.arguments import timedelta_microseconds
from airflow_provider_vikingdb.exceptions import plural
from airflow_provider_vikingdb.ids import (
    INT64_MAX,
    INT64_MIN,
    UNPARSED,
    a_type,
    parse_literal,
    preview,
    surrogate_problem,
)

#: The ops of VikingDB's filter language.
OPS = ("must", "must_not", "range", "range_out", "and", "or")
#: The bounds of a range filter.
BOUNDS = ("gt", "gte", "lt", "lte")
#: ``time_unit`` -> units per second.
TIME_UNITS = {"s": 1, "ms": 1000}
#: Deeper than this is a mistake (or a filter that contains itself).
MAX_DEPTH = 32

_KEYS = {
    "must": ("op", "field", "conds"),
    "must_not": ("op", "field", "conds"),
    "range": ("op", "field", *BOUNDS),
    "range_out": ("op", "field", *BOUNDS),
    "and": ("op", "conds"),
    "or": ("op", "conds"),
}
# What people write for an op VikingDB spells otherwise.
_OP_HINTS = {
    "eq": "must",
    "in": "must",
    "=": "must",
    "==": "must",
    "ne": "must_not",
    "not_in": "must_not",
    "!=": "must_not",
    "not": "must_not",
    "between": "range",
    "gt": "range",
    "gte": "range",
    "lt": "range",
    "lte": "range",
}
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

DEL_ALL_ADVICE = "that is del_all; use del_all=True if you mean it"


class InvalidFilterError(ValueError):
    """A filter (or a retention setting) is not one VikingDB can search with as meant."""


def parse_filter(value: object) -> dict[str, Any]:
    """Check a filter and return it as a new dict, numeric text in range bounds made numbers.

    ``value``: a dict, or its text (JSON, or Python's as Jinja renders a dict). Raises
    ``InvalidFilterError`` naming the path inside the filter and the fix; a filter that
    restricts nothing is refused as ``del_all`` in disguise.
    """
    if value is None:
        raise InvalidFilterError(
            "filter is None: give a filter (a dict), or del_all=True to delete everything"
        )
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "None", "null"):
            raise InvalidFilterError(
                f"filter rendered to {value!r}: the template produced no filter (an upstream task returned "
                "nothing, or is not upstream of this task). Give the filter as a dict, or as an XComArg "
                "(filter=upstream_task.output)"
            )
        parsed = parse_literal(text)
        if parsed is UNPARSED:
            raise InvalidFilterError(
                f"filter is a string that is neither JSON nor a Python literal: {preview(text)}. "
                'Give a dict such as {"op": "range", "field": "created_at", "lt": 1700000000}'
            )
        value = parsed
    if not isinstance(value, Mapping):
        raise InvalidFilterError(
            f"filter must be a dict such as {{'op': 'must', 'field': 'source', 'conds': ['crm']}}, "
            f"got {a_type(value)}: {preview(repr(value))}"
        )
    if restricts_nothing(value):
        raise InvalidFilterError(
            f"filter {preview(repr(dict(value)))} restricts nothing: deleting by it would delete every "
            f"record; {DEL_ALL_ADVICE}"
        )
    return _check(value, "filter", 0)


def restricts_nothing(value: object, _depth: int = 0) -> bool:
    """True for ``{}`` and for an and/or whose conds are all such (or none): no record is filtered out."""
    if not isinstance(value, Mapping) or _depth > MAX_DEPTH:
        return False
    if not value:
        return True
    if value.get("op") not in ("and", "or") or not set(value) <= {"op", "conds"}:
        return False
    conds = value.get("conds", [])
    return isinstance(conds, (list, tuple)) and all(restricts_nothing(c, _depth + 1) for c in conds)


def retention_filter(
    time_field: str, older_than: timedelta | float | str, time_unit: str, reference: datetime
) -> tuple[dict[str, Any], int]:
    """The filter for "records older than ``older_than`` at ``reference``", and its cutoff.

    ``time_field`` holds each record's time as an int64 epoch in ``time_unit`` (``"s"``
    seconds or ``"ms"`` milliseconds); ``older_than`` is a ``timedelta`` or seconds
    (> 0; numeric text as a template renders it); ``reference`` an aware datetime (the
    run's ``data_interval_end``, so a re-run deletes the same records). Returns
    ``({"op": "range", "field": time_field, "lt": cutoff}, cutoff)``, the cutoff rounded
    down to a whole unit: a record younger than ``older_than`` is never matched.
    """
    field = _field_name(time_field, "time_field")
    per_second = _units_per_second(time_unit, field)
    age = age_microseconds(older_than)
    if not isinstance(reference, datetime):
        raise InvalidFilterError(
            f"reference must be a datetime (the run's data_interval_end), got {a_type(reference)}: "
            f"{preview(repr(reference))}"
        )
    if reference.utcoffset() is None:
        raise InvalidFilterError(
            f"reference {reference!r} is a naive datetime: it names no instant. Give an aware one "
            "(the run's data_interval_end is; or datetime.now(timezone.utc))"
        )
    cutoff_us = timedelta_microseconds(plain_utc(reference) - _EPOCH) - age
    cutoff = cutoff_us // (1_000_000 // per_second)
    return {"op": "range", "field": field, "lt": cutoff}, cutoff


def plain_utc(value: datetime) -> datetime:
    """An aware datetime as a stdlib one in UTC: Airflow hands out pendulum datetimes, whose
    differences are pendulum intervals that cannot be divided by a stdlib timedelta."""
    utc = value.astimezone(timezone.utc)
    return datetime(*utc.timetuple()[:6], utc.microsecond, tzinfo=timezone.utc)


def describe_age(older_than: timedelta | float | str) -> str:
    """``older_than`` for a log line, in the largest whole unit: ``90 days``, ``36 hours``, ``90 s``."""
    microseconds = age_microseconds(older_than)
    for size, name in ((86_400, "day"), (3_600, "hour"), (60, "minute")):
        count, rest = divmod(microseconds, size * 1_000_000)
        if not rest:
            return plural(count, name)
    return f"{microseconds / 1_000_000:g} s"


def and_filters(*filters: Mapping[str, Any] | None) -> dict[str, Any]:
    """All of ``filters`` (AND), nested ands flattened; None and ``{}`` add nothing.

    One filter is returned as (a copy of) itself; none gives ``{}``, which ``parse_filter``
    refuses as ``del_all``. The filters themselves are not checked: ``parse_filter`` does that.
    """
    conds: list[Mapping[str, Any]] = []
    for position, item in enumerate(filters):
        if item is None:
            continue
        if not isinstance(item, Mapping):
            raise InvalidFilterError(
                f"and_filters takes filters (dicts) or None; argument {position} is {a_type(item)}: "
                f"{preview(repr(item))}"
            )
        _and_parts(item, conds, 0)
    if not conds:
        return {}
    if len(conds) == 1:
        return dict(conds[0])
    return {"op": "and", "conds": conds}


def filter_fields(value: object) -> set[str]:
    """The field names a filter tests (in every nested filter). None gives an empty set."""
    fields: set[str] = set()
    _collect_fields(value, fields, 0)
    return fields


# ---- the checks ----


def _check(value: object, path: str, depth: int) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidFilterError(
            f"{path} is {a_type(value)} ({preview(repr(value))}): each filter is a dict with an op"
        )
    if depth > MAX_DEPTH:
        raise InvalidFilterError(
            f"{path} is nested more than {MAX_DEPTH} levels deep (does it contain itself?)"
        )
    if not value:
        raise InvalidFilterError(f"{path} is empty ({{}}): it filters nothing out; remove it")
    if "op" not in value:
        raise InvalidFilterError(f"{path} has no op: give one of {_ops()}")
    op = value["op"]
    if not isinstance(op, str) or op not in _KEYS:
        raise InvalidFilterError(
            f"{path}.op = {preview(repr(op))} is not a VikingDB filter op: {_op_hint(op)}"
        )
    allowed = _KEYS[op]
    for key in value:
        if key not in allowed:
            raise InvalidFilterError(
                f"{path} has the unknown key {preview(repr(key))}: {_a_op(op)} filter takes "
                f"{', '.join(allowed)}{_key_hint(op, key)}"
            )
    out: dict[str, Any] = {"op": op}
    if op in ("and", "or"):
        conds = _conds(value, path, op, "a non-empty list of filters")
        out["conds"] = [_check(item, f"{path}.conds[{i}]", depth + 1) for i, item in enumerate(conds)]
        return out
    if "field" not in value:
        raise InvalidFilterError(f"{path}.field is missing: {_a_op(op)} filter names the field it tests")
    out["field"] = _field_name(value["field"], f"{path}.field")
    if op in ("must", "must_not"):
        conds = _conds(value, path, op, "a non-empty list of the values to match")
        out["conds"] = _scalar_conds(conds, f"{path}.conds")
    else:
        out.update(_bounds(value, path, op))
    return out


def _conds(value: Mapping[str, Any], path: str, op: str, what: str) -> list[Any] | tuple[Any, ...]:
    if "conds" not in value:
        raise InvalidFilterError(f"{path}.conds is missing: {_a_op(op)} filter takes {what}")
    conds = value["conds"]
    if not isinstance(conds, (list, tuple)):
        raise InvalidFilterError(
            f"{path}.conds is {a_type(conds)} ({preview(repr(conds))}): {_a_op(op)} filter takes {what}"
            + (f" (for one value: [{conds!r}])" if op in ("must", "must_not") else "")
        )
    if not conds:
        if op in ("and", "or"):
            raise InvalidFilterError(
                f"{path}.conds is empty: an empty {op} restricts nothing; remove it, or give the filters "
                "it combines"
            )
        raise InvalidFilterError(f"{path}.conds is empty: {_a_op(op)} filter takes {what}")
    return conds


def _scalar_conds(conds: list[Any] | tuple[Any, ...], path: str) -> list[str | int | bool]:
    out: list[str | int | bool] = []
    first_kind, first = "", 0
    for i, item in enumerate(conds):
        where = f"{path}[{i}]"
        if isinstance(item, bool):
            kind = "bool"
        elif isinstance(item, str):
            item = str.__str__(item)
            if problem := surrogate_problem(item):
                raise InvalidFilterError(f"{where} = {preview(repr(item))} {problem}")
            kind = "string"
        elif isinstance(item, numbers.Integral):
            item = int(item)
            if not INT64_MIN <= item <= INT64_MAX:
                raise InvalidFilterError(f"{where} = {item} is outside the int64 range (-2**63 .. 2**63-1)")
            kind = "int64"
        elif isinstance(item, numbers.Real):
            whole = math.isfinite(item) and float(item).is_integer()
            raise InvalidFilterError(
                f"{where} = {preview(repr(item))} is {a_type(item)}: must and must_not match string, "
                "int64 and bool fields exactly; "
                + (f"write {math.trunc(item)}" if whole else "for numbers between bounds use a range filter")
            )
        else:
            raise InvalidFilterError(
                f"{where} = {preview(repr(item))} is {a_type(item)}: conds holds the values to match "
                "(strings, int64 integers or bools)"
            )
        if not first_kind:
            first_kind, first = kind, i
        elif kind != first_kind:
            raise InvalidFilterError(
                f"{where} = {preview(repr(item))} is {_a(kind)}, but {path}[{first}] is {_a(first_kind)}: "
                "a field has one type, so its values do too"
            )
        out.append(item)
    return out


def _bounds(value: Mapping[str, Any], path: str, op: str) -> dict[str, int | float]:
    given = [key for key in BOUNDS if key in value]
    if not given:
        raise InvalidFilterError(
            f"{path} has no bound: {_a_op(op)} filter takes at least one of gt, gte, lt, lte"
        )
    for a, b in (("gt", "gte"), ("lt", "lte")):
        if a in value and b in value:
            raise InvalidFilterError(
                f"{path} has both {a} and {b}: give one {'lower' if a == 'gt' else 'upper'} bound"
            )
    bounds = {key: _number(value[key], f"{path}.{key}") for key in given}
    low = next(((key, bounds[key]) for key in ("gt", "gte") if key in bounds), None)
    high = next(((key, bounds[key]) for key in ("lt", "lte") if key in bounds), None)
    if low and high and (low[1] > high[1] or (low[1] == high[1] and (low[0], high[0]) != ("gte", "lte"))):
        outcome = (
            ("so range_out of it is every record; " + DEL_ALL_ADVICE)
            if op == "range_out"
            else "it matches nothing"
        )
        raise InvalidFilterError(
            f"{path}: {low[0]} = {low[1]!r} and {high[0]} = {high[1]!r} leave no value between them: "
            f"the range is empty, {outcome}"
        )
    return bounds


_BOUND_RULE = "range bounds are int64 or float numbers"


def _number(value: object, where: str, rule: str = _BOUND_RULE) -> int | float:
    """A range bound: an int64, a finite float, or the text of either (a rendered template)."""
    if isinstance(value, bool):
        raise InvalidFilterError(f"{where} is a bool ({value!r}): {rule}")
    if isinstance(value, str):
        text = value.strip()
        if _INT_TEXT.fullmatch(text):
            value = int(text)
        elif _FLOAT_TEXT.fullmatch(text):
            value = float(text)
        else:
            raise InvalidFilterError(
                f"{where} = {preview(repr(value))} is not a number: {rule} "
                "(numeric text such as '1700000000' or '1.5' is read as one)"
            )
    if isinstance(value, numbers.Integral):
        value = int(value)
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidFilterError(f"{where} = {value} is outside the int64 range (-2**63 .. 2**63-1)")
        return value
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise InvalidFilterError(f"{where} is {value!r}: {rule}, and finite")
        return value
    hint = ""
    if isinstance(value, (datetime, date)):
        hint = (
            "; an age is a timedelta, e.g. older_than=timedelta(days=90)"
            if where == "older_than"
            else "; VikingDB compares times as numbers: give int(moment.timestamp()) for a field of "
            "epoch seconds (x 1000 for milliseconds)"
        )
    raise InvalidFilterError(f"{where} = {preview(repr(value))} is {a_type(value)}: {rule}{hint}")


def _field_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidFilterError(
            f"{where} = {preview(repr(value))} is not a field name: give a non-empty string"
        )
    value = str.__str__(value)
    if problem := surrogate_problem(value):
        raise InvalidFilterError(f"{where} = {preview(repr(value))} {problem}")
    return value


def _units_per_second(time_unit: object, field: str) -> int:
    if not isinstance(time_unit, str) or time_unit not in TIME_UNITS:
        raise InvalidFilterError(
            f"time_unit must be 's' (epoch seconds) or 'ms' (epoch milliseconds), as {field!r} "
            f"stores them; got {time_unit!r}"
        )
    return TIME_UNITS[time_unit]


def age_microseconds(older_than: object) -> int:
    """``older_than`` (a timedelta, or seconds as a number or its text) in microseconds, above 0."""
    rule = "older_than is a timedelta or a number of seconds above 0"
    if isinstance(older_than, timedelta):
        age = timedelta_microseconds(older_than)
    else:
        seconds = _number(older_than, "older_than", rule)
        age = seconds * 1_000_000 if isinstance(seconds, int) else round(seconds * 1_000_000)
    if age <= 0:
        raise InvalidFilterError(
            f"older_than = {older_than!r} is not above 0: {rule} (a cutoff at or after the reference "
            "would match records that are not old at all)"
        )
    return age


def _and_parts(value: Mapping[str, Any], into: list[Mapping[str, Any]], depth: int) -> None:
    if not value:
        return
    conds = value.get("conds")
    if (
        depth <= MAX_DEPTH
        and value.get("op") == "and"
        and set(value) <= {"op", "conds"}
        and isinstance(conds, (list, tuple))
        and conds
        and all(isinstance(c, Mapping) for c in conds)
    ):
        for item in conds:
            _and_parts(item, into, depth + 1)
        return
    into.append(value)


def _collect_fields(value: object, into: set[str], depth: int) -> None:
    if not isinstance(value, Mapping) or depth > MAX_DEPTH:
        return
    field = value.get("field")
    if isinstance(field, str):
        into.add(field)
    if value.get("op") in ("and", "or") and isinstance(value.get("conds"), (list, tuple)):
        for item in value["conds"]:
            _collect_fields(item, into, depth + 1)


# ---- message parts ----


def _ops() -> str:
    return ", ".join(OPS)


def _op_hint(op: object) -> str:
    if isinstance(op, str):
        if op.strip().lower() in _KEYS:
            return f"ops are lower case without spaces: {op.strip().lower()!r}"
        if op.strip().lower() in _OP_HINTS:
            return f"use {_OP_HINTS[op.strip().lower()]!r} (VikingDB's ops: {_ops()})"
    return f"use one of {_ops()}"


def _key_hint(op: str, key: object) -> str:
    if op in ("must", "must_not") and key in BOUNDS:
        return f" (for bounds use op 'range': {{'op': 'range', 'field': ..., {key!r}: ...}})"
    if op in ("range", "range_out") and key == "conds":
        return " (to match listed values use op 'must')"
    if op in ("and", "or") and key == "field":
        return f" (an {op} combines filters in conds; each names its own field)"
    if key in ("value", "values", "cond", "in"):
        return " (the values to match go in conds, a list)"
    return ""


def _a_op(op: str) -> str:
    return f"an {op}" if op in ("and", "or") else f"a {op}"


def _a(kind: str) -> str:
    return "an int64" if kind == "int64" else f"a {kind}"
