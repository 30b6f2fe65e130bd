"""search/scalar, search/random with filters, agg, declared scalar fields, and every 400 they answer."""

from __future__ import annotations

import pytest

from airflow_provider_vikingdb.local import LocalVikingDB
from airflow_provider_vikingdb.local.fields import parse_field_spec
from tests.local.vikingdb_signing_client import error_of, ok_result

SCALAR = "/api/vikingdb/data/search/scalar"
RANDOM = "/api/vikingdb/data/search/random"
AGG = "/api/vikingdb/data/agg"
INDEX = {"collection_name": "docs", "index_name": "docs_index"}
FIELDS = {
    "created_at": "int64",
    "price": "float32",
    "run": "string",
    "live": "bool",
    "tags": "list<string>",
    "codes": "list<int64>",
}
ROWS = [
    {"id": "a", "created_at": 100, "price": 1.5, "run": "r1", "live": True, "tags": ["x", "y"], "codes": [1]},
    {"id": "b", "created_at": 200, "price": 0.5, "run": "r1", "live": False, "tags": ["y"], "codes": [2, 3]},
    {"id": "c", "created_at": 200, "price": 3.0, "run": "r2", "live": True, "tags": [], "codes": []},
    {"id": "d", "created_at": 300, "run": "r2", "text": "no price, no live, no tags"},
    {"id": "e", "price": 2.0, "run": "r3", "live": False, "tags": ["z"], "codes": [3]},
]


@pytest.fixture
def server(vikingdb_server_factory):
    server = vikingdb_server_factory(collections=("docs", "plain"), fields={"docs": FIELDS})
    server.load("docs", ROWS)
    server.load("plain", [{"id": "p", "n": 1}])
    return server


@pytest.fixture
def client(server, make_client):
    return make_client(server)


def scalar(client, **body):
    return client.post(SCALAR, {**INDEX, **body})


def ids(answer) -> list:
    return [item["id"] for item in answer["data"]]


def matching(client, flt) -> list:
    return sorted(ids(ok_result(client.post(RANDOM, {**INDEX, "limit": 100, "filter": flt}))))


# --- declaring fields ---


def test_fields_from_specs_and_mappings(vikingdb_server_factory) -> None:
    assert parse_field_spec("docs:tags:list<string>") == ("docs", "tags", "list<string>")
    server = vikingdb_server_factory(
        collections=("docs", "nums:key:int64"), fields=["docs:created_at:int64", "nums:score:float32"]
    )
    assert server.fields("docs") == {"created_at": "int64"}
    assert server.fields("nums") == {"score": "float32"}
    server.add_collection("more", fields={"live": "bool"})
    assert server.fields("more") == {"live": "bool"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fields": ["docs:created_at"]}, "COLLECTION:FIELD:TYPE"),
        ({"fields": ["docs:created_at:date_time"]}, "date_time"),
        ({"fields": {"docs": {"created_at": "int"}}}, "'int'"),
        ({"fields": {"ghost": {"n": "int64"}}}, "ghost"),
        ({"fields": {"docs": {"id": "string"}}}, "primary key"),
    ],
)
def test_bad_field_declarations_are_refused(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        LocalVikingDB(collections=("docs",), **kwargs)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"id": "z", "created_at": "2024"}, "created_at"),
        ({"id": "z", "created_at": 1.0}, "created_at"),
        ({"id": "z", "created_at": True}, "created_at"),
        ({"id": "z", "created_at": 2**63}, "created_at"),
        ({"id": "z", "price": "1"}, "price"),
        ({"id": "z", "run": 5}, "run"),
        ({"id": "z", "live": 1}, "live"),
        ({"id": "z", "tags": "x"}, "tags"),
        ({"id": "z", "tags": ["x", 1]}, "tags"),
        ({"id": "z", "codes": [1, "2"]}, "codes"),
        ({"id": "z", "run": None}, "run"),
    ],
)
def test_writes_must_match_the_declared_types(server, client, row, field) -> None:
    before = server.records("docs")
    code, message = error_of(client.upsert("docs", [{"id": "ok"}, row]))
    assert code == "InvalidParameter"
    assert f"data[1].{field}" in message and FIELDS[field] in message
    assert server.records("docs") == before
    with pytest.raises(ValueError, match=field):
        server.load("docs", [row])


def test_undeclared_fields_are_stored_and_returned(server, client) -> None:
    found = ok_result(client.fetch("docs", ["d"]))["fetch"]
    assert found[0]["fields"]["text"] == "no price, no live, no tags"


