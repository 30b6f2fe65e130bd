"""The pure part of the wait: which ids are checked, and what an answer means."""

from __future__ import annotations

import random

import pytest

from airflow_provider_vikingdb.hooks.vikingdb import FETCH_IN_INDEX_PATH, SEARCH_RANDOM_PATH
from airflow_provider_vikingdb.sensors.index_sync import (
    DEFAULT_DEL_ALL_TIMEOUT,
    DEFAULT_IDS_TIMEOUT,
    DEFAULT_MAX_CHECKED_IDS,
    DEFAULT_POKE_INTERVAL,
    IndexSyncCheck,
    choose_ids_to_check,
    default_timeout,
    describe_scope,
)

TARGET = {"collection_name": "c"}


def test_documented_defaults():
    assert DEFAULT_MAX_CHECKED_IDS == 1000
    assert DEFAULT_POKE_INTERVAL == 5.0
    assert default_timeout(False) == DEFAULT_IDS_TIMEOUT == 600
    assert default_timeout(True) == DEFAULT_DEL_ALL_TIMEOUT == 900


def test_up_to_the_limit_every_id_is_checked_in_order():
    ids = [f"i{n}" for n in range(1000)]
    assert choose_ids_to_check(ids, 1000) == (ids, False)
    assert choose_ids_to_check([], 5) == ([], False)


@pytest.mark.parametrize(("total", "limit"), [(1001, 1000), (12, 5), (25_000, 1000), (2, 1)])
def test_above_the_limit_a_random_sample_of_exactly_the_limit(total, limit):
    ids = list(range(total))
    checked, sampled = choose_ids_to_check(ids, limit, random.Random(7))
    assert sampled is True
    assert len(checked) == limit == len(set(checked))
    assert set(checked) <= set(ids)


def test_samples_differ_between_runs():
    ids = list(range(10_000))
    first, _ = choose_ids_to_check(ids, 10)
    assert any(choose_ids_to_check(ids, 10)[0] != first for _ in range(5))


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "10", None])
def test_limit_must_be_a_positive_integer(limit):
    with pytest.raises(ValueError, match="max_checked_ids must be a positive integer"):
        choose_ids_to_check([1, 2], limit)


def test_scope_text_says_all_or_sample():
    assert describe_scope(3, 3, False, 1000) == "all 3 deleted ids"
    text = describe_scope(1000, 25_000, True, 1000)
    assert "a random sample of 1000 of the 25000 deleted ids" in text
    assert "max_checked_ids=1000" in text


def test_requests_batch_by_100_ask_for_no_fields():
    check = IndexSyncCheck(TARGET, "idx", [f"i{n}" for n in range(250)])
    reqs = check.requests()
    assert [path for path, _ in reqs] == [FETCH_IN_INDEX_PATH] * 3
    assert [len(body["ids"]) for _, body in reqs] == [100, 100, 50]
    assert reqs[0][1]["index_name"] == "idx" and reqs[0][1]["collection_name"] == "c"
    assert reqs[0][1]["output_fields"] == []


def _answer(check, result):
    ((_, body),) = check.requests()
    check.absorb(body, {"code": "Success", "result": result})


def test_ids_listed_in_fetch_are_still_indexed():
    check = IndexSyncCheck(TARGET, "idx", ["a", "b", "c"])
    _answer(check, {"fetch": [{"id": "b"}], "ids_not_exist": ["a", "c"]})
    assert check.remaining == ["b"] and not check.synced
    assert check.requests()[0][1]["ids"] == ["b"]  # only what is left is asked again
    _answer(check, {"fetch": [], "ids_not_exist": ["b"]})
    assert check.synced and check.still_indexed == 0


def test_items_is_read_like_fetch():
    check = IndexSyncCheck(TARGET, "idx", ["a", "b"])
    _answer(check, {"items": [{"id": "a", "fields": {}}], "ids_not_exist": ["b"]})
    assert check.remaining == ["a"]


def test_only_ids_not_exist_is_enough():
    check = IndexSyncCheck(TARGET, "idx", ["a", "b"])
    _answer(check, {"ids_not_exist": ["a"]})
    assert check.remaining == ["b"]


def test_int64_keys_answered_as_strings_still_match():
    check = IndexSyncCheck(TARGET, "idx", [1, 2**62])
    _answer(check, {"fetch": [{"id": str(2**62)}]})
    assert check.remaining == [2**62]


def test_del_all_is_synced_only_after_an_empty_search():
    check = IndexSyncCheck(TARGET, "idx", None)
    ((path, body),) = check.requests()
    assert path == SEARCH_RANDOM_PATH and 1 <= body["limit"] <= 10
    assert not check.synced  # never looked
    assert "never read successfully" in check.pending_text()
    check.absorb(body, {"result": {"data": [{"id": "x"}, {"id": "y"}]}})
    assert not check.synced and check.still_indexed == 2
    assert "still returned records after del_all (2 in a random search of up to 10; first: 'x', 'y')" in (
        check.pending_text()
    )
    check.absorb(body, {"result": {"data": []}})
    assert check.synced


def test_pending_text_counts_and_shows_the_first_five():
    check = IndexSyncCheck({"resource_id": "vdb-c"}, "idx", [f"i{n}" for n in range(8)])
    check.look(lambda path, body: {"result": {"fetch": [{"id": i} for i in body["ids"]]}})
    assert check.pending_text() == (
        "8 of the 8 checked ids are still in index 'idx' of resource 'vdb-c'; "
        "first: 'i0', 'i1', 'i2', 'i3', 'i4', ..."
    )


def test_provider_info_lists_the_sensor_and_the_trigger():
    from airflow_provider_vikingdb.get_provider_info import get_provider_info

    info = get_provider_info()
    assert info["sensors"] == [
        {"integration-name": "VikingDB", "python-modules": ["airflow_provider_vikingdb.sensors.vikingdb"]}
    ]
    assert info["triggers"] == [
        {"integration-name": "VikingDB", "python-modules": ["airflow_provider_vikingdb.triggers.vikingdb"]}
    ]
