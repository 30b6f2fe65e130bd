"""The write and fetch endpoints, and the parameter checks every endpoint shares.

An endpoint takes a parsed JSON body and returns the envelope's ``result``.

Each endpoint validates the whole request before it touches anything (an invalid
request fails as a whole) and raises ApiError for every non-200 answer. Validation
and effect run under ``Store.lock``, so concurrent requests never see half a write.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_vikingdb.local import errors
from airflow_provider_vikingdb.local.errors import ApiError, invalid, missing
from airflow_provider_vikingdb.local.store import DEL_ALL_ROWS, Collection, Store

MAX_IDS = 100
MAX_ROWS = 100
#: ttl is an int32 number of seconds; 0 (the service's default) means "never expires".
MAX_TTL = 2**31 - 1

Body = dict[str, Any]


# --- shared parameter checks ---


def _collection_selector(body: Body) -> tuple[str | None, str | None]:
    """Exactly one of ``collection_name`` / ``resource_id``, a non-empty string."""
    given = [key for key in ("collection_name", "resource_id") if body.get(key) is not None]
    if not given:
        raise missing("One of collection_name or resource_id is required.")
    if len(given) == 2:
        raise invalid("Give either collection_name or resource_id, not both.")
    value = body[given[0]]
    if not isinstance(value, str) or not value:
        raise invalid(f"{given[0]} must be a non-empty string.")
    return (value, None) if given[0] == "collection_name" else (None, value)


def find_collection(store: Store, body: Body) -> Collection:
    name, resource_id = _collection_selector(body)
    return store.find(collection_name=name, resource_id=resource_id)


def _id_list(body: Body, required: bool = True) -> list[Any] | None:
    ids = body.get("ids")
    if ids is None:
        if required:
            raise missing("ids is required.")
        return None
    if not isinstance(ids, list):
        raise invalid("ids must be a list of primary keys.")
    if not 1 <= len(ids) <= MAX_IDS:
        raise invalid(f"ids must hold 1 to {MAX_IDS} primary keys, got {len(ids)}.")
    return ids


def _rows(body: Body) -> list[Any]:
    data = body.get("data")
    if data is None:
        raise missing("data is required.")
    if not isinstance(data, list):
        raise invalid("data must be a list of rows.")
    if not 1 <= len(data) <= MAX_ROWS:
        raise invalid(f"data must hold 1 to {MAX_ROWS} rows, got {len(data)}.")
    return data


def _ttl(body: Body) -> int | None:
    """``ttl`` in seconds: None when absent; 0 means no expiry (the service's default)."""
    ttl = body.get("ttl")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL:
        raise invalid(
            f"ttl must be an integer number of seconds from 1 to {MAX_TTL} (int32), or 0 for no "
            f"expiry; got {ttl!r}."
        )
    return ttl


def _optional_bool(body: Body, name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"{name} must be true or false.")
    return value


def partition_param(body: Body) -> None:
    """``partition``: accepted (a string or an int64) and ignored: every index here has one partition."""
    value = body.get("partition")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
        raise invalid(f"partition must be a string or an integer, not {value!r}.")


def index_of(collection: Collection, body: Body) -> str:
    index_name = body.get("index_name")
    if index_name is None:
        raise missing("index_name is required.")
    if not isinstance(index_name, str) or not index_name:
        raise invalid("index_name must be a non-empty string.")
    if index_name not in collection.indexes:
        raise ApiError(
            404,
            errors.INDEX_NOT_FOUND,
            f"The specified index '{index_name}' of collection '{collection.name}' does not exist.",
        )
    return index_name


def output_fields_param(body: Body) -> list[str] | None:
    fields = body.get("output_fields")
    if fields is None:
        return None
    if not isinstance(fields, list) or not all(isinstance(name, str) for name in fields):
        raise invalid("output_fields must be a list of field names.")
    return fields


def shown(fields: dict[str, Any], output_fields: list[str] | None) -> dict[str, Any]:
    if output_fields is None:
        return dict(fields)
    return {name: fields[name] for name in output_fields if name in fields}


def int_param(body: Body, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{name} must be an integer from {low} to {high}.")
    return value


# --- endpoints ---


def delete(store: Store, body: Body) -> None:
    ids = _id_list(body, required=False)
    del_all = _optional_bool(body, "del_all")
    if ids is not None and del_all:
        raise invalid("Give either ids or del_all, not both.")
    if ids is None and not del_all:
        raise missing("ids (or del_all: true) is required.")
    _optional_bool(body, "async")
    with store.lock:
        collection = find_collection(store, body)
        now = store.current(collection)
        if del_all:
            store.take_rows(collection, DEL_ALL_ROWS)
            collection.delete_all(now)
        else:
            keys = collection.check_ids(ids or [])
            store.take_rows(collection, len(keys))
            collection.delete(keys, now)
        store.current(collection)
    return None


def upsert(store: Store, body: Body) -> dict[str, Any]:
    rows = _rows(body)
    ttl = _ttl(body)
    _optional_bool(body, "async")
    with store.lock:
        collection = find_collection(store, body)
        split = [collection.split_row(row, position) for position, row in enumerate(rows)]
        store.take_rows(collection, len(split))
        now = store.current(collection)
        for key, fields in split:
            collection.put(key, fields, now, ttl=ttl)  # no ttl: a TTL set earlier is cleared
        store.current(collection)
    return {"token_usage": {}}


def update(store: Store, body: Body) -> dict[str, Any]:
    rows = _rows(body)
    ttl = _ttl(body)
    with store.lock:
        collection = find_collection(store, body)
        now = store.current(collection)  # a record whose TTL ran out is gone: updating it fails
        split = [collection.split_row(row, position) for position, row in enumerate(rows)]
        unknown = [key for key, _ in split if key not in collection.records]
        if unknown:
            raise invalid(
                f"update: id(s) not in collection '{collection.name}': {unknown[:10]!r}; "
                "use upsert to create records."
            )
        store.take_rows(collection, len(split))
        for key, fields in split:
            merged = dict(collection.records[key])
            merged.update(fields)
            # Like missing fields, a missing ttl is kept; a ttl given restarts from now.
            collection.put(key, merged, now, ttl=ttl, keep_ttl=ttl is None)
        store.current(collection)
    return {"token_usage": {}}


def _fetch(
    records: dict[Any, dict[str, Any]], keys: list[Any], output_fields: list[str] | None
) -> dict[str, Any]:
    found = [{"id": key, "fields": shown(records[key], output_fields)} for key in keys if key in records]
    return {"fetch": found, "ids_not_exist": [key for key in keys if key not in records]}


def fetch_in_collection(store: Store, body: Body) -> dict[str, Any]:
    ids = _id_list(body)
    output_fields = output_fields_param(body)
    with store.lock:
        collection = find_collection(store, body)
        store.current(collection)
        keys = collection.check_ids(ids or [])
        return _fetch(collection.records, keys, output_fields)


def fetch_in_index(store: Store, body: Body) -> dict[str, Any]:
    ids = _id_list(body)
    output_fields = output_fields_param(body)
    partition_param(body)
    with store.lock:
        collection = find_collection(store, body)
        index_of(collection, body)
        keys = collection.check_ids(ids or [])
        return _fetch(store.index_view(collection).records, keys, output_fields)
