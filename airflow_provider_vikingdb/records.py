"""Check what the upsert operator is handed, before anything is sent.

Pure functions, no I/O and no heavy imports (DAG files import this at parse time).
A record is a dict of field -> value that VikingDB's upsert takes as JSON: its
primary key under ``id_field`` (int64 other than 0, or a non-empty string; one
type and no repeats across an upsert), and values that encode as UTF-8 JSON
(no NaN or infinity, no lone surrogates, string field names, integers within
int64). The first bad record is named with its position and the field inside
it, e.g. ``records[3]['vector'][17] is NaN``.

The operator takes records as a list (``check_records``) or streams them from a
JSON Lines file (``iter_jsonl_records``, run once to validate and once to send).
"""

from __future__ import annotations

import json
import math
import numbers
import operator
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from typing import Any

from airflow_provider_vikingdb.arguments import timedelta_microseconds
from airflow_provider_vikingdb.ids import (
    INT64,
    INT64_MAX,
    INT64_MIN,
    STRING,
    UNPARSED,
    CheckedIds,
    a_type,
    parse_literal,
    preview,
    surrogate_problem,
    type_name,
)

#: VikingDB's ttl is an int32 number of seconds.
TTL_MAX = 2**31 - 1
#: Deeper than this is a mistake (or a value that contains itself); VikingDB fields nest a level or two.
MAX_DEPTH = 32

_XCOM_HINT = (
    "Pass the upstream task's output as an XComArg (records=upstream_task.output or "
    "records=upstream_fn()) instead of a Jinja string: it passes the real list and sets the dependency"
)  # no final period: callers go on with ". Nothing was sent."
_NUMBERS = frozenset((int, float))


class InvalidRecordsError(ValueError):
    """The records (or ttl) given to an upsert cannot be sent as they are."""


class CheckedRecords(list[dict[str, Any]]):
    """What ``check_records`` returns: the records (dicts) with their keys, checked as a whole.

    ``ids[n]`` is the primary key of ``self[n]``: the keys of a batch ``self[a:b]`` are
    ``ids[a:b]`` (what the operator reports as ``written_ids``). ``ids`` is a
    ``CheckedIds`` (distinct keys of one type), so it can go straight to a delete.
    """

    def __init__(self, id_field: str = "id") -> None:
        super().__init__()
        self.id_field = id_field
        self.ids = CheckedIds()

    @property
    def key_type(self) -> str | None:
        """``"int64"`` or ``"string"`` (the type of every key), or None when there are no records."""
        return self.ids.key_type


def parse_templated_records(value: object) -> object:
    """Undo what Jinja did to a list of records: its text (JSON or Python's) becomes the list again.

    ``"None"``, ``"null"`` or ``""`` (the upstream returned nothing, did not run, or is
    not upstream) are errors, as is text that is not a list's. Anything else is returned
    unchanged for ``check_records`` to judge.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text in ("", "None", "null"):
        raise InvalidRecordsError(
            f"records rendered to {value!r}: the upstream task returned nothing, did not run yet, "
            f"or is not upstream of this task. {_XCOM_HINT}"
        )
    parsed = parse_literal(text)
    if parsed is UNPARSED:
        raise InvalidRecordsError(
            f"records is a string that is neither JSON nor a Python literal: {preview(text)} "
            "(Python's text of a NaN or infinite float, nan or inf, cannot be read back). "
            f"{_XCOM_HINT}"
        )
    return parsed


class _Bad(Exception):
    """A bad value inside a record: ``path`` (innermost first) says where, ``problem`` what."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []


def check_record(
    record: object, position: int, id_field: str = "id", key_type: str | None = None
) -> tuple[str | int, str]:
    """Check one record; return its primary key and the key type (``"int64"`` or ``"string"``).

    ``key_type`` is the type the records before this one have (None for the first): a key
    of the other type is refused. Raises ``InvalidRecordsError`` naming ``records[position]``
    and the field. Repeated keys need state: ``RecordChecker`` tracks them.
    """
    key = _check_record(record, f"records[{position}]", id_field, key_type, None)
    return key, INT64 if type(key) is int else STRING


