"""VikingDBDeleteOperator: delete records from a VikingDB collection as a DAG step.

Imported by DAG files at parse time: only ``airflow.sdk`` and our pure modules
at top level; the hook (and through it ``requests``/``volcengine``) is imported
when the task runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_vikingdb.connection_fields import DEFAULT_CONN_ID
from airflow_provider_vikingdb.hooks.vikingdb import DEFAULT_MAX_CONCURRENCY, VikingDBHook, describe_target
from airflow_provider_vikingdb.ids import InvalidIdsError, check_batch_size, normalize_ids

if TYPE_CHECKING:
    from airflow.sdk import Context


class VikingDBDeleteOperator(BaseOperator):
    """Delete records from a VikingDB collection by primary key, or all of them.

    :param collection_name: the collection (templated). Give this or ``resource_id``.
    :param resource_id: the collection's resource id (templated), instead of its name.
    :param ids: primary keys to delete (templated): a list, tuple, set or generator of int64 or
        non-empty strings, or an XComArg such as ``upstream.output``. A Jinja string that renders
        to the text of a list is parsed back into the list; one that renders to ``"None"`` or
        ``""`` fails the task. Repeats are dropped.
    :param del_all: delete every record of the collection (templated; a bool or "true"/"false").
    :param batch_size: ids per request, 1..100 (VikingDB's limit is 100).
    :param max_concurrency: requests in flight at once (default: the hook's, 8).
    :param rows_per_second: optional fixed cap; without it the hook adapts to the quota by itself.
    :param vikingdb_conn_id: the Airflow connection of type ``vikingdb``.

    Returns (to XCom) a summary: ``ids_requested``, ``ids_deleted``, ``batches``, ``del_all``,
    ``throttled``, ``retries``, ``target`` and ``last_request_id``.

    If a batch fails for good, nothing more is sent and the task fails with the
    service's code, message and request_id, how many ids were deleted in how
    many batches, and which batch failed. Deletes are idempotent: a task retry
    simply sends them again.
    """

    template_fields: Sequence[str] = ("collection_name", "resource_id", "ids", "del_all")
    ui_color = "#e8f1ff"

    def __init__(
        self,
        *,
        collection_name: str | None = None,
        resource_id: str | None = None,
        ids: Any = None,
        del_all: bool | str = False,
        batch_size: int = 100,
        max_concurrency: int | None = None,
        rows_per_second: float | None = None,
        vikingdb_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # What can be known at parse time fails the DAG import, not a run at 3 a.m.
        try:
            check_batch_size(batch_size)
        except InvalidIdsError as exc:
            raise ValueError(f"{type(self).__name__} {self.task_id!r}: {exc}") from None
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise ValueError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
        if collection_name is not None and resource_id is not None:
            raise ValueError(
                f"{type(self).__name__} {self.task_id!r}: give collection_name or resource_id, not both"
            )
        if collection_name is None and resource_id is None:
            raise ValueError(
                f"{type(self).__name__} {self.task_id!r}: give collection_name (or resource_id) "
                "of the collection to delete from"
            )
        if del_all is True and ids is not None:
            raise ValueError(
                f"{type(self).__name__} {self.task_id!r}: ids and del_all=True delete different "
                "things; give one of them"
            )
        if del_all is False and ids is None:
            raise ValueError(
                f"{type(self).__name__} {self.task_id!r}: nothing to delete: give ids "
                "(e.g. ids=upstream_task.output) or del_all=True"
            )
        self.collection_name = collection_name
        self.resource_id = resource_id
        self.ids = ids
        self.del_all = del_all
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.rows_per_second = rows_per_second
        self.vikingdb_conn_id = vikingdb_conn_id

    def get_hook(self) -> VikingDBHook:
        return VikingDBHook(
            self.vikingdb_conn_id,
            max_concurrency=self.max_concurrency or DEFAULT_MAX_CONCURRENCY,
            rows_per_second=self.rows_per_second,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        target = self._checked_target()
        try:
            del_all = parse_del_all(self.del_all)
        except ValueError as exc:
            self._fail(str(exc))
        hook = self.get_hook()
        if del_all:
            if self.ids is not None:
                self._fail("ids and del_all=True delete different things; give one of them")
            self.log.warning("del_all=True: deleting EVERY record of %s", describe_target(target))
            result = hook.delete(del_all=True, **target)
            return self._summary(result.to_dict())

        try:
            ids = normalize_ids(self.ids)
        except InvalidIdsError as exc:
            self._fail(f"ids: {exc}. Nothing was sent.")
        if not ids:
            self.log.info("No ids to delete from %s: nothing sent.", describe_target(target))
            return self._summary({"target": describe_target(target), "ids_requested": 0, "ids_deleted": 0})

        self.log.info(
            "Deleting %d distinct ids from %s in batches of at most %d",
            len(ids),
            describe_target(target),
            self.batch_size,
        )
        result = hook.delete(ids, batch_size=self.batch_size, max_concurrency=self.max_concurrency, **target)
        self.log.info(
            "Deleted %d ids from %s in %d batches (%d throttled, %d retries).",
            result.ids_deleted,
            result.target,
            result.batches,
            result.throttled,
            result.retries,
        )
        return self._summary(result.to_dict())

    def _checked_target(self) -> dict[str, str]:
        name = _rendered_text(self.collection_name)
        rid = _rendered_text(self.resource_id)
        if bool(name) == bool(rid):
            self._fail(
                "give exactly one of collection_name or resource_id "
                f"(rendered: collection_name={self.collection_name!r}, resource_id={self.resource_id!r})"
            )
        return {"collection_name": name} if name else {"resource_id": rid}

    def _summary(self, data: dict[str, Any]) -> dict[str, Any]:
        summary = {
            "target": data.get("target"),
            "ids_requested": data.get("ids_requested", 0),
            "ids_deleted": data.get("ids_deleted", 0),
            "batches": data.get("batches", 0),
            "del_all": bool(data.get("del_all", False)),
            "throttled": data.get("throttled", 0),
            "retries": data.get("retries", 0),
            "last_request_id": data.get("last_request_id"),
        }
        return summary

    def _fail(self, message: str):
        try:
            from airflow.sdk.exceptions import AirflowFailException
        except ImportError:  # Airflow 3.0
            from airflow.exceptions import AirflowFailException
        # Bad input will be just as bad on a retry: fail without retrying.
        raise AirflowFailException(f"{type(self).__name__} {self.task_id!r}: {message}")


def parse_del_all(value: Any) -> bool:
    """A real bool, or the text true/false in any case (a templated flag renders to text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"del_all must be True/False or the text 'true'/'false', got {value!r}")


def _rendered_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ("", "None") else text
