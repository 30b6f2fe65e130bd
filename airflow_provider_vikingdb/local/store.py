"""Collections, their records, what their indexes see, and the per-collection write quota.

No HTTP here. Callers hold ``Store.lock`` around anything that reads and then writes,
so one request's validation and its effect are atomic.

The index lag: every write (and every TTL expiry, at its expiry time) is also appended
to the collection's change log with its time. A change comes due ``index_lag`` seconds
after it was written (``del_all_index_lag`` for a ``del_all``), and the index applies due
changes in write order, never one before an earlier one (lazily, on the next request).
So the index shows the collection as it was ``index_lag`` ago, except that after a
``del_all`` it shows the collection from before the ``del_all`` until the ``del_all``
comes due, and then everything written since that has come due as well.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_vikingdb.local import errors
from airflow_provider_vikingdb.local.errors import ApiError, invalid
from airflow_provider_vikingdb.local.fields import INT64_MAX, INT64_MIN, check_fields, value_problem
from airflow_provider_vikingdb.local.index import IndexView

KEY_TYPES = ("string", "int64")
#: What a ``del_all`` costs against the quota: one row. It is one operation whatever the
#: collection holds, and a cost that grew with the collection could exceed the bucket
#: (a second of quota by default) and then never be admitted.
DEL_ALL_ROWS = 1


def resource_id_for(name: str) -> str:
    """Deterministic and readable, so tests can write it down: ``vdb-<collection name>``."""
    return f"vdb-{name}"


def default_index_name(collection: str) -> str:
    return f"{collection}_index"


def parse_collection_spec(spec: str) -> tuple[str, str, str]:
    """``NAME[:KEY_FIELD[:TYPE]]`` -> (name, key field, key type); key field ``id``, type ``string``."""
    parts = spec.split(":")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise ValueError(f"collection spec {spec!r} is not NAME[:KEY_FIELD[:TYPE]]")
    name = parts[0]
    key_field = parts[1] if len(parts) > 1 else "id"
    key_type = parts[2] if len(parts) > 2 else "string"
    if key_type not in KEY_TYPES:
        raise ValueError(f"collection spec {spec!r}: key type must be one of {', '.join(KEY_TYPES)}")
    return name, key_field, key_type


def parse_index_spec(spec: str) -> tuple[str, str]:
    """``COLLECTION:INDEX_NAME`` -> (collection, index name)."""
    parts = spec.split(":")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"index spec {spec!r} is not COLLECTION:INDEX_NAME")
    return parts[0], parts[1]


def key_problem(value: Any, key_type: str) -> str | None:
    """Why ``value`` is not a primary key of ``key_type``, or None if it is one."""
    if key_type == "int64":
        # bool is an int subclass in Python, but JSON true is not an int64.
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{value!r} is not an int64"
        if not INT64_MIN <= value <= INT64_MAX:
            return f"{value} is out of the int64 range"
        return None
    if not isinstance(value, str):
        return f"{value!r} is not a string"
    if not value:
        return "the empty string is not a valid id"
    return None


class TokenBucket:
    """Rows per second, holding at most ``burst`` seconds' worth (it starts full); a request it
    cannot cover takes nothing.

    The service's own bucket is not documented (vikingdb-api.md says only "rows per second"), so
    its size is a setting: one second by default, smaller to try a client against a stricter
    service (at 0.2 s and 1500 rows/s it holds three requests of 100 rows).
    """

    def __init__(self, rate: float, now: float, burst: float = 1.0) -> None:
        self._size(rate, burst)
        self.tokens = self.capacity
        self.updated = now

    def _size(self, rate: float, burst: float) -> None:
        if rate <= 0:
            raise ValueError("quota must be a positive number of rows per second")
        if not burst > 0:
            raise ValueError("quota_burst must be a positive number of seconds")
        self.rate = float(rate)
        self.burst = float(burst)

    @property
    def capacity(self) -> float:
        return self.rate * self.burst

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, rows: float, now: float) -> bool:
        self._refill(now)
        if rows > self.tokens:
            return False
        self.tokens -= rows
        return True

    def set_rate(self, rate: float, now: float, burst: float | None = None) -> None:
        self._refill(now)
        self._size(rate, self.burst if burst is None else burst)
        self.tokens = min(self.tokens, self.capacity)


@dataclass(frozen=True)
class Change:
    at: float
    seq: int
    op: str  # "put", "delete" or "delete_all"
    key: Any = None
    fields: dict[str, Any] | None = None


class Collection:
    """One collection: its records now, their TTLs, the change log, and what its indexes hold.

    Every index of a collection holds the same thing (``index``), with every declared
    scalar field (``fields``) indexed. A record's fields dict is never changed in place
    (a write replaces it whole), so the collection, the change log and the index share it.
    """

    def __init__(
        self,
        name: str,
        key_field: str = "id",
        key_type: str = "string",
        indexes: Iterable[str] = (),
        fields: Mapping[str, str] | None = None,
    ) -> None:
        if key_type not in KEY_TYPES:
            raise ValueError(f"key_type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}")
        self.name = name
        self.key_field = key_field
        self.key_type = key_type
        self.fields = check_fields(fields, f"collection {name!r}")
        if key_field in self.fields:
            raise ValueError(f"collection {name!r}: {key_field!r} is the primary key, not a scalar field")
        self.indexes = {default_index_name(name), *indexes}
        self.records: dict[Any, dict[str, Any]] = {}
        self.bucket: TokenBucket | None = None
        #: what the indexes hold: the records as of the index lag
        self.index = IndexView(self.fields)
        self._pending: deque[Change] = deque()
        self._seq = 0
        #: key -> (expiry time, sequence number of the write that set it); a heap of the same
        self._expiry: dict[Any, tuple[float, int]] = {}
        self._expiry_heap: list[tuple[float, int, Any]] = []

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, key_field={self.key_field!r}, key_type={self.key_type!r})"

    @property
    def resource_id(self) -> str:
        return resource_id_for(self.name)

    # -- validation (raises ApiError 400; applies nothing) --

    def check_ids(self, ids: Iterable[Any]) -> list[Any]:
        ids = list(ids)
        for value in ids:
            problem = key_problem(value, self.key_type)
            if problem:
                raise invalid(
                    f"ids: {problem}; the primary key '{self.key_field}' of collection "
                    f"'{self.name}' is {self.key_type}."
                )
        return ids

    def split_row(self, row: Any, position: int) -> tuple[Any, dict[str, Any]]:
        """A data row -> (primary key, the other fields); declared fields must have their type."""
        if not isinstance(row, Mapping):
            raise invalid(f"data[{position}] is not a JSON object.")
        if self.key_field not in row:
            raise invalid(f"data[{position}] lacks the primary key field '{self.key_field}'.")
        key = row[self.key_field]
        problem = key_problem(key, self.key_type)
        if problem:
            raise invalid(f"data[{position}].{self.key_field}: {problem}.")
        if self.key_type == "int64" and key == 0:
            raise invalid(f"data[{position}].{self.key_field}: the primary key must not be 0.")
        fields = {name: value for name, value in row.items() if name != self.key_field}
        for name, field_type in self.fields.items():
            if name in fields:
                problem = value_problem(fields[name], field_type)
                if problem:
                    raise invalid(f"data[{position}].{name}: {problem}; the field is {field_type}.")
        return key, fields

    # -- writes (callers validated everything first and called expire(now)) --

    def _log(self, at: float, op: str, key: Any = None, fields: dict[str, Any] | None = None) -> int:
        self._seq += 1
        self._pending.append(Change(at, self._seq, op, key, fields))
        return self._seq

    def put(
        self, key: Any, fields: dict[str, Any], now: float, ttl: int | None = None, keep_ttl: bool = False
    ) -> None:
        """Write a record. ``ttl`` seconds from now (None or 0: none); ``keep_ttl``: leave it as is."""
        self.records[key] = fields
        seq = self._log(now, "put", key, fields)
        if keep_ttl:
            return
        if ttl:
            expires = now + ttl
            self._expiry[key] = (expires, seq)
            heapq.heappush(self._expiry_heap, (expires, seq, key))
        else:
            self._expiry.pop(key, None)

    def delete(self, keys: Iterable[Any], now: float) -> None:
        for key in keys:
            self.records.pop(key, None)
            self._expiry.pop(key, None)
            self._log(now, "delete", key)

    def delete_all(self, now: float) -> None:
        self.records.clear()
        self._expiry.clear()
        self._expiry_heap.clear()
        self._log(now, "delete_all")

    def expire(self, now: float) -> None:
        """Delete the records whose TTL ran out by ``now``, each logged at its own expiry time.

        Called before anything else reads or writes the collection, so the change log
        stays in time order and the index sees each expiry ``index_lag`` after it.
        """
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            expires, seq, key = heapq.heappop(heap)
            if self._expiry.get(key) == (expires, seq):  # not since rewritten or deleted
                del self._expiry[key]
                del self.records[key]
                self._log(expires, "delete", key)

    def expires_at(self, key: Any) -> float | None:
        found = self._expiry.get(key)
        return None if found is None else found[0]

    def load(self, rows: Iterable[tuple[Any, dict[str, Any]]]) -> None:
        """Write straight into the collection *and* the index, bypassing the lag (no TTL).

        The writes get the newest sequence number, so older changes still pending for
        these keys (or an older pending ``delete_all``) do not undo them when they come due.
        """
        rows = list(rows)
        self._seq += 1
        for key, fields in rows:
            self.records[key] = fields
            self._expiry.pop(key, None)
        self.index.put_many(rows, self._seq)

    # -- the index --

    def catch_up(self, now: float, lag: float, del_all_lag: float) -> None:
        """Apply to the index, in write order, every change that has come due by ``now``.

        A change is due ``lag`` seconds after it was written (``del_all_lag`` for a
        ``delete_all``). The index applies changes in order, so a change never overtakes
        an earlier one: writes after a ``del_all`` wait for it.
        """
        pending = self._pending
        index = self.index
        while pending:
            change = pending[0]
            if change.at + (del_all_lag if change.op == "delete_all" else lag) > now:
                return
            pending.popleft()
            if change.op == "delete_all":
                index.remove_older_than(change.seq)
            elif index.seqs.get(change.key, -1) < change.seq:
                if change.op == "put":
                    assert change.fields is not None  # a put always logs its fields
                    index.put(change.key, change.fields, change.seq)
                else:
                    index.remove(change.key)


class Store:
    """All collections, the index lag and the quota. ``lock`` guards everything."""

    def __init__(
        self,
        *,
        index_lag: float = 0.0,
        del_all_index_lag: float | None = None,
        quota: float | None = None,
        quota_burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.collections: dict[str, Collection] = {}
        self._by_resource_id: dict[str, Collection] = {}
        self._index_lag = 0.0
        self._del_all_index_lag: float | None = None
        self._quota: float | None = None
        self._quota_burst = 1.0
        self.index_lag = index_lag
        self.del_all_index_lag = del_all_index_lag
        self.quota_burst = quota_burst
        self.quota = quota

    # -- settings that tests change at run time --

    @property
    def index_lag(self) -> float:
        return self._index_lag

    @index_lag.setter
    def index_lag(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("index_lag must be >= 0 seconds")
        with self.lock:
            self._index_lag = float(seconds)

    @property
    def del_all_index_lag(self) -> float:
        """The lag of a ``del_all``; follows ``index_lag`` until set (set None to follow again)."""
        return self._index_lag if self._del_all_index_lag is None else self._del_all_index_lag

    @del_all_index_lag.setter
    def del_all_index_lag(self, seconds: float | None) -> None:
        if seconds is not None and seconds < 0:
            raise ValueError("del_all_index_lag must be >= 0 seconds, or None to follow index_lag")
        with self.lock:
            self._del_all_index_lag = None if seconds is None else float(seconds)

    @property
    def quota(self) -> float | None:
        return self._quota

    @quota.setter
    def quota(self, rows_per_second: float | None) -> None:
        if rows_per_second is not None and rows_per_second <= 0:
            raise ValueError("quota must be a positive number of rows per second, or None for no quota")
        with self.lock:
            now = self.clock()
            self._quota = rows_per_second
            for collection in self.collections.values():
                self._set_bucket(collection, now)

    @property
    def quota_burst(self) -> float:
        """Seconds of quota each collection's bucket holds (and starts with)."""
        return self._quota_burst

    @quota_burst.setter
    def quota_burst(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError("quota_burst must be a positive number of seconds")
        with self.lock:
            now = self.clock()
            self._quota_burst = float(seconds)
            for collection in self.collections.values():
                self._set_bucket(collection, now)

    def _set_bucket(self, collection: Collection, now: float) -> None:
        if self._quota is None:
            collection.bucket = None
        elif collection.bucket is None:
            collection.bucket = TokenBucket(self._quota, now, self._quota_burst)
        else:
            collection.bucket.set_rate(self._quota, now, self._quota_burst)

    # -- collections --

    def add_collection(
        self,
        name: str,
        key_field: str = "id",
        key_type: str = "string",
        indexes: Iterable[str] = (),
        fields: Mapping[str, str] | None = None,
    ) -> Collection:
        with self.lock:
            if name in self.collections:
                raise ValueError(f"collection {name!r} already exists")
            collection = Collection(name, key_field, key_type, indexes, fields)
            self._set_bucket(collection, self.clock())
            self.collections[name] = collection
            self._by_resource_id[collection.resource_id] = collection
            return collection

    def add_index(self, collection: str, index_name: str) -> None:
        with self.lock:
            if collection not in self.collections:
                raise ValueError(f"--index {collection}:{index_name}: no collection {collection!r}")
            self.collections[collection].indexes.add(index_name)

    def get(self, name: str) -> Collection:
        """For the Python API: KeyError with the known names when ``name`` is unknown."""
        try:
            return self.collections[name]
        except KeyError:
            raise KeyError(f"no collection {name!r}; known: {sorted(self.collections)}") from None

    def find(self, collection_name: str | None = None, resource_id: str | None = None) -> Collection:
        """For requests: ApiError 404 ``NotFound.VikingdbCollection`` when unknown."""
        found = (
            self.collections.get(collection_name)
            if collection_name is not None
            else self._by_resource_id.get(resource_id or "")
        )
        if found is None:
            shown = collection_name if collection_name is not None else resource_id
            raise ApiError(
                404,
                errors.COLLECTION_NOT_FOUND,
                f"The specified collection '{shown}' of VikingDB does not exist.",
            )
        return found

    def take_rows(self, collection: Collection, rows: int) -> None:
        """Charge ``rows`` to the collection's quota; ApiError 429 (nothing taken) if it can't cover them."""
        if collection.bucket is None:
            return
        if not collection.bucket.take(rows, self.clock()):
            raise ApiError(
                429,
                errors.QUOTA_EXCEEDED,
                f"Collection '{collection.name}' is over its write quota of {self._quota:g} rows/s "
                f"(this request needs {rows} rows). Retry later.",
            )

    def now(self) -> float:
        return self.clock()

    def current(self, collection: Collection) -> float:
        """Bring ``collection`` up to now (TTL expiries, then due index changes); returns now."""
        now = self.clock()
        collection.expire(now)
        collection.catch_up(now, self._index_lag, self.del_all_index_lag)
        return now

    def index_view(self, collection: Collection) -> IndexView:
        """What the collection's indexes hold now."""
        self.current(collection)
        return collection.index