class RecordChecker:
    """Checks records one at a time, as they stream by, and what they must agree on.

    Tracks the key type (set by the first record), the keys seen (a repeated key is
    refused: batches go in parallel, so which record the collection keeps would be a
    matter of timing) and ``count``. ``label`` formats a record's number into its name
    in messages (``"records[{}]"``; ``"line {}: record"`` for JSON Lines) and ``ref`` into
    a reference to it (default: ``label``; ``"line {}"``).
    """

    def __init__(self, id_field: str = "id", *, label: str = "records[{}]", ref: str | None = None) -> None:
        self.id_field = check_id_field(id_field)
        self.label = label
        self.ref = ref or label
        self.count = 0
        self.key_type: str | None = None
        self._first: int | None = None
        self._seen: dict[str | int, int] = {}

    def check(self, record: object, number: int | None = None) -> str | int:
        """Check the next record (``number`` names it; default: its position); return its key."""
        if number is None:
            number = self.count
        where = self.label.format(number)
        first = None if self._first is None else self.ref.format(self._first)
        key = _check_record(record, where, self.id_field, self.key_type, first)
        earlier = self._seen.setdefault(key, number)
        if earlier != number:
            raise InvalidRecordsError(
                f"{where}[{self.id_field!r}] = {preview(repr(key))} is the key of "
                f"{self.ref.format(earlier)} too: "
                "records of one upsert are sent in parallel batches, so which one the collection "
                "keeps would be a matter of timing. Keep one record per key (e.g. the latest)"
            )
        if self._first is None:
            self._first = number
            self.key_type = INT64 if type(key) is int else STRING
        self.count += 1
        return key


def check_id_field(id_field: object) -> str:
    """The name of the primary-key field: a non-empty string."""
    if not isinstance(id_field, str) or not id_field:
        raise InvalidRecordsError(
            f"id_field must be the name of the collection's primary-key field (a non-empty string), "
            f"got {id_field!r}"
        )
    return id_field


def check_records(records: object, id_field: str = "id") -> CheckedRecords:
    """Check every record of an upsert before anything is sent; return them with their keys.

    ``records``: a list (tuple, generator, Airflow's lazy XCom sequence) of dicts, or the
    Jinja-rendered text of one. Mappings that are not dicts are copied into dicts (what
    the JSON encoder takes); dicts are kept as they are, not copied. Raises
    ``InvalidRecordsError`` on the first bad record.
    """
    if isinstance(records, CheckedRecords) and records.id_field == id_field:
        return records
    checker = RecordChecker(id_field)
    if records is None:
        raise InvalidRecordsError(f"records is None: nothing says what to write. {_XCOM_HINT}")
    records = parse_templated_records(records)
    if isinstance(records, Mapping):
        raise InvalidRecordsError(
            "records must be a list of records (dicts of field -> value), got one dict: "
            "wrap a single record in a list ([record])"
        )
    if isinstance(records, (str, bytes, bytearray)) or not isinstance(records, Iterable):
        raise InvalidRecordsError(
            f"records must be a list of records (dicts of field -> value), got a {type_name(records)}: "
            f"{preview(repr(records))}"
        )
    out = CheckedRecords(id_field)
    append, append_key = out.append, out.ids.append
    for record in records:
        append_key(checker.check(record))
        append(record if isinstance(record, dict) else dict(record))
    return out


