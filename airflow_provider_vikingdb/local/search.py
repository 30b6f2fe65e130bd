"""The index-reading endpoints: ``search/scalar``, ``search/random`` and ``agg``.

All of them read the index view (the collection as of the index lag), take the same
``filter`` language (``filters.py``) and the same ``index_name``, ``limit`` (1..5000,
default 10), ``offset`` (>= 0), ``output_fields`` and ``partition`` (accepted, ignored).

Orders, all deterministic for a given index state, so offsets page consistently:

- ``search/scalar``: by ``(field value, primary key)``, ascending for ``asc``; ``desc`` is
  exactly the reverse (ties: the larger primary key first). Records that lack the field
  are not returned (and not counted in ``filter_matched_count``).
- ``search/random``: the index's own order, or by the ranged field through a ``range``
  filter, or by primary key through a selective ``must``. Not random; stable only while the
  index is unchanged.

Speed: range filters and orderings bisect the sorted ``(value, key)`` pairs of the field;
``must`` looks up ``value -> keys``; ``and`` tests only the candidates of its most selective
part. Only ``must_not`` (and ``or``/``and`` of nothing indexable) tests every record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import islice
from typing import Any

from airflow_provider_vikingdb.local.api import (
    Body,
    find_collection,
    index_of,
    int_param,
    output_fields_param,
    partition_param,
    shown,
)
from airflow_provider_vikingdb.local.errors import invalid, missing
from airflow_provider_vikingdb.local.fields import GROUP_TYPES, NUMERIC_TYPES, is_number
from airflow_provider_vikingdb.local.filters import Filter, Source, compile_filter, needs_scalar_index
from airflow_provider_vikingdb.local.index import IndexView, SortedPairs
from airflow_provider_vikingdb.local.store import Collection, Store

MAX_LIMIT = 5000
DEFAULT_LIMIT = 10
MAX_OFFSET = 2**31
#: Below this share of the sorted field, matches are sorted directly instead of walking the field.
SORT_SHARE = 8
#: agg group-by with a filter: up to this many groups, count by set intersections.
MAX_SET_GROUPS = 1000


def _page_params(body: Body) -> tuple[int, int, list[str] | None]:
    limit = int_param(body, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = int_param(body, "offset", 0, 0, MAX_OFFSET)
    output_fields = output_fields_param(body)
    partition_param(body)
    return limit, offset, output_fields


def _filter_of(collection: Collection, index_name: str, body: Body) -> Filter | None:
    raw = body.get("filter")
    if raw is None:
        return None
    return compile_filter(raw, collection.fields, collection.name, index_name)


# --- choosing the matching records ---


def _ordered_keys(source: Source, view: IndexView) -> Iterable[Any]:
    """A source's keys in a deterministic order: by value for ranges; else by key, or index order."""
    if source.keys is None:
        return source.iter_keys(view)
    if len(source.keys) * SORT_SHARE < len(view):
        return sorted(source.keys)
    return [key for key in view.records if key in source.keys]


def _select(
    view: IndexView, flt: Filter | None, ordered: bool = True
) -> tuple[Iterable[Any], int, Source | None]:
    """The keys matching ``flt``, how many, and the source if it is exact.

    ``ordered``: in a deterministic order (for paging); otherwise in any order (for counting).
    """
    if flt is None:
        return view.records.keys(), len(view), None
    source = flt.source(view)
    arrange = _ordered_keys if ordered else Source.iter_keys
    if source is not None and source.exact:
        return arrange(source, view), source.size, source
    candidates = view.records.keys() if source is None else arrange(source, view)
    test = flt.matches if source is None or source.residual is None else source.residual
    records = view.records
    keys = [key for key in candidates if test(records[key])]
    return keys, len(keys), None


def _interval_page(
    pairs: SortedPairs, intervals: list[tuple[int, int]], offset: int, limit: int, reverse: bool
) -> list[tuple[Any, Any]]:
    """``limit`` pairs after skipping ``offset``, walking rank intervals (O(log n) to start)."""
    page: list[tuple[Any, Any]] = []
    for start, stop in reversed(intervals) if reverse else intervals:
        if offset >= stop - start:
            offset -= stop - start
            continue
        wanted = limit - len(page)
        if reverse:
            high = stop - offset
            page.extend(pairs.slice(max(start, high - wanted), high, reverse=True))
        else:
            low = start + offset
            page.extend(pairs.slice(low, min(stop, low + wanted)))
        offset = 0
        if len(page) >= limit:
            break
    return page


def _item(view: IndexView, key: Any, output_fields: list[str] | None, score: Any) -> dict[str, Any]:
    return {"id": key, "fields": shown(view.records[key], output_fields), "score": score, "ann_score": score}


# --- endpoints ---


