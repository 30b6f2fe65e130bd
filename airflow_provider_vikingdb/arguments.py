"""Arguments the operators, the index-sync sensor and the hook share, checked the same way.

Pure and cheap to import (DAG files import it). At parse time only what is
literally known is checked; templated values are checked once rendered, before
anything is sent.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

TARGET_RULE = "give exactly one of collection_name or resource_id"


def check_target_args(owner: str, collection_name: Any, resource_id: Any) -> None:
    """Parse time: exactly one of the two was given."""
    if (collection_name is None) == (resource_id is None):
        raise ValueError(f"{owner}: {TARGET_RULE}")


def check_ids_args(owner: str, ids: Any, del_all: Any, missing: str) -> None:
    """Parse time: ``ids`` or a literal ``del_all=True``, not both and not neither."""
    if del_all is True and ids is not None:
        raise ValueError(f"{owner}: give ids or del_all=True, not both (they delete different things)")
    if del_all is False and ids is None:
        raise ValueError(f"{owner}: {missing}")


def rendered_target(collection_name: Any, resource_id: Any) -> dict[str, str]:
    """Run time: the rendered target as the request body names it; ValueError unless exactly one."""
    name, rid = rendered_text(collection_name), rendered_text(resource_id)
    if name is not None and rid is None:
        return {"collection_name": name}
    if rid is not None and name is None:
        return {"resource_id": rid}
    raise ValueError(
        f"{TARGET_RULE} (rendered: collection_name={collection_name!r}, resource_id={resource_id!r})"
    )


def parse_flag(name: str, value: Any) -> bool:
    """A real bool, or the text true/false in any case (a templated flag renders to text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{name} must be True/False or the text 'true'/'false', got {value!r}")


def parse_del_all(value: Any) -> bool:
    return parse_flag("del_all", value)


def check_max_delete(value: Any) -> int | None:
    """``max_delete``: None (no cap) or a whole number of records >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"max_delete must be None (no cap) or a whole number >= 0, got {value!r}")
    return value


def check_positive_int(name: str, value: object) -> int:
    """A whole number >= 1 (a bool is not one), e.g. ``max_concurrency``; ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_rows_per_second(value: object) -> float | None:
    """``rows_per_second``: None (no fixed cap) or a number > 0 (a bool is not one)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"rows_per_second must be > 0 or None, got {value!r}")
    return value


def rendered_text(value: Any) -> str | None:
    """A rendered template as text; None for nothing, "" or the text "None"."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ("", "None") else text


_XCOM_PULL = re.compile(r"\bxcom_pull\s*\(")


def _call_arguments(text: str, start: int) -> str | None:
    """The text between the parenthesis just before ``start`` and its match (quotes and nested
    brackets respected); None if it is not closed."""
    closing, quote, i = [")"], "", start
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            closing.append(")]}"["([{".index(char)])
        elif char in ")]}":
            if char != closing.pop():
                return None
            if not closing:
                return text[start:i]
        i += 1
    return None


def pulled_task_ids(template: str) -> list[str]:
    """The task ids a Jinja template's ``xcom_pull`` calls name as literals: ``task_ids`` given
    first or by name, a string or a list of strings. Calls with a ``dag_id`` (another DAG's
    XCom, never upstream) or a ``task_ids`` that is not a literal are left out."""
    found: list[str] = []
    for match in _XCOM_PULL.finditer(template):
        arguments = _call_arguments(template, match.end())
        try:
            call = ast.parse(f"f({arguments})", mode="eval").body if arguments is not None else None
        except SyntaxError:  # Jinja that is not Python (filters, tests): nothing to read
            continue
        if not isinstance(call, ast.Call) or any(k.arg == "dag_id" for k in call.keywords):
            continue
        named = [k.value for k in call.keywords if k.arg == "task_ids"]
        node = named[0] if named else call.args[0] if call.args else None
        try:
            value = ast.literal_eval(node) if node is not None else None
        except ValueError:
            continue
        values = [value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
        found.extend(v for v in values if isinstance(v, str))
    return found


def jinja_dependency_warning(template: Any, upstream_task_ids: Iterable[str]) -> str | None:
    """A warning when a Jinja ``ids`` pulls XCom from a task that is not upstream.

    Jinja creates no dependency: the task may run before the one it pulls from, and then
    ``ids`` renders to "None". It may also work by luck of ordering, which is worse.
    """
    if not isinstance(template, str):
        return None
    upstream = set(upstream_task_ids)
    missing = [task_id for task_id in dict.fromkeys(pulled_task_ids(template)) if task_id not in upstream]
    if not missing:
        return None
    names = ", ".join(repr(t) for t in missing)
    return (
        f"ids pulls XCom from {names}, which is not upstream of this task: nothing makes it run "
        "first, and ids renders to 'None' when it has not. Pass that task's output instead "
        "(ids=upstream_task.output, or the result of calling the @task): an XComArg passes the "
        "real list and sets the dependency."
    )


def timedelta_microseconds(value: timedelta) -> int:
    """A timedelta in whole microseconds, exactly, also for subclasses (Airflow hands out pendulum
    Durations, which refuse to be divided by a stdlib timedelta)."""
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
