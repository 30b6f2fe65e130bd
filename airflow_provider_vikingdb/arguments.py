"""Arguments the operators, the index-sync sensor and the hook share, checked the same way.

Pure and cheap to import (DAG files import it). At parse time only what is
literally known is checked; templated values are checked once rendered, before
anything is sent.
"""

from __future__ import annotations

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


_XCOM_PULL = re.compile(r"xcom_pull\(\s*(?:task_ids\s*=\s*)?['\"]([^'\"]+)['\"]")


def jinja_dependency_warning(template: Any, upstream_task_ids: Iterable[str]) -> str | None:
    """A warning when a Jinja ``ids`` pulls XCom from a task that is not upstream.

    Jinja creates no dependency: the task may run before the one it pulls from, and then
    ``ids`` renders to "None". It may also work by luck of ordering, which is worse.
    """
    if not isinstance(template, str):
        return None
    upstream = set(upstream_task_ids)
    missing = [task_id for task_id in _XCOM_PULL.findall(template) if task_id not in upstream]
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
