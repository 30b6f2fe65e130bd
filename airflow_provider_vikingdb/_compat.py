"""Names that moved between Airflow 3.1 and 3.2+: import them from here, in one place."""

from __future__ import annotations

from typing import Any, NoReturn

from airflow.sdk import BaseHook

try:  # Airflow 3.2+
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowTaskTerminated,
        TaskDeferred,
        XComNotFound,
    )
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef, attr-defined]  # mypy runs on 3.2+
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowTaskTerminated,
        TaskDeferred,
        XComNotFound,
    )


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable``, as the official providers read it."""
    try:  # Airflow 3.2+
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow 3.1
        # Needed where both modules type `conf` (one is a redefinition); unused where the SDK's
        # module hands `conf` out through an untyped module __getattr__ (3.3): hence both codes.
        from airflow.configuration import conf  # type: ignore[no-redef, unused-ignore]
    # bool(): the SDK's `conf` is untyped (Any) on some versions; getboolean returns a bool.
    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))


def task_name(task: Any) -> str:
    """``VikingDBDeleteOperator 'delete'``: how every message names a task."""
    return f"{type(task).__name__} {task.task_id!r}"


def task_message(task: Any, message: str) -> str:
    """``VikingDBDeleteOperator 'delete': message``: a task's failure, naming the task."""
    return f"{task_name(task)}: {message}"


def fail_task(task: Any, message: str) -> NoReturn:
    """Fail ``task`` without retrying: bad input will be just as bad on a retry."""
    raise AirflowFailException(task_message(task, message))


def mask_secret(secret: str) -> None:
    """Register a secret with Airflow's masker (the task SDK's one, which task logs go through)."""
    from airflow.sdk.log import mask_secret as _mask

    _mask(secret)


__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowTaskTerminated",
    "BaseHook",
    "TaskDeferred",
    "XComNotFound",
    "default_deferrable",
    "fail_task",
    "mask_secret",
    "task_message",
]
