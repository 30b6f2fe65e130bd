"""VikingDBIndexSyncSensor: wait until a VikingDB index reflects a delete.

A delete reaches the collection at once and its indexes later (about 20 s; about
5 minutes after ``del_all``): searches keep returning deleted records until then.
Put this sensor between a delete and whatever must not see them any more.

Imported by DAG files at parse time: no HTTP client, no signer at module top level.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseSensorOperator

from airflow_provider_vikingdb._compat import (
    AirflowSensorTimeout,
    default_deferrable,
    fail_task,
    task_message,
)
from airflow_provider_vikingdb.arguments import (
    check_ids_args,
    check_target_args,
    jinja_dependency_warning,
    parse_del_all,
    rendered_target,
    rendered_text,
)
from airflow_provider_vikingdb.connection import DEFAULT_CONN_ID
from airflow_provider_vikingdb.exceptions import VikingDBError
from airflow_provider_vikingdb.ids import InvalidIdsError, normalize_ids
from airflow_provider_vikingdb.index_sync import (
    AFTER_SENSOR_START,
    DEFAULT_MAX_CHECKED_IDS,
    DEFAULT_POKE_INTERVAL,
    IndexSyncCheck,
    check_max_checked_ids,
    check_seconds,
    default_timeout,
    look_once,
    plan_check,
    wait_summary,
)
from airflow_provider_vikingdb.task_failure import fail_try, fail_wait_event
from airflow_provider_vikingdb.waiting import defer_wait, read_event

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook


class VikingDBIndexSyncSensor(BaseSensorOperator):
    """Wait until an index no longer holds deleted ids, or is empty after ``del_all``.

    :param collection_name: the collection (templated). Give this or ``resource_id``.
    :param resource_id: the collection's resource id (templated), instead of its name.
    :param index_name: the index to watch (templated).
    :param ids: the deleted ids (templated), taken like ``VikingDBDeleteOperator`` takes them:
        a list or an XComArg; a Jinja string rendering to the text of a list is parsed back,
        one rendering to ``"None"`` fails the task. Done when ``fetch_in_index`` finds none.
    :param del_all: wait for emptiness after ``del_all`` instead (templated; a bool or
        "true"/"false"): done when a random search of the index returns nothing.
        Give exactly one of ``ids`` and ``del_all=True``.
    :param max_checked_ids: at most this many ids are checked per look (default 1000, i.e. 10
        requests of 100); a larger id set is checked through a random sample of exactly this
        size, and the log says so.
    :param poke_interval: seconds between looks (default 5).
    :param timeout: seconds before giving up (default 10 minutes for ids, 15 for ``del_all``,
        whose lag is about 5 minutes). The task then fails with how many checked ids were
        still in the index (for ``del_all``: that the index still returned records).
    :param deferrable: wait in the triggerer (``VikingDBIndexSyncTrigger``), holding no worker slot.
    :param vikingdb_conn_id: the Airflow connection of type ``vikingdb``.

    Returns (to XCom): ``target``, ``index_name``, ``del_all``, ``index_synced``,
    ``index_checked_ids``, ``index_total_ids``, ``index_sampled``, ``index_looks`` and
    ``index_wait_seconds``. Throttling, 5xx answers and network errors while looking are
    logged and looked again; other errors (401/403/404/400) fail the task.
    """

    template_fields: Sequence[str] = ("collection_name", "resource_id", "index_name", "ids", "del_all")
    ui_color = "#e8f1ff"

    def __init__(
        self,
        *,
        index_name: str,
        collection_name: str | None = None,
        resource_id: str | None = None,
        ids: Any = None,
        del_all: bool | str = False,
        vikingdb_conn_id: str = DEFAULT_CONN_ID,
        max_checked_ids: int = DEFAULT_MAX_CHECKED_IDS,
        deferrable: bool | None = None,
        settle: timedelta | float | None = None,
        poke_interval: timedelta | float = DEFAULT_POKE_INTERVAL,
        timeout: timedelta | float | None = None,
        **kwargs: Any,
    ) -> None:
        name = f"{type(self).__name__} {kwargs.get('task_id')!r}"
        # A templated del_all is only known at run time: execute() settles the default then.
        self._default_timeout = timeout is None
        if timeout is None:
            timeout = default_timeout(del_all is True)
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        check_target_args(name, collection_name, resource_id)
        if not index_name:
            raise ValueError(f"{name}: give index_name, the index to watch")
        check_ids_args(name, ids, del_all, "give the deleted ids (e.g. ids=upstream.output) or del_all=True")
        try:
            check_max_checked_ids(max_checked_ids)
            if settle is not None:
                settle = check_seconds("settle", settle)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        self.collection_name = collection_name
        self.resource_id = resource_id
        self.index_name = index_name
        self.ids = ids
        # the text before rendering: to warn when it pulls XCom from a task that is not upstream
        self._ids_template = ids if isinstance(ids, str) else None
        self.del_all = del_all
        self.vikingdb_conn_id = vikingdb_conn_id
        self.max_checked_ids = max_checked_ids
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.settle = settle
        self._check: IndexSyncCheck | None = None
        self._total_ids = 0
        self._started_at = time.time()

    # ---- what to wait for (known only once the templates are rendered) ----

    def _prepare(self) -> IndexSyncCheck:
        try:
            target = rendered_target(self.collection_name, self.resource_id)
        except ValueError as exc:
            self._fail(str(exc))
        index_name = rendered_text(self.index_name)
        if not index_name:
            self._fail(f"index_name rendered to {self.index_name!r}: give the index to watch")
        try:
            del_all = parse_del_all(self.del_all)
        except ValueError as exc:
            self._fail(str(exc))
        if self._default_timeout:
            self.timeout = default_timeout(del_all)
        ids: list[str | int] | None = None  # None: after del_all, wait for an empty index
        if del_all:
            if self.ids is not None:
                self._fail("give ids or del_all=True, not both (they delete different things)")
        else:
            if warning := jinja_dependency_warning(self._ids_template, self.upstream_task_ids):
                self.log.warning(warning)
            try:
                ids = normalize_ids(self.ids)
            except InvalidIdsError as exc:
                self._fail(f"ids: {exc}")
            self._total_ids = len(ids)
        check, plan = plan_check(
            target,
            index_name,
            ids,
            self.max_checked_ids,
            settle=self.settle,
            deleted_at=self._started_at,
            since=AFTER_SENSOR_START,
        )
        self.log.info("%s; timeout %gs.", plan, self.timeout)
        return check

    # ---- running ----

    def execute(self, context: Context) -> dict[str, Any]:
        # The delete happened before this sensor started: a look settle seconds after the
        # sensor's (first) start is at least that long after the delete.
        self._started_at = time.time()
        if self.reschedule and context.get("ti") is not None:
            first = context["ti"].get_first_reschedule_date(context)
            if first is not None:
                self._started_at = first.timestamp()
        check = self._check = self._prepare()
        if not check.del_all and check.checked == 0:
            self.log.info("No ids given: nothing to wait for.")
            return self._summary(check)
        if self.deferrable:
            if self.poke(context):
                return self._summary(check)
            self._defer(check)
        try:
            super().execute(context)
        except AirflowSensorTimeout as exc:
            raise AirflowSensorTimeout(f"{exc} {check.pending_text()}.") from None
        return self._summary(check)

    def poke(self, context: Context) -> bool:
        check = self._check or self._prepare()
        self._check = check
        try:  # transient errors: logged, and looked at again
            return look_once(
                check, self.hook.request, self.log, deadline=self._started_at + float(self.timeout)
            )
        except VikingDBError as exc:  # a wrong index name, the credentials, ...: fails at once
            fail_try(self, f"cannot read index {check.index_name!r}: {exc}", exc)

    @cached_property
    def hook(self) -> VikingDBHook:
        """One hook (one session) for every poke of the task."""
        from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

        return VikingDBHook(self.vikingdb_conn_id)

    def get_hook(self) -> VikingDBHook:
        return self.hook

    def _defer(self, check: IndexSyncCheck) -> None:
        defer_wait(
            self,
            check,
            vikingdb_conn_id=self.vikingdb_conn_id,
            deadline=self._started_at + self.timeout,
            poke_interval=self.poke_interval,
            started_at=self._started_at,
            total_ids=self._total_ids,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        outcome = read_event(event)
        if outcome.status == "success":
            self.log.info("%s.", outcome.message)
            return {
                "target": outcome.event.get("target"),
                "del_all": bool(outcome.event.get("del_all")),
                "index_total_ids": outcome.event.get("total_ids", 0),
                **outcome.summary,
            }
        if outcome.status == "timeout":
            raise AirflowSensorTimeout(task_message(self, f"{outcome.message}."))
        fail_wait_event(self, f"waiting for the index failed: {outcome.message}", outcome.event)

    # ---- helpers ----

    def _summary(self, check: IndexSyncCheck) -> dict[str, Any]:
        return {
            "target": str(check.target),
            "del_all": check.del_all,
            "index_total_ids": self._total_ids,
            **wait_summary(
                check, index_name=check.index_name, total_ids=self._total_ids, started_at=self._started_at
            ),
        }

    def _fail(self, message: str) -> NoReturn:
        fail_task(self, message)
