"""The data-plane endpoints: a parsed JSON body in, the envelope's ``result`` out.

Each endpoint validates the whole request before it touches anything (an invalid
request fails as a whole) and raises ApiError for every non-200 answer. Validation
and effect run under ``Store.lock``, so concurrent requests never see half a write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_provider_vikingdb.local import errors
from airflow_provider_vikingdb.local.errors import ApiError, invalid, missing
from airflow_provider_vikingdb.local.store import DEL_ALL_ROWS, Collection, Store

MAX_IDS = 100
MAX_ROWS = 100
MAX_LIMIT = 5000
DEFAULT_LIMIT = 10

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


def _find_collection(store: Store, body: Body) -> Collection:
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
    ttl = body.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0):
        raise invalid("ttl must be a non-negative integer (seconds).")
    return data


def _optional_bool(body: Body, name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"{name} must be true or false.")
    return value


def _index_of(collection: Collection, body: Body) -> str:
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


def _output_fields(body: Body) -> list[str] | None:
    fields = body.get("output_fields")
    if fields is None:
        return None
    if not isinstance(fields, list) or not all(isinstance(name, str) for name in fields):
        raise invalid("output_fields must be a list of field names.")
    return fields


def _shown(fields: dict, output_fields: list[str] | None) -> dict:
    if output_fields is None:
        return dict(fields)
    return {name: fields[name] for name in output_fields if name in fields}


def _int_param(body: Body, name: str, default: int, low: int, high: int) -> int:
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
        collection = _find_collection(store, body)
        now = store.now()
        if del_all:
            store.take_rows(collection, DEL_ALL_ROWS)
            collection.delete_all(now)
        else:
            keys = collection.check_ids(ids or [])
            store.take_rows(collection, len(keys))
            collection.delete(keys, now)
        collection.catch_up(store.index_cutoff())
    return None


def upsert(store: Store, body: Body) -> dict:
    rows = _rows(body)
    _optional_bool(body, "async")
    with store.lock:
        collection = _find_collection(store, body)
        split = [collection.split_row(row, position) for position, row in enumerate(rows)]
        store.take_rows(collection, len(split))
        now = store.now()
        for key, fields in split:
            collection.put(key, fields, now)
        collection.catch_up(store.index_cutoff())
    return {"token_usage": {}}


def update(store: Store, body: Body) -> dict:
    rows = _rows(body)
    with store.lock:
        collection = _find_collection(store, body)
        split = [collection.split_row(row, position) for position, row in enumerate(rows)]
        unknown = [key for key, _ in split if key not in collection.records]
        if unknown:
            raise invalid(
                f"update: id(s) not in collection '{collection.name}': {unknown[:10]!r}; "
                "use upsert to create records."
            )
        store.take_rows(collection, len(split))
        now = store.now()
        for key, fields in split:
            merged = dict(collection.records[key])
            merged.update(fields)
            collection.put(key, merged, now)
        collection.catch_up(store.index_cutoff())
    return {"token_usage": {}}


def _fetch(records: dict, keys: list[Any], output_fields: list[str] | None) -> dict:
    found = [{"id": key, "fields": _shown(records[key], output_fields)} for key in keys if key in records]
    return {"fetch": found, "ids_not_exist": [key for key in keys if key not in records]}


def fetch_in_collection(store: Store, body: Body) -> dict:
    ids = _id_list(body)
    output_fields = _output_fields(body)
    with store.lock:
        collection = _find_collection(store, body)
        keys = collection.check_ids(ids or [])
        return _fetch(collection.records, keys, output_fields)


def fetch_in_index(store: Store, body: Body) -> dict:
    ids = _id_list(body)
    output_fields = _output_fields(body)
    with store.lock:
        collection = _find_collection(store, body)
        _index_of(collection, body)
        keys = collection.check_ids(ids or [])
        return _fetch(collection.index_view(store.index_cutoff()), keys, output_fields)


def search_random(store: Store, body: Body) -> dict:
    limit = _int_param(body, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_param(body, "offset", 0, 0, 2**31)
    output_fields = _output_fields(body)
    if body.get("filter") is not None:
        # Evaluating filters is out of scope; ignoring one would silently return wrong data.
        raise invalid("filter is not supported by the local VikingDB server.")
    with store.lock:
        collection = _find_collection(store, body)
        _index_of(collection, body)
        view = collection.index_view(store.index_cutoff())
        chosen = list(view.items())[offset : offset + limit]
        data = [{"id": key, "fields": _shown(fields, output_fields), "score": 1.0} for key, fields in chosen]
    return {"data": data, "total_return_count": len(data)}


#: path -> endpoint; every one is POST + JSON.
DATA_ENDPOINTS: dict[str, Callable[[Store, Body], Any]] = {
    "/api/vikingdb/data/delete": delete,
    "/api/vikingdb/data/upsert": upsert,
    "/api/vikingdb/data/update": update,
    "/api/vikingdb/data/fetch_in_collection": fetch_in_collection,
    "/api/vikingdb/data/fetch_in_index": fetch_in_index,
    "/api/vikingdb/data/search/random": search_random,
}
PING_PATH = "/api/vikingdb/Ping"


def ids_count(path: str, body: Any) -> int | None:
    """How many ids (or rows) a request carries, for the request log."""
    if not isinstance(body, dict):
        return None
    items = body.get("data") if path.endswith(("/upsert", "/update")) else body.get("ids")
    return len(items) if isinstance(items, list) else None
