"""Turn whatever a DAG hands us into a clean list of VikingDB primary keys.

Pure functions, no I/O and no heavy imports: the operator calls them at run
time and the hook calls them before anything is sent. VikingDB keys are int64
or non-empty strings, one type per collection; anything else is refused with
the first bad id and its position, so nothing is half-sent.
"""

from __future__ import annotations

import json
import numbers
import operator
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_BATCH_SIZE = 100

#: The two primary-key types of a VikingDB collection, as ``key_type`` names them.
INT64 = "int64"
STRING = "string"

_XCOM_HINT = (
    "Pass the upstream task's output as an XComArg (ids=upstream_task.output or "
    "ids=upstream_fn()) instead of a Jinja string: it passes the real list and sets the dependency"
)  # no final period: callers go on with ". Nothing was sent."

# A lone surrogate (U+D800..U+DFFF) is a valid Python str that UTF-8 cannot encode.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_INT64_RANGE = "the int64 range (-2**63 .. 2**63-1)"


class InvalidIdsError(ValueError):
    """The ids argument cannot be turned into a list of VikingDB primary keys."""


class CheckedIds(list[str | int]):
    """What ``normalize_ids`` returns: valid, distinct keys of one type. Normalizing it again is free.

    The operator checks ids before calling the hook, and the hook checks whatever it is
    given; for a million ids a second pass would cost another de-duplication set.
    Every element is a plain ``int`` or a plain ``str``, all of the same type.
    """

    @property
    def key_type(self) -> str | None:
        """``"int64"`` or ``"string"`` (the type of every id), or None when there are none."""
        if not self:
            return None
        return INT64 if type(self[0]) is int else STRING


def parse_templated_ids(value: object) -> object:
    """Undo what Jinja did to a list: ``"['a', 'b']"`` becomes ``['a', 'b']`` again.

    A rendered ``"{{ ti.xcom_pull(...) }}"`` is the *text* of the list, and
    ``"None"`` (or ``""``) when the upstream returned nothing or did not run.
    Sending either as one id would be a silent disaster, so they are errors.
    Strings that are not the text of a list are returned unchanged (a single id).
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text in ("", "None", "null"):
        raise InvalidIdsError(
            f"ids rendered to {value!r}: the upstream task returned nothing, did not run yet, "
            f"or is not upstream of this task. {_XCOM_HINT}"
        )
    # Starts or ends like a list: a list's text, perhaps broken, never a single id.
    if text[0] in "[(" or text[-1] in "])":
        parsed = parse_literal(text)
        if parsed is UNPARSED:
            raise InvalidIdsError(
                f"ids is a string that looks like a list but is neither JSON nor a Python literal: "
                f"{preview(text)}. {_XCOM_HINT}"
            )
        return parsed
    return value


#: What ``parse_literal`` returns for text that is neither JSON nor a Python literal.
UNPARSED = object()


def parse_literal(text: str) -> object:
    """``text`` read as JSON, else as a Python literal (what Jinja renders), else ``UNPARSED``."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    import ast  # only Jinja-rendered text needs it: not paid for at DAG parse time

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return UNPARSED


def check_id(value: object, position: int) -> str | int:
    """Return ``value`` as a plain ``int`` or ``str`` if it is a valid primary key, else raise.

    The error names the id and its position. Integers of other types (``numpy.int64``, any
    ``numbers.Integral``) become plain ints; ``str`` subclasses (``numpy.str_``) plain strs.
    """
    if type(value) is str:
        if value and (value.isascii() or not _SURROGATE.search(value)):
            return value
    elif type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return value
    return _check_unusual_id(value, position)


def _check_unusual_id(value: object, position: int) -> str | int:
    """The slow path of ``check_id``: subclasses, other integer types, and every refusal."""
    where = f"ids[{position}]"
    # bool is an int subclass: True would be sent as 1. Refuse it explicitly.
    if isinstance(value, bool) or type_name(value) in ("numpy.bool", "numpy.bool_"):
        raise InvalidIdsError(f"{where} is a bool ({value!r}): ids must be int64 or non-empty strings")
    if isinstance(value, str):
        text = str.__str__(value)  # a plain str with the same characters (np.str_, StrEnum, ...)
        if not text:
            raise InvalidIdsError(f"{where} is an empty string: primary keys must be non-empty")
        if problem := surrogate_problem(text):
            raise InvalidIdsError(f"{where} = {preview(repr(text))} {problem}")
        return text
    if isinstance(value, numbers.Integral):  # numpy.int64, IntEnum, ...: no numpy import needed
        try:
            number = operator.index(value)
        except TypeError:  # registered as Integral, yet no __index__
            raise InvalidIdsError(
                f"{where} = {preview(repr(value))} is a {type_name(value)}, an integer type without an "
                "integer value (__index__): convert the ids to int where they are produced"
            ) from None
        if not INT64_MIN <= number <= INT64_MAX:
            raise InvalidIdsError(f"{where} = {number} is outside {_INT64_RANGE}")
        return number
    if value is None:
        raise InvalidIdsError(
            f"{where} = None (NoneType): an upstream value was missing. "
            "Drop the Nones, or fix the task that produced them"
        )
    raise InvalidIdsError(f"{where} = {preview(repr(value))} {refusal(value)}")


