"""search/scalar, search/random and agg against a brute-force model, on random data and random
filters, through writes, updates and deletes: the index structures (sorted pairs, value sets)
and the shortcuts that use them must give exactly what testing every record gives."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from airflow_provider_vikingdb.local import api, search
from airflow_provider_vikingdb.local.index import SortedPairs
from airflow_provider_vikingdb.local.store import Store

FIELDS = {
    "n": "int64",
    "f": "float32",
    "s": "string",
    "b": "bool",
    "ls": "list<string>",
    "li": "list<int64>",
}
WORDS = ["red", "green", "blue", "cyan"]


# --- the model: test every record, the obvious way ---


def model_matches(flt: dict, record: dict) -> bool:
    op = flt["op"]
    if op == "and":
        return all(model_matches(c, record) for c in flt["conds"])
    if op == "or":
        return any(model_matches(c, record) for c in flt["conds"])
    name = flt["field"]
    if name not in record:
        return False
    value = record[name]
    if op in ("must", "must_not"):
        values = value if isinstance(value, list) else [value]
        hit = any(v in flt["conds"] for v in values)
        return hit if op == "must" else not hit
    inside = (
        ("gt" not in flt or value > flt["gt"])
        and ("gte" not in flt or value >= flt["gte"])
        and ("lt" not in flt or value < flt["lt"])
        and ("lte" not in flt or value <= flt["lte"])
    )
    return inside if op == "range" else not inside


# --- random data and filters ---


def random_record(rng: random.Random) -> dict:
    record: dict[str, Any] = {}
    if rng.random() < 0.9:
        record["n"] = rng.randint(-5, 15)  # many ties
    if rng.random() < 0.9:
        record["f"] = rng.choice([rng.uniform(-3, 3), rng.randint(-3, 3)])
    if rng.random() < 0.8:
        record["s"] = rng.choice(WORDS)
    if rng.random() < 0.8:
        record["b"] = rng.random() < 0.5
    if rng.random() < 0.8:
        record["ls"] = rng.sample(WORDS, rng.randint(0, 3))
    if rng.random() < 0.8:
        record["li"] = [rng.randint(0, 6) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.5:
        record["text"] = "not indexed"
    return record


def random_bounds(rng: random.Random, numbers: list) -> dict:
    bounds = {}
    if rng.random() < 0.7:
        bounds[rng.choice(["gt", "gte"])] = rng.choice(numbers)
    if not bounds or rng.random() < 0.6:
        bounds[rng.choice(["lt", "lte"])] = rng.choice(numbers)
    return bounds


def random_filter(rng: random.Random, depth: int = 0) -> dict:
    if depth < 2 and rng.random() < 0.35:
        return {"op": rng.choice(["and", "or"]), "conds": [random_filter(rng, depth + 1) for _ in range(3)]}
    kind = rng.choice(["must", "must_not", "range", "range_out"])
    if kind.startswith("range"):
        name = rng.choice(["n", "f"])
        numbers = list(range(-6, 17)) if name == "n" else [-3, -1.5, 0, 0.25, 1, 2.5, 3]
        return {"op": kind, "field": name, **random_bounds(rng, numbers)}
    name = rng.choice(["n", "s", "b", "ls", "li"])
    pool = {
        "n": list(range(-5, 16)),
        "s": WORDS,
        "b": [True, False],
        "ls": WORDS,
        "li": list(range(7)),
    }[name]
    return {"op": kind, "field": name, "conds": rng.sample(pool, rng.randint(1, 2))}


@pytest.fixture(params=["string", "int64"])
def store(request):
    store = Store()
    store.add_collection("c", key_type=request.param, fields=FIELDS)
    return store


def keys_for(store: Store, count: int) -> list:
    if store.collections["c"].key_type == "int64":
        return list(range(1, count + 1))
    return [f"k{n:03d}" for n in range(count)]


def write_randomly(store: Store, rng: random.Random, keys: list, rounds: int) -> None:
    for _ in range(rounds):
        action = rng.random()
        batch = rng.sample(keys, 20)
        if action < 0.6:
            rows = [{"id": key, **random_record(rng)} for key in batch]
            api.upsert(store, {"collection_name": "c", "data": rows})
        elif action < 0.8:
            present = [key for key in batch if key in store.collections["c"].records]
            if present:
                rows = [{"id": key, **random_record(rng)} for key in present]
                api.update(store, {"collection_name": "c", "data": rows})
        else:
            api.delete(store, {"collection_name": "c", "ids": batch})


def body(**extra) -> dict:
    return {"collection_name": "c", "index_name": "c_index", **extra}


@pytest.fixture(
    params=[{}, {"SORT_SHARE": 0, "MAX_SET_GROUPS": 0}, {"SORT_SHARE": 10**9}],
    ids=["default-paths", "sort-always-count-by-record", "walk-always"],
)
def paths(request, monkeypatch):
    """Each way the endpoints can take (sort the matches or walk the sorted field; count groups
    by set intersection or record by record) must give the same answers."""
    for name, value in request.param.items():
        monkeypatch.setattr(search, name, value)


def test_search_and_agg_match_the_model(store, paths) -> None:
    rng = random.Random(20240601)
    keys = keys_for(store, 200)
    checked = 0
    for _ in range(6):
        write_randomly(store, rng, keys, rounds=15)
        records = store.collections["c"].records
        for _ in range(40):
            flt = random_filter(rng) if rng.random() < 0.85 else None
            extra = {} if flt is None else {"filter": flt}
            matched = {k for k, r in records.items() if flt is None or model_matches(flt, r)}

            # search/scalar: order, ties, paging, the count
            name, order = rng.choice(["n", "f"]), rng.choice(["asc", "desc"])
            expected = sorted((records[k][name], k) for k in matched if name in records[k])
            if order == "desc":
                expected.reverse()
            offset, limit = rng.randint(0, 40), rng.randint(1, 60)
            got = search.search_scalar(
                store, body(field=name, order=order, offset=offset, limit=limit, **extra)
            )
            assert [(item["score"], item["id"]) for item in got["data"]] == expected[offset : offset + limit]
            assert got["filter_matched_count"] == len(expected)
            assert got["total_return_count"] == len(got["data"])

            # search/random: the same set, paged without overlap or gaps
            pages = [
                search.search_random(store, body(offset=start, limit=37, **extra))
                for start in range(0, 220, 37)
            ]
            ids = [item["id"] for page in pages for item in page["data"]]
            assert sorted(ids) == sorted(matched)
            assert all(page["filter_matched_count"] == len(matched) for page in pages)

            # agg: total, and groups by string, int64, bool
            total = search.agg(store, body(op="count", **extra))
            assert total == {"op": "count", "field": "__NONE__", "agg": {"__TOTAL__": len(matched)}}
            group = rng.choice(["s", "n", "b"])
            counts = Counter(records[k][group] for k in matched if group in records[k])
            over = rng.choice([None, 0, 5])
            cond = {} if over is None else {"cond": {"gt": over}}
            grouped = search.agg(store, body(op="count", field=group, **cond, **extra))
            expected_groups = {
                (("true" if v else "false") if isinstance(v, bool) else str(v)): c
                for v, c in counts.items()
                if over is None or c > over
            }
            assert grouped["agg"] == expected_groups
            checked += 1
    assert checked == 240


def test_sorted_pairs_against_a_sorted_list() -> None:
    rng = random.Random(7)
    pairs, model = SortedPairs(), []
    for step in range(6000):
        if model and rng.random() < 0.4:
            victim = rng.choice(model)
            pairs.remove(victim)
            model.remove(victim)
        else:
            pair = (rng.randint(0, 300), f"k{step}")
            pairs.add(pair)
            model.append(pair)
        if step % 500 == 0:
            model.sort()
            assert list(pairs) == model
            for _ in range(20):
                value = rng.randint(-1, 301)
                below = sum(1 for v, _ in model if v < value)
                at_or_below = sum(1 for v, _ in model if v <= value)
                assert pairs.value_rank(value, inclusive_after=False) == below
                assert pairs.value_rank(value, inclusive_after=True) == at_or_below
                start, stop = sorted(rng.sample(range(len(model) + 1), 2))
                assert list(pairs.slice(start, stop)) == model[start:stop]
                assert list(pairs.slice(start, stop, reverse=True)) == model[start:stop][::-1]
    model.sort()
    assert list(pairs) == model and len(pairs) == len(model)
    with pytest.raises(KeyError):
        pairs.remove((999, "absent"))


def test_sorted_pairs_bulk_update_keeps_order() -> None:
    pairs = SortedPairs([(3, "c"), (1, "a")])
    pairs.update([(v, f"x{v}") for v in range(2000, 0, -1)])
    assert list(pairs) == sorted([(3, "c"), (1, "a"), *((v, f"x{v}") for v in range(1, 2001))])
