"""The wait plumbing the delete operator and the index-sync sensor share.

One place builds the trigger a task defers to, and one place reads the event it
comes back with. The trigger module (and through it Airflow's trigger machinery)
is imported only when a task defers: DAG files import this module at parse time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

from airflow_provider_vikingdb.index_sync import IndexSyncCheck, wait_summary


def trigger_timeout(deadline: float, poke_interval: float) -> timedelta:
    """Airflow's own deferral timeout: only a backstop, past the trigger's deadline.

    The trigger gives up at ``deadline`` itself, with a message saying what was still
    indexed; Airflow's timeout would only say that the deferral timed out.
    """
    return timedelta(seconds=max(deadline - time.time(), 0) + 2 * poke_interval + 60)


def defer_wait(
    task: Any,
    check: IndexSyncCheck,
    *,
    vikingdb_conn_id: str,
    deadline: float,
    poke_interval: float,
    started_at: float,
    total_ids: int,
) -> NoReturn:
    """Hand ``check`` to the triggerer; the task resumes in its ``execute_complete``."""
    from airflow_provider_vikingdb.triggers.vikingdb import VikingDBIndexSyncTrigger

    trigger = VikingDBIndexSyncTrigger(
        vikingdb_conn_id=vikingdb_conn_id,
        target={check.target.key: check.target.name},  # Target.body as the plain dict[str, str] it is
        index_name=check.index_name,
        ids=None if check.del_all else check.initial,
        deleted_at=check.deleted_at,
        since=check.since,
        settle=check.settle,
        seen=sorted(check.seen),
        seen_records=check.seen_records,
        deadline=deadline,
        poke_interval=poke_interval,
        started_at=started_at,
        total_ids=total_ids,
    )
    task.defer(
        trigger=trigger,
        method_name="execute_complete",
        timeout=trigger_timeout(deadline, poke_interval),
    )
    raise AssertionError("defer() returned")  # pragma: no cover - defer always raises


@dataclass
class WaitOutcome:
    """What the trigger's event says: ``status`` (success, timeout, error), the message, the counts."""

    status: str
    message: str
    event: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        """The wait's keys for the task's XCom summary (same keys as a wait in the worker)."""
        waited = float(self.event.get("waited_seconds") or 0)
        return wait_summary(
            None,
            index_name=self.event.get("index_name", ""),
            total_ids=self.event.get("total_ids", 0),
            started_at=time.time() - waited,
            event=self.event,
        )


def read_event(event: Mapping[str, Any] | None) -> WaitOutcome:
    event = dict(event or {})
    status = str(event.get("status") or "error")
    message = event.get("message") or f"the trigger ended without a message: {event!r}"
    return WaitOutcome(status, str(message), event)
