"""Turn whatever a DAG hands us into a clean list of VikingDB primary keys.

Pure functions, no I/O and no heavy imports: the operator calls them at run
time and the hook calls them before anything is sent. VikingDB keys are int64
or non-empty strings; anything else is refused with the first bad id and its
position, so nothing is half-sent.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_BATCH_SIZE = 100

_XCOM_HINT = (
    "Pass the upstream task's output as an XComArg (ids=upstream_task.output or "
    "ids=upstream_fn()) instead of a Jinja string: it passes the real list and sets the dependency."
)


class InvalidIdsError(ValueError):
    """The ids argument cannot be turned into a list of VikingDB primary keys."""


class CheckedIds(list):
    """What ``normalize_ids`` returns: valid, distinct keys. Normalizing it again is free.

    The operator checks ids before calling the hook, and the hook checks whatever it is
    given; for a million ids a second pass would cost another de-duplication set.
    """


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
        for parse in (json.loads, ast.literal_eval):
            try:
                return parse(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
        raise InvalidIdsError(
            f"ids is a string that looks like a list but is neither JSON nor a Python literal: "
            f"{_preview(text)}. {_XCOM_HINT}"
        )
    return value


def check_id(value: object, position: int) -> str | int:
    """Return ``value`` if it is a valid primary key, else raise naming it and its position."""
    # bool is an int subclass: True would be sent as 1. Refuse it explicitly.
    if isinstance(value, bool):
        raise InvalidIdsError(
            f"ids[{position}] is a bool ({value!r}): ids must be int64 or non-empty strings"
        )
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidIdsError(f"ids[{position}] = {value} is outside the int64 range")
        return value
    if isinstance(value, str):
        if not value:
            raise InvalidIdsError(f"ids[{position}] is an empty string: primary keys must be non-empty")
        return value
    raise InvalidIdsError(
        f"ids[{position}] = {_preview(repr(value))} is a {type(value).__name__}: "
        "ids must be int64 or non-empty strings"
    )


def normalize_ids(ids: object) -> CheckedIds:
    """Validate every id and drop repeats, keeping first-seen order.

    Accepts any iterable (list, tuple, set, generator, Airflow's lazy XCom
    sequence of a mapped task) or a single id. Raises ``InvalidIdsError`` on
    the first bad id: validation is complete before a single request is sent.
    """
    if isinstance(ids, CheckedIds):
        return ids
    if ids is None:
        raise InvalidIdsError(f"ids is None: nothing says what to delete. {_XCOM_HINT}")
    ids = parse_templated_ids(ids)
    if isinstance(ids, (str, int)):
        return CheckedIds([check_id(ids, 0)])
    if isinstance(ids, (dict, bytes)) or not isinstance(ids, Iterable):
        raise InvalidIdsError(
            f"ids must be a list of int64 or string primary keys, got a {type(ids).__name__}: "
            f"{_preview(repr(ids))}"
        )
    seen: set[str | int] = set()
    out = CheckedIds()
    for position, value in enumerate(ids):
        key = check_id(value, position)
        if key not in seen:
            seen.add(key)
            out.append(key)
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


def _preview(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
