"""VikingDBIndexSyncTrigger: wait in the triggerer until an index reflects a delete.

The deferrable sensor and ``VikingDBDeleteOperator(wait_for_index=..., deferrable=True)``
hand their wait to this trigger, so no worker slot is held while the index
catches up. It has no transport of its own: it reads the connection by its id
(its kwargs hold no secret) and sends through ``VikingDBHook.arequest``, with the
same signing, TLS, timeouts, error classification and retries as the worker.

Module top level imports no HTTP client: the operator imports this module only
when it defers, but DAG files may import it too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_vikingdb.connection import DEFAULT_CONN_ID
from airflow_provider_vikingdb.exceptions import VikingDBError
from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook
from airflow_provider_vikingdb.index_sync import (
    AFTER_DELETE,
    DEFAULT_POKE_INTERVAL,
    SHOWN,
    IndexSyncCheck,
    default_settle,
)
from airflow_provider_vikingdb.target import Target


class VikingDBIndexSyncTrigger(BaseTrigger):
    """Poll an index until the checked ids are gone from it (or, with ``ids=None``, until it is empty).

    :param vikingdb_conn_id: the Airflow connection; the trigger reads it itself.
    :param target: ``{"collection_name": ...}`` or ``{"resource_id": ...}``.
    :param index_name: the index to watch.
    :param ids: the ids to check (already sampled by the caller), or None after ``del_all``.
    :param deleted_at: Unix time the delete was acknowledged (the settle time counts from it).
    :param since: what ``deleted_at`` is, for messages: ``"the delete"``, or ``"the sensor
        started"`` (a sensor does not know when the delete was, so it counts from its start).
    :param settle: seconds the index may take to apply the delete: an id absent from the index
        proves nothing before then unless it was seen in it (see ``IndexSyncCheck``).
    :param seen: ids already seen in the index (by the look made before the delete).
    :param seen_records: after ``del_all``: the index returned records before the delete.
    :param deadline: when to give up, as a Unix timestamp (the trigger may run on another machine).
    :param poke_interval: seconds between looks.
    :param started_at: Unix timestamp the wait started at (the wait time in the event counts from it).
    :param total_ids: how many ids were deleted, when ``ids`` is a sample of them.

    Yields one ``TriggerEvent`` with ``status`` ``success``, ``timeout`` or ``error``, a
    ``message``, and counts: ``checked``, ``still_indexed``, ``looks``, ``waited_seconds``.
    Throttling, 5xx answers and network errors are logged and polled again; any other
    error (401/403/404/400) ends the wait with ``status="error"``.
    """

    def __init__(
        self,
        *,
        vikingdb_conn_id: str = DEFAULT_CONN_ID,
        target: Mapping[str, str],
        index_name: str,
        ids: Sequence[str | int] | None,
        deadline: float,
        deleted_at: float | None = None,
        since: str = AFTER_DELETE,
        settle: float | None = None,
        seen: Sequence[str] = (),
        seen_records: bool = False,
        poke_interval: float = DEFAULT_POKE_INTERVAL,
        started_at: float | None = None,
        total_ids: int | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger.__init__ has no annotations
        self.vikingdb_conn_id = vikingdb_conn_id
        self.target = dict(target)
        self.index_name = index_name
        self.ids = None if ids is None else list(ids)
        self.deadline = float(deadline)
        self.deleted_at = float(deleted_at) if deleted_at is not None else time.time()
        self.since = since
        self.settle = float(settle) if settle is not None else default_settle(ids is None)
        self.seen = [str(i) for i in seen]
        self.seen_records = bool(seen_records)
        self.poke_interval = float(poke_interval)
        self.started_at = float(started_at if started_at is not None else time.time())
        self.total_ids = total_ids if total_ids is not None else len(self.ids or [])

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # Only what says where and what to wait for: the credentials stay in the connection.
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "vikingdb_conn_id": self.vikingdb_conn_id,
                "target": self.target,
                "index_name": self.index_name,
                "ids": self.ids,
                "deadline": self.deadline,
                "deleted_at": self.deleted_at,
                "since": self.since,
                "settle": self.settle,
                "seen": self.seen,
                "seen_records": self.seen_records,
                "poke_interval": self.poke_interval,
                "started_at": self.started_at,
                "total_ids": self.total_ids,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        check = IndexSyncCheck(
            self.target,
            self.index_name,
            self.ids,
            deleted_at=self.deleted_at,
            since=self.since,
            settle=self.settle,
            seen=self.seen,
            seen_records=self.seen_records,
        )
        async with VikingDBHook(self.vikingdb_conn_id) as hook:
            try:
                # Through Airflow's async connection API: a thread that asks the triggerer's
                # supervisor for it kills the trigger runner on Airflow 3.1 (see aconfig).
                await hook.aconfig()
            except Exception as exc:
                message = f"cannot use connection {self.vikingdb_conn_id!r}: {exc}"
                yield self._event("error", check, message)
                return
            self.log.info("%s: checking %s", check.start_text(), self._scope(check))
            while True:
                try:
                    await check.alook(hook.arequest)
                except VikingDBError as exc:
                    if not exc.retryable:
                        yield self._event("error", check, str(exc), error=exc)
                        return
                    self.log.warning("Index check failed for now, polling again: %s", exc)
                else:
                    if check.synced:
                        yield self._event("success", check, check.done_text())
                        return
                left = self.deadline - time.time()
                if left <= 0:
                    waited = time.time() - self.started_at
                    message = f"timed out after {waited:.1f}s: {check.pending_text()}"
                    self.log.warning("%s", message)
                    yield self._event("timeout", check, message)
                    return
                self.log.info("%s; polling again in %gs", check.pending_text(), min(self.poke_interval, left))
                await asyncio.sleep(min(self.poke_interval, left))

    def _scope(self, check: IndexSyncCheck) -> str:
        if check.del_all:
            return "whether a random search still returns records"
        if check.checked < self.total_ids:
            return f"a random sample of {check.checked} of the {self.total_ids} deleted ids"
        return f"all {check.checked} deleted ids"

    def _event(
        self, status: str, check: IndexSyncCheck, message: str, error: VikingDBError | None = None
    ) -> TriggerEvent:
        pending = check.last_records if check.del_all else check.remaining
        payload: dict[str, Any] = {
            "status": status,
            "message": message,
            "target": str(Target.from_body(self.target)),
            "index_name": self.index_name,
            "del_all": check.del_all,
            "checked": check.checked,
            "total_ids": self.total_ids,
            "still_indexed": check.still_indexed,
            "first_still_indexed": list(pending or [])[:SHOWN],
            "looks": check.looks,
            "proof": check.proof,
            "waited_seconds": round(time.time() - self.started_at, 3),
            "code": error.code if error else None,
            "http_status": error.http_status if error else None,
            "request_id": error.request_id if error else None,
        }
        return TriggerEvent(payload)  # type: ignore[no-untyped-call]  # Airflow's TriggerEvent has no annotations
