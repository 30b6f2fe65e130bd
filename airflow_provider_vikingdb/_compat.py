"""Names that moved between Airflow 3.0 and 3.1+: import them from here, in one place."""

from __future__ import annotations

try:  # Airflow 3.1+
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 3.0
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]


def fail_exception() -> type[Exception]:
    """AirflowFailException: fail the task without retrying (imported when a task fails)."""
    try:
        from airflow.sdk.exceptions import AirflowFailException
    except ImportError:  # Airflow 3.0
        from airflow.exceptions import AirflowFailException
    return AirflowFailException


def mask_secret(secret: str) -> None:
    """Register a secret with Airflow's masker (the task SDK's one, which task logs go through)."""
    try:
        from airflow.sdk.log import mask_secret as _mask
    except ImportError:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import mask_secret as _mask
    _mask(secret)


__all__ = ["BaseHook", "fail_exception", "mask_secret"]