def iter_jsonl_records(
    lines: Iterable[str | bytes] | str | bytes, id_field: str = "id"
) -> Iterator[dict[str, Any]]:
    """Parse JSON Lines (one record, a JSON object, per line) and check each record as it goes.

    ``lines``: an open file (text or binary), a list of lines, or the whole text. Blank
    lines are skipped; a UTF-8 byte-order mark on the first line is ignored. Errors name
    the line number (1-based), e.g. ``line 12: record['vector'][3] is NaN``. Run it once
    over the file to validate (nothing sent on bad input), then again to send.
    """
    checker = RecordChecker(id_field, label="line {}: record", ref="line {}")
    if isinstance(lines, str):
        lines = lines.split("\n")
    elif isinstance(lines, (bytes, bytearray)):
        lines = lines.split(b"\n")
    for number, line in enumerate(lines, 1):
        if isinstance(line, (bytes, bytearray)):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidRecordsError(
                    f"line {number} is not UTF-8 ({exc.reason} at byte {exc.start}): "
                    "JSON Lines files are UTF-8"
                ) from None
        elif not isinstance(line, str):
            raise InvalidRecordsError(
                f"line {number} is a {type_name(line)}: give the lines of a JSON Lines file "
                "(an open file, or a list of str or bytes)"
            )
        text = (line.lstrip("\ufeff") if number == 1 else line).strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRecordsError(
                f"line {number} is not valid JSON ({exc.msg} at column {exc.colno}): {preview(text)}"
            ) from None
        except RecursionError:
            raise InvalidRecordsError(f"line {number} is nested too deeply to be a record") from None
        if not isinstance(record, dict):
            raise InvalidRecordsError(
                f"line {number} holds a JSON {_json_kind(record)}, not an object: JSON Lines for an "
                "upsert hold one record (a JSON object of field -> value) per line"
            )
        checker.check(record, number)
        yield record


def check_ttl(value: object) -> int | None:
    """The upsert's ``ttl`` as whole seconds, 1..2**31-1, or None (records never expire).

    Takes an int (any integer type), a whole float (``timedelta(days=7).total_seconds()``),
    a ``timedelta`` of whole seconds, or the text of a whole number (a rendered template;
    ``""`` and ``"None"`` mean None). A bool is refused.
    """
    if value is None:
        return None
    given = value
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "None"):
            return None
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise InvalidRecordsError(
                    f"ttl rendered to {given!r}, which is not a number: give whole seconds "
                    f"from 1 to {TTL_MAX}, or None for records that never expire"
                ) from None
    if isinstance(value, bool):
        raise InvalidRecordsError(f"ttl is a bool ({value!r}): give whole seconds from 1 to {TTL_MAX}")
    if isinstance(value, timedelta):
        whole, rest = divmod(timedelta_microseconds(value), 1_000_000)
        if rest:
            raise InvalidRecordsError(
                f"ttl = {value!r} is not a whole number of seconds: VikingDB's ttl is whole seconds"
            )
        seconds = whole
    elif isinstance(value, numbers.Integral):
        seconds = int(value)
    elif isinstance(value, numbers.Real):
        if not (math.isfinite(value) and float(value).is_integer()):
            raise InvalidRecordsError(
                f"ttl = {given!r} is not a whole number of seconds: VikingDB's ttl is whole seconds "
                f"from 1 to {TTL_MAX}"
            )
        # whole, so the same int as int(value); typeshed's Real has no __int__, only __trunc__
        seconds = operator.index(math.trunc(value))
    else:
        raise InvalidRecordsError(
            f"ttl = {preview(repr(given))} is a {type_name(given)}: give whole seconds (an int) or a "
            "datetime.timedelta"
        )
    if not 1 <= seconds <= TTL_MAX:
        shown = f"{given!r}" if seconds == given else f"{given!r} ({seconds} seconds)"
        raise InvalidRecordsError(
            f"ttl = {shown} is outside 1..{TTL_MAX} seconds (VikingDB's ttl is an int32, about 68 years "
            "at most); leave ttl=None for records that never expire"
        )
    return seconds


# ---- the checks ----


