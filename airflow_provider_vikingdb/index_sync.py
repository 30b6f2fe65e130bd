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
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow_provider_vikingdb.arguments import timedelta_microseconds
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
    """A duration as float seconds: a number or a ``timedelta`` (pendulum's too), not negative."""
    seconds = timedelta_microseconds(value) / 1_000_000 if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ValueError(f"{name} must be a non-negative number of seconds or a timedelta, got {value!r}")
    return float(seconds)


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


#: how long the index may take to apply a delete: ~20 s documented, ~5 min after del_all
DEFAULT_SETTLE = 30.0
DEFAULT_DEL_ALL_SETTLE = 6 * 60.0
SEEN_THEN_GONE, SETTLED = "seen_then_gone", "settled"
#: what the settle time counts from: the operator's delete, or the sensor's first start
AFTER_DELETE, AFTER_SENSOR_START = "the delete", "the sensor started"


def default_settle(del_all: bool) -> float:
    return DEFAULT_DEL_ALL_SETTLE if del_all else DEFAULT_SETTLE


class IndexSyncCheck:
    """One index, and either ids that must be gone from it or (``ids=None``) emptiness after ``del_all``.

    Absent is not gone: the index lags the collection for writes as for deletes, so an
    id absent from it may simply not have been indexed yet (a load a few seconds before a
    rollback). An id counts as gone only with a proof:

    - ``seen_then_gone``: it was seen in the index during this wait (or in the look made
      before the delete) and is absent now: the index applies changes in order, so the
      delete has reached it;
    - ``settled``: it is absent at a look made at least ``settle`` seconds after the
      delete (``deleted_at``), when the index has had time to apply everything written
      up to the delete.

    After ``del_all`` the same holds for a random search: an empty one proves the index
    applied the ``del_all`` only if an earlier look returned records, or after ``settle``.

    ``requests()`` gives the ``(path, body)`` pairs of one look; ``absorb(body, envelope,
    at)`` takes each answer. Ids proven gone are not asked about again, so each look costs
    less than the one before.
    """

    def __init__(
        self,
        target: Target | Mapping[str, str],
        index_name: str,
        ids: Sequence[str | int] | None,
        *,
        deleted_at: float | None = None,
        settle: float | None = None,
        seen: Iterable[str | int] = (),
        seen_records: bool = False,
        since: str = AFTER_DELETE,
    ) -> None:
        self.target = target if isinstance(target, Target) else Target.from_body(target)
        self.index_name = index_name
        self.del_all = ids is None
        #: the ids this wait checks (all deleted ids, or a sample of them)
        self.initial: list[str | int] = list(ids or [])
        self.checked = len(self.initial)
        #: Unix time the delete was acknowledged; looks before it only record what they see
        self.deleted_at = time.time() if deleted_at is None else float(deleted_at)
        #: what ``deleted_at`` is, for messages: the delete, or the sensor's start (a sensor does not
        #: know when the delete was)
        self.since = since
        self.settle = default_settle(self.del_all) if settle is None else float(settle)
        #: ids mode: checked ids not proven gone yet
        self.remaining: list[str | int] = list(ids or [])
        self._unproven: set[str] = set()
        self.seen: set[str] = {_key(i) for i in seen}
        #: del_all mode: a look returned records (the index had not applied the del_all yet)
        self.seen_records = seen_records
        #: del_all mode: ids of the records the last random search returned (None: no look yet)
        self.last_records: list[Any] | None = None
        self.del_all_gone = False
        self.proofs: dict[str, int] = {SEEN_THEN_GONE: 0, SETTLED: 0}
        self.looks = 0
        self.last_look_at: float | None = None

    @property
    def synced(self) -> bool:
        if self.del_all:
            return self.del_all_gone
        return not self.remaining

    @property
    def proof(self) -> str | None:
        """What ended the wait: ``settled`` if any id needed the settle time, else ``seen_then_gone``."""
        if not self.synced or not (self.proofs[SEEN_THEN_GONE] or self.proofs[SETTLED]):
            return None
        return SETTLED if self.proofs[SETTLED] else SEEN_THEN_GONE

    @property
    def settles_at(self) -> float:
        return self.deleted_at + self.settle

    @property
    def still_indexed(self) -> int:
        """ids mode: checked ids the index still held; del_all: records the last search returned."""
        if self.del_all:
            return len(self.last_records or [])
        return len(self.remaining) - len(self.absent_unproven)

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

    def look(self, send: Callable[[str, dict[str, Any]], Mapping[str, Any]], *, before: bool = False) -> None:
        """One look with a blocking ``send(path, body) -> envelope`` (the hook's ``request``).

        ``before=True``: a look made before the delete, which only records what the index holds.
        """
        at = time.time()
        for path, body in self.requests():
            self.absorb(body, send(path, body), at=at, before=before)
        if not before:
            self.looks += 1
            self.last_look_at = at

    async def alook(self, send: Callable[[str, dict[str, Any]], Awaitable[Mapping[str, Any]]]) -> None:
        """One look with an async ``send`` (the trigger's)."""
        at = time.time()
        for path, body in self.requests():
            self.absorb(body, await send(path, body), at=at)
        self.looks += 1
        self.last_look_at = at

    def absorb(
        self,
        body: Mapping[str, Any],
        envelope: Mapping[str, Any],
        *,
        at: float | None = None,
        before: bool = False,
    ) -> None:
        """Take the answer to one of ``requests()``, sent at Unix time ``at`` (default: now) or later."""
        at = time.time() if at is None else at
        if not before:
            self.last_look_at = at
        result = envelope.get("result") or {}
        settled = not before and at >= self.settles_at
        if self.del_all:
            records = [record.get("id") for record in _records(result, "data")]
            if records:
                self.seen_records = True
            if not before:
                self.last_records = records
                if not records and (self.seen_records or settled):
                    self.del_all_gone = True
                    self.proofs[SEEN_THEN_GONE if self.seen_records else SETTLED] = 1
            return
        asked = list(body["ids"])
        present = _present(result, asked)
        self.seen.update(present)
        if before:
            return
        asked_keys = {_key(i) for i in asked}
        still: list[str | int] = []
        for i in self.remaining:
            key = _key(i)
            if key not in asked_keys or key in present:
                still.append(i)
                if key in present:
                    self._unproven.discard(key)
            elif key in self.seen:
                self.proofs[SEEN_THEN_GONE] += 1
                self._unproven.discard(key)
            elif settled:
                self.proofs[SETTLED] += 1
                self._unproven.discard(key)
            else:
                still.append(i)
                self._unproven.add(key)
        self.remaining = still

    @property
    def absent_unproven(self) -> list[str | int]:
        """Checked ids absent at the last look but not proven gone (never seen, settle not passed)."""
        return [i for i in self.remaining if _key(i) in self._unproven]

    def _where(self) -> str:
        return f"index {self.index_name!r} of {self.target}"

    def start_text(self) -> str:
        if self.del_all:
            return f"Waiting until {self._where()} is empty after del_all (a random search returns nothing)"
        return f"Waiting until {self._where()} no longer holds the deleted ids"

    def done_text(self) -> str:
        waited = f"{max((self.last_look_at or time.time()) - self.deleted_at, 0):.1f}s after {self.since}"
        if self.del_all:
            how = (
                "records seen earlier are gone"
                if self.proof == SEEN_THEN_GONE
                else f"a look made {self.settle:g}s or more after {self.since} found it empty"
            )
            return f"{self._where()} is empty after del_all ({how}; proof: {self.proof}, {waited})"
        parts = []
        if self.proofs[SEEN_THEN_GONE]:
            parts.append(f"{self.proofs[SEEN_THEN_GONE]} seen in it and then gone")
        if self.proofs[SETTLED]:
            parts.append(
                f"{self.proofs[SETTLED]} absent at a look {self.settle:g}s or more after {self.since}"
            )
        return (
            f"{self._where()} no longer holds any of the {self.checked} checked ids "
            f"({', '.join(parts)}; proof: {self.proof}, {waited})"
        )

    def pending_text(self) -> str:
        """What the last look saw, for a timeout message or a progress line."""
        where = self._where()
        if self.last_look_at is None:
            what = "whether it is empty" if self.del_all else f"{self.checked} ids to check"
            return f"{where} was never read successfully ({what})"
        wait = (
            f"the index may take {self.settle:g}s to apply a delete; that passes at {_clock(self.settles_at)}"
        )
        if self.del_all:
            if self.last_records:
                return (
                    f"{where} still returned records after del_all ({len(self.last_records)} in a random "
                    f"search of up to {EMPTY_PROBE_LIMIT}{_first(self.last_records)})"
                )
            return (
                f"{where} looks empty, but it never returned records during this wait: not yet proof ({wait})"
            )
        text = []
        if self.still_indexed:
            indexed = [i for i in self.remaining if _key(i) not in self._unproven]
            text.append(
                f"{self.still_indexed} of the {self.checked} checked ids are still in {where}"
                f"{_first(indexed)}"
            )
        if self.absent_unproven:
            text.append(
                f"{len(self.absent_unproven)} of the {self.checked} checked ids are absent from {where} but "
                f"were never seen in it: they may not be indexed yet ({wait})"
            )
        return "; ".join(text)