# --- search/scalar ---


def test_scalar_orders_by_the_field_with_ties_by_primary_key(client) -> None:
    desc = ok_result(scalar(client, field="created_at", limit=10))
    assert [(item["id"], item["score"]) for item in desc["data"]] == [
        ("d", 300),
        ("c", 200),
        ("b", 200),
        ("a", 100),
    ]
    assert desc["filter_matched_count"] == 4  # "e" lacks created_at
    asc = ok_result(scalar(client, field="created_at", order="asc"))
    assert ids(asc) == ["a", "b", "c", "d"]
    assert [item["ann_score"] for item in asc["data"]] == [100, 200, 200, 300]
    by_price = ok_result(scalar(client, field="price", order="asc"))
    assert [(item["id"], item["score"]) for item in by_price["data"]] == [
        ("b", 0.5),
        ("a", 1.5),
        ("e", 2.0),
        ("c", 3.0),
    ]


def test_scalar_pages_with_offset_and_limit(client) -> None:
    pages = [
        ids(ok_result(scalar(client, field="created_at", order="asc", limit=1, offset=n))) for n in range(5)
    ]
    assert pages == [["a"], ["b"], ["c"], ["d"], []]
    answer = ok_result(scalar(client, field="created_at", limit=2, offset=1))
    assert ids(answer) == ["c", "b"]
    assert (answer["total_return_count"], answer["filter_matched_count"]) == (2, 4)


def test_scalar_with_a_range_filter_for_retention(client) -> None:
    """Oldest first, everything created before 250: the retention query."""
    answer = ok_result(
        scalar(
            client,
            field="created_at",
            order="asc",
            filter={"op": "range", "field": "created_at", "lt": 250},
            output_fields=[],
            limit=5000,
        )
    )
    assert answer["data"] == [
        {"id": "a", "fields": {}, "score": 100, "ann_score": 100},
        {"id": "b", "fields": {}, "score": 200, "ann_score": 200},
        {"id": "c", "fields": {}, "score": 200, "ann_score": 200},
    ]
    assert answer["filter_matched_count"] == 3


def test_scalar_with_a_filter_on_another_field(client) -> None:
    answer = ok_result(
        scalar(client, field="created_at", filter={"op": "must", "field": "run", "conds": ["r2", "r3"]})
    )
    assert ids(answer) == ["d", "c"]  # "e" matches but has no created_at
    assert answer["filter_matched_count"] == 2


def test_output_fields(client) -> None:
    all_fields = ok_result(scalar(client, field="price", limit=1))["data"][0]["fields"]
    assert all_fields == {"price": 3.0, "created_at": 200, "run": "r2", "live": True, "tags": [], "codes": []}
    some = ok_result(scalar(client, field="price", limit=1, output_fields=["run", "nope"]))
    assert some["data"][0]["fields"] == {"run": "r2"}
    assert ok_result(scalar(client, field="price", limit=1, output_fields=[]))["data"][0]["fields"] == {}


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({}, 400, "MissingParameter", ["field"]),
        ({"field": "ghost"}, 400, "InvalidParameter", ["'ghost'", "scalar index", "--field docs:ghost:TYPE"]),
        ({"field": "run"}, 400, "InvalidParameter", ["'run'", "string", "int64 or float32"]),
        ({"field": "price", "order": "up"}, 400, "InvalidParameter", ["order", "'up'"]),
        ({"field": "price", "limit": 0}, 400, "InvalidParameter", ["limit", "5000"]),
        ({"field": "price", "limit": 5001}, 400, "InvalidParameter", ["limit", "5000"]),
        ({"field": "price", "limit": "10"}, 400, "InvalidParameter", ["limit"]),
        ({"field": "price", "offset": -1}, 400, "InvalidParameter", ["offset"]),
        ({"field": "price", "output_fields": "run"}, 400, "InvalidParameter", ["output_fields"]),
        ({"field": "price", "partition": [1]}, 400, "InvalidParameter", ["partition"]),
        ({"field": "price", "index_name": "nope"}, 404, "NotFound.VikingdbIndex", ["'nope'"]),
        ({"field": "price", "index_name": None}, 400, "MissingParameter", ["index_name"]),
    ],
)
def test_scalar_parameter_errors(client, body, status, code, words) -> None:
    got_code, message = error_of(client.post(SCALAR, {**INDEX, **body}), status)
    assert got_code == code
    for word in words:
        assert word in message