def _check_record(
    record: object, where: str, id_field: str, key_type: str | None, key_type_from: str | None
) -> str | int:
    """Check ``record`` (named ``where``); ``key_type_from`` names the record that set ``key_type``."""
    if not isinstance(record, Mapping):
        raise InvalidRecordsError(
            f"{where} = {preview(repr(record))} is {a_type(record)}, not a dict: each record is a "
            "dict of field -> value"
        )
    try:
        key = record[id_field]
    except KeyError:
        fields = ", ".join(repr(f) for f in list(record)[:8]) or "none"
        raise InvalidRecordsError(
            f"{where} has no {id_field!r} field (its fields: {fields}): every record needs its primary "
            f"key; if the key field has another name, pass id_field='<that name>'"
        ) from None
    key = _check_key(key, f"{where}[{id_field!r}]")
    kind = INT64 if type(key) is int else STRING
    if key_type is not None and kind != key_type:
        if key_type_from:
            before = f"{key_type_from} has {_a(key_type)} key"
        else:
            before = f"the records before it have {key_type} keys"
        raise InvalidRecordsError(
            f"{where}[{id_field!r}] = {preview(repr(key))} is {_a(kind)}, but {before}: a collection "
            "has one primary-key type and VikingDB refuses a batch that mixes them. Make every key "
            f"{_a(key_type)} where the records are made"
        )
    for field, value in record.items():
        if not isinstance(field, str):
            raise InvalidRecordsError(
                f"{where} has the field name {preview(repr(field))} ({type_name(field)}): "
                "field names are strings"
            )
        if problem := surrogate_problem(field):
            raise InvalidRecordsError(f"{where} has the field name {preview(repr(field))}, which {problem}")
        try:
            _check_value(value, 1)
        except _Bad as bad:
            path = preview("".join(reversed(bad.path)), 120)
            raise InvalidRecordsError(f"{where}[{field!r}]{path} {bad.problem}") from None
    return key


def _a(kind: str) -> str:
    return "an int64" if kind == INT64 else "a string"


def _check_key(key: object, where: str) -> str | int:
    if type(key) is str:
        if not key:
            raise InvalidRecordsError(f"{where} is an empty string: primary keys must be non-empty")
        if problem := surrogate_problem(key):
            raise InvalidRecordsError(f"{where} = {preview(repr(key))} {problem}")
        return key
    if type(key) is int or (isinstance(key, int) and not isinstance(key, bool)):
        key = int(key)  # a plain int (IntEnum keys): the JSON encoder sends the same digits
        if not INT64_MIN <= key <= INT64_MAX:
            raise InvalidRecordsError(f"{where} = {key} is outside the int64 range (-2**63 .. 2**63-1)")
        if key == 0:
            raise InvalidRecordsError(
                f"{where} is 0: VikingDB refuses 0 as a primary key; give the record another key"
            )
        return key
    if isinstance(key, str):
        return _check_key(str.__str__(key), where)
    if isinstance(key, bool) or type_name(key) in ("numpy.bool", "numpy.bool_"):
        raise InvalidRecordsError(f"{where} is a bool ({key!r}): primary keys are int64 or non-empty strings")
    if key is None:
        raise InvalidRecordsError(f"{where} is None: every record needs its primary key")
    if isinstance(key, numbers.Integral):
        raise InvalidRecordsError(
            f"{where} = {preview(repr(key))} is {a_type(key)}, which JSON cannot encode: "
            "convert it with int(...) (or .tolist() for a numpy array) where the records are made"
        )
    if isinstance(key, numbers.Number):
        raise InvalidRecordsError(
            f"{where} = {preview(repr(key))} is {a_type(key)}: primary keys are int64 or non-empty "
            "strings, and a float is refused even when whole (floats hold integers exactly only up to "
            "2**53). Convert the keys to int where the records are made"
        )
    raise InvalidRecordsError(
        f"{where} = {preview(repr(key))} is {a_type(key)}: primary keys are int64 or non-empty strings"
    )


