"""Collections, their records, what their indexes see, and the per-collection write quota.

No HTTP here. Callers hold ``Store.lock`` around anything that reads and then writes,
so one request's validation and its effect are atomic.

The index lag: every write is also appended to the collection's change log with its
time. The index view is the collection as of ``now - index_lag``: due changes are
folded into the index copy in write order (lazily, on the next read or write).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_vikingdb.local import errors
from airflow_provider_vikingdb.local.errors import ApiError, invalid

KEY_TYPES = ("string", "int64")
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: What a ``del_all`` costs against the quota: one row. It is one operation whatever the
#: collection holds, and a cost that grew with the collection could exceed the bucket
#: (one second of quota) and then never be admitted.
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
    """Rows per second, holding at most one second's worth; a request it cannot cover takes nothing."""

    def __init__(self, rate: float, now: float) -> None:
        if rate <= 0:
            raise ValueError("quota must be a positive number of rows per second")
        self.rate = float(rate)
        self.tokens = float(rate)
        self.updated = now

    @property
    def capacity(self) -> float:
        return self.rate

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, rows: float, now: float) -> bool:
        self._refill(now)
        if rows > self.tokens:
            return False
        self.tokens -= rows
        return True

    def set_rate(self, rate: float, now: float) -> None:
        if rate <= 0:
            raise ValueError("quota must be a positive number of rows per second")
        self._refill(now)
        self.rate = float(rate)
        self.tokens = min(self.tokens, self.capacity)


@dataclass(frozen=True)
class Change:
    at: float
    seq: int
    op: str  # "put", "delete" or "delete_all"
    key: Any = None
    fields: dict | None = None


@dataclass
class Collection:
    name: str
    key_field: str = "id"
    key_type: str = "string"
    indexes: set[str] = field(default_factory=set)
    records: dict[Any, dict] = field(default_factory=dict)
    bucket: TokenBucket | None = None
    # The index copy, the sequence number of the write each of its records comes from,
    # and the changes not yet folded into it.
    _index: dict[Any, dict] = field(default_factory=dict, repr=False)
    _index_seq: dict[Any, int] = field(default_factory=dict, repr=False)
    _pending: deque = field(default_factory=deque, repr=False)
    _seq: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.key_type not in KEY_TYPES:
            raise ValueError(f"key_type must be one of {', '.join(KEY_TYPES)}, not {self.key_type!r}")
        self.indexes = {default_index_name(self.name), *self.indexes}

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

    def split_row(self, row: Any, position: int) -> tuple[Any, dict]:
        """A data row -> (primary key, the other fields)."""
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
        return key, {name: value for name, value in row.items() if name != self.key_field}

    # -- writes (callers validated everything first) --

    def _log(self, now: float, op: str, key: Any = None, fields: dict | None = None) -> None:
        self._seq += 1
        self._pending.append(Change(now, self._seq, op, key, fields))

    def put(self, key: Any, fields: dict, now: float) -> None:
        self.records[key] = fields
        self._log(now, "put", key, dict(fields))

    def delete(self, keys: Iterable[Any], now: float) -> None:
        for key in keys:
            self.records.pop(key, None)
            self._log(now, "delete", key)

    def delete_all(self, now: float) -> None:
        self.records.clear()
        self._log(now, "delete_all")

    def load(self, key: Any, fields: dict) -> None:
        """Write straight into the collection *and* the index, bypassing the lag.

        The write gets the newest sequence number, so older changes still pending for
        this key (or an older pending ``delete_all``) do not undo it when they come due.
        """
        self._seq += 1
        self.records[key] = fields
        self._index[key] = dict(fields)
        self._index_seq[key] = self._seq

    # -- the index --

    def catch_up(self, cutoff: float) -> None:
        """Fold every change written at or before ``cutoff`` into the index copy."""
        pending = self._pending
        while pending and pending[0].at <= cutoff:
            change = pending.popleft()
            if change.op == "delete_all":
                stale = [key for key, seq in self._index_seq.items() if seq < change.seq]
                for key in stale:
                    del self._index[key]
                    del self._index_seq[key]
            elif self._index_seq.get(change.key, -1) < change.seq:
                if change.op == "put":
                    self._index[change.key] = change.fields
                    self._index_seq[change.key] = change.seq
                else:
                    self._index.pop(change.key, None)
                    self._index_seq.pop(change.key, None)

    def index_view(self, cutoff: float) -> dict[Any, dict]:
        self.catch_up(cutoff)
        return self._index


class Store:
    """All collections, the index lag and the quota. ``lock`` guards everything."""

    def __init__(
        self,
        *,
        index_lag: float = 0.0,
        quota: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.collections: dict[str, Collection] = {}
        self._by_resource_id: dict[str, Collection] = {}
        self._index_lag = 0.0
        self._quota: float | None = None
        self.index_lag = index_lag
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

    def _set_bucket(self, collection: Collection, now: float) -> None:
        if self._quota is None:
            collection.bucket = None
        elif collection.bucket is None:
            collection.bucket = TokenBucket(self._quota, now)
        else:
            collection.bucket.set_rate(self._quota, now)

    # -- collections --

    def add_collection(
        self, name: str, key_field: str = "id", key_type: str = "string", indexes: Iterable[str] = ()
    ) -> Collection:
        with self.lock:
            if name in self.collections:
                raise ValueError(f"collection {name!r} already exists")
            collection = Collection(name, key_field, key_type, set(indexes))
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

    def index_cutoff(self) -> float:
        return self.clock() - self._index_lag