def search_scalar(store: Store, body: Body) -> dict[str, Any]:
    limit, offset, output_fields = _page_params(body)
    name = body.get("field")
    if name is None:
        raise missing("field is required: the int64 or float32 field to order by.")
    if not isinstance(name, str) or not name:
        raise invalid("field must be a field name (a non-empty string).")
    order = body.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid(f"order must be 'asc' or 'desc', not {order!r}.")
    reverse = order == "desc"
    with store.lock:
        collection = find_collection(store, body)
        index_name = index_of(collection, body)
        field_type = collection.fields.get(name)
        if field_type is None:
            raise needs_scalar_index(collection.name, index_name, name, "field")
        if field_type not in NUMERIC_TYPES:
            raise invalid(f"field: search/scalar orders by int64 or float32; '{name}' is {field_type}.")
        flt = _filter_of(collection, index_name, body)
        view = store.index_view(collection)
        pairs = view.sorted[name]
        source = None if flt is None else flt.source(view)
        if flt is None or (source is not None and source.exact and source.field == name):
            intervals = [(0, len(pairs))] if source is None else source.intervals or []
            matched = sum(stop - start for start, stop in intervals)
            page = _interval_page(pairs, intervals, offset, limit, reverse)
        else:
            keys, _, _ = _select(view, flt)
            records = view.records
            having = [key for key in keys if name in records[key]]
            matched = len(having)
            if matched * SORT_SHARE < len(pairs):
                ordered: Iterable[tuple[Any, Any]] = sorted(
                    ((records[key][name], key) for key in having), reverse=reverse
                )
            else:
                wanted = set(having)
                ordered = (pair for pair in pairs.slice(0, len(pairs), reverse) if pair[1] in wanted)
            page = list(islice(ordered, offset, offset + limit))
        data = [_item(view, key, output_fields, value) for value, key in page]
    return {"data": data, "total_return_count": len(data), "filter_matched_count": matched}


def search_random(store: Store, body: Body) -> dict[str, Any]:
    limit, offset, output_fields = _page_params(body)
    with store.lock:
        collection = find_collection(store, body)
        index_name = index_of(collection, body)
        flt = _filter_of(collection, index_name, body)
        view = store.index_view(collection)
        keys, matched, _ = _select(view, flt)
        data = [_item(view, key, output_fields, 1.0) for key in islice(keys, offset, offset + limit)]
    return {"data": data, "total_return_count": len(data), "filter_matched_count": matched}


def _group_key(value: Any) -> str:
    """How a group's value is written as a JSON object key."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def agg(store: Store, body: Body) -> dict[str, Any]:
    op = body.get("op")
    if op is None:
        raise missing("op is required; the only aggregation is 'count'.")
    if op != "count":
        raise invalid(f"op must be 'count' (the only aggregation), not {op!r}.")
    name = body.get("field")
    if name is not None and (not isinstance(name, str) or not name):
        raise invalid("field must be a field name (a non-empty string) to group by, or absent.")
    cond = body.get("cond")
    above: Any = None
    if cond is not None:
        if not isinstance(cond, dict) or set(cond) != {"gt"} or not is_number(cond["gt"]):
            raise invalid(f'cond must be {{"gt": <number>}} (count supports gt only), not {cond!r}.')
        above = cond["gt"]
    partition_param(body)
    with store.lock:
        collection = find_collection(store, body)
        index_name = index_of(collection, body)
        if not any(field_type in GROUP_TYPES for field_type in collection.fields.values()):
            raise invalid(
                f"agg count needs index '{index_name}' to have a scalar field of type string, int64 or "
                f"bool; collection '{collection.name}' declares none "
                f"(--field {collection.name}:NAME:TYPE, or fields={{...}} in Python)."
            )
        if name is not None:
            field_type = collection.fields.get(name)
            if field_type is None:
                raise needs_scalar_index(collection.name, index_name, name, "field")
            if field_type not in GROUP_TYPES:
                raise invalid(f"field: agg groups by string, int64 or bool fields; '{name}' is {field_type}.")
        flt = _filter_of(collection, index_name, body)
        view = store.index_view(collection)
        if name is None:
            _, matched, _ = _select(view, flt, ordered=False)
            return {"op": "count", "field": "__NONE__", "agg": {"__TOTAL__": matched}}
        groups = view.values[name]
        if flt is None:
            counts = {value: len(keys) for value, keys in groups.items()}
        else:
            keys, matched, _ = _select(view, flt, ordered=False)
            if len(groups) <= MAX_SET_GROUPS:  # a set intersection per group
                chosen = keys if isinstance(keys, (set, frozenset)) else set(keys)
                counts = {value: len(members & chosen) for value, members in groups.items()}
                counts = {value: count for value, count in counts.items() if count}
            else:
                records = view.records
                counts = Counter(records[key][name] for key in keys if name in records[key])
    counted = {
        _group_key(value): count for value, count in sorted(counts.items()) if above is None or count > above
    }
    return {"op": "count", "field": name, "agg": counted}