def _check_value(value: object, depth: int) -> None:
    """Raise ``_Bad`` unless ``value`` encodes as the UTF-8 JSON VikingDB takes."""
    # type(...) is, not isinstance: subclasses (IntEnum, numpy.float64) go to _check_other.
    if type(value) is str:
        if problem := surrogate_problem(value):
            raise _Bad(problem)
    elif type(value) is float:
        if not math.isfinite(value):
            raise _Bad(_not_finite(value))
    elif type(value) is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise _Bad(f"= {value} is outside the int64 range, the widest integer VikingDB stores")
    elif value is None or type(value) is bool:
        return
    elif type(value) is list or type(value) is tuple:
        _check_list(value, depth)
    elif type(value) is dict:
        _check_dict(value, depth)
    else:
        _check_other(value, depth)


def _check_list(items: list[Any] | tuple[Any, ...], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _Bad(_too_deep())
    # Vectors are long lists of floats: look at them with C loops, element by element only
    # when something is off (to find it, or to clear a false alarm such as an overflowing sum).
    types = set(map(type, items))
    if types <= _NUMBERS:
        try:
            if math.isfinite(sum(items)) and (
                int not in types or (min(items) >= INT64_MIN and max(items) <= INT64_MAX)
            ):
                return
        except OverflowError:  # an int too large for a float
            pass
    elif types == {str} and all(map(str.isascii, items)):
        return
    for index, item in enumerate(items):
        try:
            _check_value(item, depth + 1)
        except _Bad as bad:
            bad.path.append(f"[{index}]")
            raise


def _check_dict(mapping: dict[object, object], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _Bad(_too_deep())
    for name, item in mapping.items():
        if not isinstance(name, str):
            raise _Bad(f"has the key {preview(repr(name))} ({type_name(name)}): keys are strings")
        if problem := surrogate_problem(name):
            raise _Bad(f"has the key {preview(repr(name))}, which {problem}")
        try:
            _check_value(item, depth + 1)
        except _Bad as bad:
            bad.path.append(f"[{name!r}]")
            raise


def _check_other(value: object, depth: int) -> None:
    """Subclasses the JSON encoder takes (IntEnum, numpy.float64, OrderedDict), or a refusal."""
    if isinstance(value, str):
        _check_value(str.__str__(value), depth)
    elif isinstance(value, int):
        _check_value(int(value), depth)
    elif isinstance(value, float):
        _check_value(float(value), depth)
    elif isinstance(value, (list, tuple)):
        _check_list(value, depth)
    elif isinstance(value, dict):
        _check_dict(value, depth)
    else:
        raise _Bad(_refusal(value))


def _refusal(value: object) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        fix = "decode it (.decode('utf-8')), or base64-encode binary data"
    elif hasattr(value, "tolist"):  # numpy arrays and numbers, without importing numpy
        fix = "convert it with .tolist() where the records are made"
    elif isinstance(value, numbers.Integral):
        fix = "convert it with int(...)"
    elif isinstance(value, numbers.Number):  # Decimal, Fraction
        fix = "convert it with float(...)"
    elif isinstance(value, Mapping):
        fix = "convert it with dict(...)"
    elif isinstance(value, (set, frozenset)):
        fix = "convert it to a list"
    else:
        fix = "convert it to one of those"
    return (
        f"is {a_type(value)}, which JSON cannot encode (VikingDB takes str, int, float, bool, None, "
        f"lists and dicts): {fix}"
    )


def _not_finite(value: float) -> str:
    what = "NaN" if math.isnan(value) else "infinite" if value > 0 else "-infinite"
    return (
        f"is {what}: JSON has no NaN or infinity, so VikingDB cannot be sent it. "
        "Fix or drop the record where it is made"
    )


def _too_deep() -> str:
    return f"is nested more than {MAX_DEPTH} levels deep (does it contain itself?)"


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"
