"""Which endpoint answers which path (every data endpoint is POST + JSON; Ping is GET)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_provider_vikingdb.local import api, search
from airflow_provider_vikingdb.local.store import Store

DATA = "/api/vikingdb/data/"

#: path -> endpoint(store, parsed JSON body) -> the envelope's ``result``
DATA_ENDPOINTS: dict[str, Callable[[Store, dict[str, Any]], Any]] = {
    DATA + "delete": api.delete,
    DATA + "upsert": api.upsert,
    DATA + "update": api.update,
    DATA + "fetch_in_collection": api.fetch_in_collection,
    DATA + "fetch_in_index": api.fetch_in_index,
    DATA + "search/scalar": search.search_scalar,
    DATA + "search/random": search.search_random,
    DATA + "agg": search.agg,
}
PING_PATH = "/api/vikingdb/Ping"


def ids_count(path: str, body: Any) -> int | None:
    """How many ids (or rows) a request carries, for the request log."""
    if not isinstance(body, dict):
        return None
    items = body.get("data") if path.endswith(("/upsert", "/update")) else body.get("ids")
    return len(items) if isinstance(items, list) else None
