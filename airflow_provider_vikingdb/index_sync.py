"""What "the index reflects the delete" means, without any I/O.

A delete reaches the collection at once and its indexes later (about 20 s; about
5 minutes after ``del_all``). ``IndexSyncCheck`` says which requests one look at
the index takes and what their answers mean. The sensor and the operator send
them with the hook's ``request`` (in the worker), the trigger with its ``arequest``
(in the triggerer); the meaning stays in one place.

Cheap to import: DAG files import it through the operator and the sensor.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from airflow_provider_vikingdb.exceptions import VikingDBError
from airflow_provider_vikingdb.ids import MAX_BATCH_SIZE, batched
from airflow_provider_vikingdb.target import Target
from airflow_provider_vikingdb.transport import FETCH_IN_INDEX_PATH, SEARCH_RANDOM_PATH

#: ids checked per look at the index; above it a random sample of this size is checked.
DEFAULT_MAX_CHECKED_IDS = 1000
DEFAULT_POKE_INTERVAL = 5.0
#: ordinary deletes reach the index in about 20 s
DEFAULT_IDS_TIMEOUT = 10 * 60.0
#: del_all reaches the index in about 5 minutes
DEFAULT_DEL_ALL_TIMEOUT = 15 * 60.0
#: a random search of up to this many records tells whether the index is empty
EMPTY_PROBE_LIMIT = 10
#: how many still-indexed ids a message shows
SHOWN = 5


def default_timeout(del_all: bool) -> float:
    return DEFAULT_DEL_ALL_TIMEOUT if del_all else DEFAULT_IDS_TIMEOUT


def check_max_checked_ids(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_checked_ids must be a positive integer, got {value!r}")
    return value


def check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
    return float(value)


def choose_ids_to_check(
    ids: Sequence[str | int], limit: int, rng: random.Random | None = None
) -> tuple[list[str | int], bool]:
    """All ``ids`` if there are at most ``limit``, else a random sample of exactly ``limit``.

    Returns ``(ids to check, sampled)``. A sample keeps a large delete's wait to a
    bounded number of requests per look; the index applies a delete as a whole,
    so a sample that is gone is strong evidence that the rest is gone too.
    """
    check_max_checked_ids(limit)
    if len(ids) <= limit:
        return list(ids), False
    return (rng or random.Random()).sample(list(ids), limit), True


def describe_scope(checked: int, total: int, sampled: bool, limit: int) -> str:
    """How the log says which ids are checked: all of them, or a sample."""
    if sampled:
        return (
            f"a random sample of {checked} of the {total} deleted ids (more than max_checked_ids={limit}; "
            "raise it to check more)"
        )
    return f"all {checked} deleted ids"


def _key(value: Any) -> str:
    # Compare as text: a service could hand int64 keys back as strings. Keys of one
    # collection all have the same type, so this cannot mix two different ids.
    return str(value)


class IndexSyncCheck:
    """One index, and either ids that must be gone from it or (``ids=None``) emptiness after ``del_all``.

    ``requests()`` gives the ``(path, body)`` pairs of one look; ``absorb(body,
    envelope)`` takes each answer. Ids seen gone are not asked about again (a
    deleted id does not come back to the index unless it is written again, which
    is not this wait's business), so each look costs less than the one before.
    """

    def __init__(
        self, target: Target | Mapping[str, str], index_name: str, ids: Sequence[str | int] | None
    ) -> None:
        self.target = target if isinstance(target, Target) else Target.from_body(target)
        self.index_name = index_name
        self.del_all = ids is None
        #: the ids this wait checks (all deleted ids, or a sample of them)
        self.initial: list[str | int] = list(ids or [])
        self.checked = len(self.initial)
        #: ids mode: the checked ids the index still held at the last look
        self.remaining: list[str | int] = list(ids or [])
        #: del_all mode: ids of the records the last random search returned (None: no look yet)
        self.seen: list[Any] | None = None
        self.looks = 0

    @property
    def synced(self) -> bool:
        if self.del_all:
            return self.seen == []
        return not self.remaining

    @property
    def still_indexed(self) -> int:
        """ids mode: checked ids still in the index; del_all: records the last search returned."""
        if self.del_all:
            return len(self.seen or [])
        return len(self.remaining)

    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        """The requests of one look (computed up front: ``absorb`` changes what is left)."""
        # An empty output_fields asks for ids only (documented for fetch_in_index and search).
        base = {**self.target.body, "index_name": self.index_name, "output_fields": []}
        if self.del_all:
            return [(SEARCH_RANDOM_PATH, {**base, "limit": EMPTY_PROBE_LIMIT})]
        return [
            (FETCH_IN_INDEX_PATH, {**base, "ids": list(batch)})
            for batch in batched(self.remaining, MAX_BATCH_SIZE)
        ]

    def look(self, send: Callable[[str, dict[str, Any]], Mapping[str, Any]]) -> None:
        """One look with a blocking ``send(path, body) -> envelope`` (the hook's ``request``)."""
        for path, body in self.requests():
            self.absorb(body, send(path, body))
        self.looks += 1

    async def alook(self, send: Callable[[str, dict[str, Any]], Awaitable[Mapping[str, Any]]]) -> None:
        """One look with an async ``send`` (the trigger's)."""
        for path, body in self.requests():
            self.absorb(body, await send(path, body))
        self.looks += 1

    def absorb(self, body: Mapping[str, Any], envelope: Mapping[str, Any]) -> None:
        """Take the answer to one of ``requests()``."""
        result = envelope.get("result") or {}
        if self.del_all:
            self.seen = [record.get("id") for record in _records(result, "data")]
            return
        asked = list(body["ids"])
        records = result.get("fetch")
        if records is None:
            records = result.get("items")  # the name some SDK versions document
        if records is None and "ids_not_exist" in result:
            absent = {_key(i) for i in result.get("ids_not_exist") or []}
            present = {_key(i) for i in asked} - absent
        else:
            present = {_key(record.get("id")) for record in records or [] if isinstance(record, Mapping)}
        gone = {_key(i) for i in asked} - present
        self.remaining = [i for i in self.remaining if _key(i) not in gone]

    def start_text(self) -> str:
        where = f"index {self.index_name!r} of {self.target}"
        if self.del_all:
            return f"Waiting until {where} is empty after del_all (a random search returns nothing)"
        return f"Waiting until {where} no longer holds the deleted ids"

    def done_text(self) -> str:
        where = f"index {self.index_name!r} of {self.target}"
        if self.del_all:
            return f"{where} is empty after del_all"
        return f"{where} no longer holds any of the {self.checked} checked ids"

    def pending_text(self) -> str:
        """What the last look saw, for a timeout message or a progress line."""
        where = f"index {self.index_name!r} of {self.target}"
        if self.del_all:
            if self.seen is None:
                return f"{where} was never read successfully"
            return (
                f"{where} still returned records after del_all "
                f"({len(self.seen)} in a random search of up to {EMPTY_PROBE_LIMIT}{_first(self.seen)})"
            )
        if not self.looks:
            return f"{where} was never read successfully ({self.checked} ids to check)"
        return (
            f"{self.still_indexed} of the {self.checked} checked ids are still in {where}"
            f"{_first(self.remaining)}"
        )


def _records(result: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    return [record for record in result.get(name) or [] if isinstance(record, Mapping)]


def _first(ids: Sequence[Any]) -> str:
    if not ids:
        return ""
    shown = ", ".join(repr(i) for i in ids[:SHOWN])
    return f"; first: {shown}{', ...' if len(ids) > SHOWN else ''}"


def wait_blocking(
    check: IndexSyncCheck,
    send: Callable[[str, dict[str, Any]], Mapping[str, Any]],
    *,
    deadline: float,
    poke_interval: float,
    log: Any,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Look until ``check`` is synced (True) or ``deadline`` (a Unix timestamp) passes (False).

    Errors the hook gave up retrying are logged and looked again if transient
    (throttling, 5xx, network); any other ``VikingDBError`` propagates.
    """
    while True:
        if look_once(check, send, log):
            return True
        left = deadline - time.time()
        if left <= 0:
            return False
        sleep(min(poke_interval, left))


def look_once(
    check: IndexSyncCheck, send: Callable[[str, dict[str, Any]], Mapping[str, Any]], log: Any
) -> bool:
    """One look; True when synced. Transient errors are logged and count as not synced yet."""
    try:
        check.look(send)
    except VikingDBError as exc:
        if not exc.retryable:
            raise
        log.warning("Index check failed for now, looking again: %s", exc)
        return False
    if check.synced:
        log.info("%s.", check.done_text())
        return True
    log.info("%s; looking again.", check.pending_text())
    return False


def wait_summary(
    check: IndexSyncCheck | None,
    *,
    index_name: str,
    total_ids: int,
    started_at: float,
    event: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a finished wait adds to XCom: the same keys for the sensor and the operator."""
    if event is not None:
        checked, looks = event.get("checked", 0), event.get("looks", 0)
    else:
        checked, looks = (check.checked, check.looks) if check else (0, 0)
    return {
        "index_name": index_name,
        "index_synced": True,
        "index_checked_ids": checked,
        "index_sampled": checked < total_ids,
        "index_looks": looks,
        "index_wait_seconds": round(max(time.time() - started_at, 0.0), 3),
    }


def plan_check(
    target: Target | Mapping[str, str],
    index_name: str,
    ids: Sequence[str | int] | None,
    max_checked_ids: int,
) -> tuple[IndexSyncCheck, str]:
    """The check for a delete of ``ids`` (None: ``del_all``), and the log line that says what it checks."""
    if ids is None:
        check = IndexSyncCheck(target, index_name, None)
        return check, check.start_text()
    checked, sampled = choose_ids_to_check(ids, max_checked_ids)
    check = IndexSyncCheck(target, index_name, checked)
    scope = describe_scope(len(checked), len(ids), sampled, max_checked_ids)
    return check, f"{check.start_text()}: checking {scope}"