def refusal(value: object) -> str:
    """Why ``value`` is not a primary key and what to do, after "ids[3] = 5.0 "."""
    kind = a_type(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"is {kind}: primary keys are int64 or non-empty strings; decode it first (.decode('utf-8'))"
    if isinstance(value, numbers.Number):
        # A whole float is refused too: a float id may already have lost digits (floats
        # are exact only up to 2**53, and pandas turns an int column with gaps into floats).
        return (
            f"is {kind}: primary keys are int64 or non-empty strings, and a number that is not an "
            "integer type is refused even when whole (a float holds integers exactly only up to 2**53). "
            "Convert the ids to int where they are produced (int(x), or .astype('int64'))"
        )
    if isinstance(value, (list, tuple, set, frozenset)):
        return (
            f"is {kind}: ids must be int64 or non-empty strings, not lists of them. A mapped task's "
            "output (or written_ids of a mapped load) is one list per mapped task: flatten it first, "
            "e.g. in a @task: return [i for part in parts for i in part]"
        )
    return f"is {kind}: ids must be int64 or non-empty strings"


def type_name(value: object) -> str:
    """``float``, ``bytes``, ``numpy.int64``: builtins bare, everything else with its module."""
    cls = type(value)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def a_type(value: object) -> str:
    """The type of ``value`` as a phrase: "a float", "an int", "a numpy.ndarray", "bytes"."""
    kind = type_name(value)
    if kind == "bytes":
        return kind
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def surrogate_problem(text: str) -> str | None:
    """None if UTF-8 can encode ``text``; else what is wrong with it, to follow "ids[3] = '...' "."""
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return (
        f"holds a lone surrogate ({found.group()!r} at character {found.start()}), which cannot be "
        "encoded as UTF-8, so VikingDB cannot be sent it. It usually comes from bytes decoded with "
        "errors='surrogateescape' (file names, os.listdir): decode the source with its real encoding"
    )


def _key_kind(key: str | int) -> str:
    return "an int64" if type(key) is int else "a string"


def _mixed_key_types(value: str | int, position: int, first: str | int, first_position: int) -> str:
    wanted = "int(...)" if type(first) is int else "str(...)"
    return (
        f"ids[{position}] = {preview(repr(value))} is {_key_kind(value)}, but the list started with "
        f"{_key_kind(first)} (ids[{first_position}] = {preview(repr(first))}): a collection has one "
        f"primary-key type and VikingDB refuses a request that mixes them. Make every id {_key_kind(first)} "
        f"(e.g. {wanted}) where the ids are produced"
    )


def normalize_ids(ids: object) -> CheckedIds:
    """Validate every id and drop repeats, keeping first-seen order.

    Accepts any iterable (list, tuple, set, generator, Airflow's lazy XCom
    sequence of a mapped task, a numpy array) or a single id. All ids must have
    the key type of the first (int64 or string). Raises ``InvalidIdsError`` on
    the first bad id: validation is complete before a single request is sent.
    The result's ``key_type`` says which type the ids have.
    """
    if isinstance(ids, CheckedIds):
        return ids
    if ids is None:
        raise InvalidIdsError(f"ids is None: nothing says what to delete. {_XCOM_HINT}")
    ids = parse_templated_ids(ids)
    if isinstance(ids, (str, numbers.Integral)):
        return CheckedIds([check_id(ids, 0)])
    if isinstance(ids, (Mapping, bytes, bytearray, memoryview)) or not isinstance(ids, Iterable):
        raise InvalidIdsError(
            f"ids must be a list of int64 or string primary keys, got {a_type(ids)}: {preview(repr(ids))}"
        )
    out = CheckedIds()
    numbered = enumerate(ids)
    for first_position, value in numbered:  # the first id sets the key type
        first = check_id(value, first_position)
        break
    else:
        return out
    seen = {first}
    out.append(first)
    add, append = seen.add, out.append
    # One loop per key type, with the common case inline: this runs once per id.
    if type(first) is str:
        position = first_position  # only the loop raises UnicodeEncodeError; bound for the handler's sake
        try:
            for position, value in numbered:
                # encode() is the cheapest complete test for a lone surrogate (it raises)
                if type(value) is not str or not value or not (value.isascii() or value.encode()):
                    value = check_id(value, position)
                    if type(value) is not str:
                        raise InvalidIdsError(_mixed_key_types(value, position, first, first_position))
                if value not in seen:
                    add(value)
                    append(value)
        except UnicodeEncodeError:
            check_id(value, position)  # raises, naming the id, its position and the surrogate
            raise
    else:
        for position, value in numbered:
            if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
                value = check_id(value, position)
                if type(value) is not int:
                    raise InvalidIdsError(_mixed_key_types(value, position, first, first_position))
            if value not in seen:
                add(value)
                append(value)
    return out


def batched(ids: Sequence[str | int], size: int) -> Iterator[Sequence[str | int]]:
    """Consecutive slices of at most ``size`` ids (slices of a list: no copy of the whole)."""
    check_batch_size(size)
    if isinstance(ids, list):
        for start in range(0, len(ids), size):
            yield ids[start : start + size]
        return
    it = iter(ids)
    while chunk := list(islice(it, size)):
        yield chunk


def check_batch_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
        raise InvalidIdsError(
            f"batch_size must be an integer from 1 to {MAX_BATCH_SIZE} (VikingDB accepts at most "
            f"{MAX_BATCH_SIZE} ids per request), got {size!r}"
        )
    return size


def preview(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
