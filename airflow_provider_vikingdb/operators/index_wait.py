"""The delete operator's index wait: a look before the delete, then wait in the worker or defer.

A mixin of ``VikingDBDeleteOperator``; the rule of what proves a delete reached the index
lives in ``index_sync`` (shared with the sensor and the trigger), the trigger plumbing in
``waiting``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow_provider_vikingdb._compat import AirflowException, task_message
from airflow_provider_vikingdb.arguments import rendered_text
from airflow_provider_vikingdb.exceptions import VikingDBError, end_sentence
from airflow_provider_vikingdb.index_sync import (
    IndexSyncCheck,
    default_timeout,
    plan_check,
    wait_blocking,
    wait_summary,
)
from airflow_provider_vikingdb.target import Target
from airflow_provider_vikingdb.task_failure import fail_try, fail_wait_event
from airflow_provider_vikingdb.waiting import defer_wait, read_event

if TYPE_CHECKING:
    from abc import abstractmethod
    from typing import NoReturn

    from airflow.sdk import BaseOperator, Context

    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

    class DeleteOperatorHost(BaseOperator):
        """What the mixin uses of ``VikingDBDeleteOperator``, for mypy only.

        For mypy the mixin derives from this, so its methods see the operator's attributes with
        their types, and mypy checks that the operator matches. At run time the mixin derives
        from ``object``: the operator's MRO is unchanged.
        """

        wait_for_index: str | None
        deferrable: bool
        index_poke_interval: float
        index_timeout: float | None
        index_settle: float | None
        max_checked_ids: int
        vikingdb_conn_id: str

        @property
        @abstractmethod
        def hook(self) -> VikingDBHook: ...

        @abstractmethod
        def _checked_target(self) -> Target: ...

        @abstractmethod
        def _fail(self, message: str) -> NoReturn: ...

    _Base = DeleteOperatorHost
else:
    _Base = object

#: XCom key of the delete's summary, pushed before waiting for the index
DELETE_SUMMARY_KEY = "delete_summary"


class IndexWaitMixin(_Base):
    """``wait_for_index`` for ``VikingDBDeleteOperator``; ``self`` is the operator."""

    def _look_before(
        self, target: Target, index_name: str | None, ids: list[str | int] | None
    ) -> IndexSyncCheck | None:
        """Plan the index wait and look once before the delete: what the index holds now is seen.

        Seen now and absent later proves the delete reached the index; absent on every look
        proves it only after the settle time. A wrong index name fails here, before deleting.
        """
        if index_name is None:
            return None
        check, plan = plan_check(target, index_name, ids, self.max_checked_ids, settle=self.index_settle)
        self._wait_plan = plan
        try:
            check.look(self.hook.request, before=True)
        except VikingDBError as exc:
            if not exc.retryable:
                fail_try(
                    self,
                    f"cannot read index {index_name!r} (wait_for_index): {end_sentence(str(exc))} "
                    "Nothing was deleted.",
                    exc,
                )
            self.log.warning(
                "Could not look at index %r before deleting (%s); waiting anyway.", index_name, exc
            )
        return check

    def _then_wait(
        self,
        context: Context,
        check: IndexSyncCheck | None,
        summary: dict[str, Any],
        *,
        deleted_at: float | None = None,
    ) -> dict[str, Any]:
        """Return ``summary`` once the index reflects the delete; no ``check``: no wait."""
        started_at = time.time()
        index_name = self._index_to_wait_for()
        if index_name is None:
            return summary
        if check is None:
            self.log.info("Nothing was deleted: no need to wait for index %r.", index_name)
            empty = IndexSyncCheck(self._checked_target(), index_name, [])
            return {
                **summary,
                **wait_summary(empty, index_name=index_name, total_ids=0, started_at=started_at),
            }
        check.deleted_at = deleted_at if deleted_at is not None else started_at
        total = 0 if check.del_all else summary.get("ids_requested", 0)
        # The delete is done whatever happens to the wait: keep its summary where a failed wait can't lose it.
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=DELETE_SUMMARY_KEY, value=summary)
        timeout = self.index_timeout if self.index_timeout is not None else default_timeout(check.del_all)
        deadline = started_at + timeout
        self.log.info("%s; settle %gs, timeout %gs.", getattr(self, "_wait_plan", ""), check.settle, timeout)

        if self.deferrable:
            defer_wait(
                self,
                check,
                vikingdb_conn_id=self.vikingdb_conn_id,
                deadline=deadline,
                poke_interval=self.index_poke_interval,
                started_at=started_at,
                total_ids=total,
            )

        try:
            synced = wait_blocking(
                check,
                self.hook.request,
                deadline=deadline,
                poke_interval=self.index_poke_interval,
                log=self.log,
            )
        except VikingDBError as exc:  # permanent (a wrong index name, the credentials), or interrupted
            fail_try(
                self,
                f"waiting for index {index_name!r} failed: {end_sentence(str(exc))} {_delete_done(summary)}",
                exc,
            )
        if not synced:
            raise IndexNotSyncedError(
                task_message(
                    self,
                    f"timed out after {time.time() - started_at:.1f}s: "
                    f"{check.pending_text()}. {_delete_done(summary)}",
                )
            )
        return {
            **summary,
            **wait_summary(check, index_name=index_name, total_ids=total, started_at=started_at),
        }

    def _index_to_wait_for(self) -> str | None:
        if self.wait_for_index is None:
            return None
        index_name = rendered_text(self.wait_for_index)
        if not index_name:
            # Checked before deleting: a wait that cannot happen must not follow a delete.
            self._fail(f"wait_for_index rendered to {self.wait_for_index!r}: give the index name, or None")
        return index_name

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: the delete's summary plus the wait's, or fail with its message."""
        ti = context.get("ti")
        summary = (
            ti.xcom_pull(task_ids=self.task_id, key=DELETE_SUMMARY_KEY, map_indexes=ti.map_index)
            if ti is not None
            else None
        )
        outcome = read_event(event)
        if outcome.status == "timeout":
            raise IndexNotSyncedError(task_message(self, f"{outcome.message}. {_delete_done(summary)}"))
        if outcome.status != "success":
            fail_wait_event(
                self,
                f"waiting for index {outcome.event.get('index_name')!r} failed: {outcome.message}. "
                f"{_delete_done(summary)}",
                outcome.event,
            )
        self.log.info("%s.", outcome.message)
        return {**(summary or {}), **outcome.summary}


class IndexNotSyncedError(AirflowException):
    """The index still held deleted records when ``index_timeout`` ran out (the delete itself was done)."""


def _delete_done(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "The delete itself succeeded."
    if summary.get("del_all"):
        return f"The delete itself succeeded (del_all on {summary.get('target')}); only the index lags."
    deleted, target = summary.get("ids_deleted"), summary.get("target")
    return f"The delete itself succeeded ({deleted} ids deleted from {target}); only the index lags."