def _present(result: Mapping[str, Any], asked: Sequence[Any]) -> set[str]:
    """The keys of ``asked`` that a fetch_in_index answer holds."""
    records = result.get("fetch")
    if records is None:
        records = result.get("items")  # the name some SDK versions document
    if records is None and "ids_not_exist" in result:
        absent = {_key(i) for i in result.get("ids_not_exist") or []}
        return {_key(i) for i in asked} - absent
    return {_key(record.get("id")) for record in records or [] if isinstance(record, Mapping)}


def _clock(timestamp: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(timestamp)) + " UTC"


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
        if look_once(check, send, log, deadline=deadline):
            return True
        left = deadline - time.time()
        if left <= 0:
            return False
        sleep(min(poke_interval, left))


def look_once(
    check: IndexSyncCheck,
    send: Callable[[str, dict[str, Any]], Mapping[str, Any]],
    log: Any,
    *,
    deadline: float | None = None,
) -> bool:
    """One look; True when synced. Transient errors are logged and count as not synced yet.

    ``deadline`` (a Unix timestamp), when known, goes into the progress line: how long it has
    waited and how long it still will."""
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
    if deadline is None:
        log.info("%s; looking again.", check.pending_text())
    else:
        log.info(
            "%s; looking again (%.0fs after %s; gives up in %.0fs).",
            check.pending_text(),
            max(time.time() - check.deleted_at, 0),
            check.since,
            max(deadline - time.time(), 0),
        )
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
        checked, looks, proof = event.get("checked", 0), event.get("looks", 0), event.get("proof")
    elif check is not None:
        checked, looks, proof = check.checked, check.looks, check.proof
    else:
        checked, looks, proof = 0, 0, None
    return {
        "index_name": index_name,
        "index_synced": True,
        "index_checked_ids": checked,
        "index_sampled": checked < total_ids,
        "index_looks": looks,
        "index_proof": proof,
        "index_wait_seconds": round(max(time.time() - started_at, 0.0), 3),
    }


def plan_check(
    target: Target | Mapping[str, str],
    index_name: str,
    ids: Sequence[str | int] | None,
    max_checked_ids: int,
    *,
    settle: float | None = None,
    deleted_at: float | None = None,
    since: str = AFTER_DELETE,
) -> tuple[IndexSyncCheck, str]:
    """The check for a delete of ``ids`` (None: ``del_all``), and the log line that says what it checks."""
    if ids is None:
        check = IndexSyncCheck(target, index_name, None, settle=settle, deleted_at=deleted_at, since=since)
        return check, check.start_text()
    checked, sampled = choose_ids_to_check(ids, max_checked_ids)
    check = IndexSyncCheck(target, index_name, checked, settle=settle, deleted_at=deleted_at, since=since)
    scope = describe_scope(len(checked), len(ids), sampled, max_checked_ids)
    return check, f"{check.start_text()}: checking {scope}"