def test_partition_is_accepted_and_ignored(client) -> None:
    assert ok_result(scalar(client, field="price", partition="default"))["filter_matched_count"] == 4
    assert ok_result(client.post(RANDOM, {**INDEX, "partition": 3}))["filter_matched_count"] == 5


# --- the filter language ---


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"op": "must", "field": "run", "conds": ["r1"]}, ["a", "b"]),
        ({"op": "must", "field": "created_at", "conds": [200, 300]}, ["b", "c", "d"]),
        ({"op": "must", "field": "live", "conds": [False]}, ["b", "e"]),
        ({"op": "must", "field": "tags", "conds": ["y", "z"]}, ["a", "b", "e"]),
        ({"op": "must", "field": "codes", "conds": [3]}, ["b", "e"]),
        # records lacking the field match neither must nor must_not
        ({"op": "must_not", "field": "live", "conds": [True]}, ["b", "e"]),
        ({"op": "must_not", "field": "tags", "conds": ["y"]}, ["c", "e"]),
        ({"op": "must_not", "field": "run", "conds": ["r1", "r2"]}, ["e"]),
        ({"op": "range", "field": "created_at", "gt": 100, "lte": 200}, ["b", "c"]),
        ({"op": "range", "field": "price", "gte": 1.5}, ["a", "c", "e"]),
        ({"op": "range", "field": "price", "lt": 1.5}, ["b"]),
        ({"op": "range_out", "field": "created_at", "gte": 150, "lt": 300}, ["a", "d"]),
        ({"op": "range_out", "field": "price", "gt": 1}, ["b"]),
        ({"op": "range_out", "field": "price", "gt": 5, "lt": 1}, ["a", "b", "c", "e"]),
        (
            {
                "op": "and",
                "conds": [
                    {"op": "must", "field": "run", "conds": ["r1", "r2"]},
                    {"op": "range", "field": "created_at", "gte": 200},
                ],
            },
            ["b", "c", "d"],
        ),
        (
            {
                "op": "or",
                "conds": [
                    {"op": "must", "field": "live", "conds": [True]},
                    {"op": "and", "conds": [{"op": "must_not", "field": "codes", "conds": [2]}]},
                ],
            },
            ["a", "c", "e"],
        ),
    ],
)
def test_filters(client, flt, expected) -> None:
    assert matching(client, flt) == expected


@pytest.mark.parametrize(
    ("flt", "words"),
    [
        ("run = r1", ["filter", "JSON object"]),
        ({"field": "run", "conds": ["r1"]}, ["filter.op"]),
        ({"op": "equals", "field": "run", "conds": ["r1"]}, ["filter.op", "'equals'"]),
        ({"op": "must", "conds": ["r1"]}, ["filter.field"]),
        ({"op": "must", "field": "ghost", "conds": ["r1"]}, ["'ghost'", "scalar index", "docs_index"]),
        ({"op": "must", "field": "run", "conds": []}, ["filter.conds", "non-empty"]),
        ({"op": "must", "field": "run", "conds": "r1"}, ["filter.conds"]),
        ({"op": "must", "field": "run", "conds": [1]}, ["filter.conds[0]", "string"]),
        ({"op": "must", "field": "live", "conds": [1]}, ["filter.conds[0]", "bool"]),
        ({"op": "must", "field": "created_at", "conds": [True]}, ["filter.conds[0]", "int64"]),
        ({"op": "must", "field": "codes", "conds": ["1"]}, ["filter.conds[0]", "list<int64>"]),
        ({"op": "must", "field": "price", "conds": [1.5]}, ["'must'", "float32", "range"]),
        ({"op": "range", "field": "run", "gt": 1}, ["'range'", "string", "must"]),
        ({"op": "range", "field": "price"}, ["gt, gte, lt, lte"]),
        ({"op": "range", "field": "price", "gt": "1"}, ["filter.gt", "number"]),
        ({"op": "range", "field": "price", "gt": 1, "gte": 1}, ["at most one lower bound"]),
        ({"op": "range", "field": "price", "lt": 1, "lte": 1}, ["one upper bound"]),
        ({"op": "range", "field": "price", "gt": 1, "max": 2}, ["'max'"]),
        ({"op": "and", "conds": []}, ["filter.conds", "non-empty"]),
        (
            {"op": "and", "conds": [{"op": "or", "conds": [{"op": "must", "field": "x", "conds": [1]}]}]},
            [
                "filter.conds[0].conds[0]",
                "'x'",
            ],
        ),
        ({"op": "or", "conds": [{"op": "must", "field": "run", "conds": ["r"]}, 5]}, ["filter.conds[1]"]),
    ],
)
def test_malformed_filters_are_400_naming_the_problem(client, flt, words) -> None:
    for path, extra in ((RANDOM, {}), (SCALAR, {"field": "price"}), (AGG, {"op": "count"})):
        code, message = error_of(client.post(path, {**INDEX, **extra, "filter": flt}))
        assert code == "InvalidParameter"
        for word in words:
            assert word in message, message


def test_filtering_a_collection_without_declared_fields(client) -> None:
    code, message = error_of(
        client.post(
            RANDOM,
            {
                "collection_name": "plain",
                "index_name": "plain_index",
                "filter": {"op": "must", "field": "n", "conds": [1]},
            },
        )
    )
    assert code == "InvalidParameter"
    assert "'n'" in message and "--field plain:n:TYPE" in message


# --- search/random ---


def test_random_with_a_filter_pages_and_counts(client) -> None:
    flt = {"op": "must", "field": "run", "conds": ["r1", "r2"]}
    first = ok_result(client.post(RANDOM, {**INDEX, "filter": flt, "limit": 3}))
    second = ok_result(client.post(RANDOM, {**INDEX, "filter": flt, "limit": 3, "offset": 3}))
    assert (first["total_return_count"], second["total_return_count"]) == (3, 1)
    assert first["filter_matched_count"] == second["filter_matched_count"] == 4
    assert sorted(ids(first) + ids(second)) == ["a", "b", "c", "d"]
    assert all(item["score"] == 1.0 and item["ann_score"] == 1.0 for item in first["data"])


# --- agg ---


def test_agg_total_group_and_cond(client) -> None:
    assert ok_result(client.post(AGG, {**INDEX, "op": "count"})) == {
        "op": "count",
        "field": "__NONE__",
        "agg": {"__TOTAL__": 5},
    }
    flt = {"op": "range", "field": "created_at", "lt": 250}
    assert ok_result(client.post(AGG, {**INDEX, "op": "count", "filter": flt}))["agg"] == {"__TOTAL__": 3}
    assert ok_result(client.post(AGG, {**INDEX, "op": "count", "field": "run"})) == {
        "op": "count",
        "field": "run",
        "agg": {"r1": 2, "r2": 2, "r3": 1},
    }
    by_live = ok_result(client.post(AGG, {**INDEX, "op": "count", "field": "live", "filter": flt}))
    assert by_live["agg"] == {"false": 1, "true": 2}
    by_time = ok_result(client.post(AGG, {**INDEX, "op": "count", "field": "created_at", "cond": {"gt": 1}}))
    assert by_time["agg"] == {"200": 2}
    # cond only applies with a field
    assert ok_result(client.post(AGG, {**INDEX, "op": "count", "cond": {"gt": 10}}))["agg"] == {
        "__TOTAL__": 5
    }


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({}, "MissingParameter", ["op", "count"]),
        ({"op": "sum"}, "InvalidParameter", ["'sum'", "count"]),
        ({"op": "count", "field": "ghost"}, "InvalidParameter", ["'ghost'", "scalar index"]),
        (
            {"op": "count", "field": "price"},
            "InvalidParameter",
            ["'price'", "float32", "string, int64 or bool"],
        ),
        ({"op": "count", "field": "tags"}, "InvalidParameter", ["'tags'", "list<string>"]),
        ({"op": "count", "field": "run", "cond": {"gte": 1}}, "InvalidParameter", ["cond", "gt"]),
        ({"op": "count", "field": "run", "cond": {"gt": "1"}}, "InvalidParameter", ["cond"]),
    ],
)
def test_agg_errors(client, body, code, words) -> None:
    got, message = error_of(client.post(AGG, {**INDEX, **body}))
    assert got == code
    for word in words:
        assert word in message, message


def test_agg_needs_a_string_int64_or_bool_field_like_the_service(
    vikingdb_server_factory, make_client
) -> None:
    server = vikingdb_server_factory(collections=("docs", "floats"), fields=["floats:price:float32"])
    client = make_client(server)
    for name in ("docs", "floats"):
        code, message = error_of(
            client.post(AGG, {"collection_name": name, "index_name": f"{name}_index", "op": "count"})
        )
        assert code == "InvalidParameter"
        assert "string, int64 or bool" in message and f"--field {name}:NAME:TYPE" in message
