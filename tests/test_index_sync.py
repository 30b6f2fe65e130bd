"""The pure part of the wait: which ids are checked, and what an answer means."""

from __future__ import annotations

import random

import pytest

from airflow_provider_vikingdb.hooks.vikingdb import FETCH_IN_INDEX_PATH, SEARCH_RANDOM_PATH
from airflow_provider_vikingdb.index_sync import (
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


def settled(ids, target=TARGET):
    """A check whose delete is long past: absence alone is proof (the settle rule)."""
    return IndexSyncCheck(target, "idx", ids, deleted_at=0)


def _answer(check, result):
    ((_, body),) = check.requests()
    check.absorb(body, {"code": "Success", "result": result})


def test_ids_listed_in_fetch_are_still_indexed():
    check = settled(["a", "b", "c"])
    _answer(check, {"fetch": [{"id": "b"}], "ids_not_exist": ["a", "c"]})
    assert check.remaining == ["b"] and not check.synced
    assert check.requests()[0][1]["ids"] == ["b"]  # only what is left is asked again
    _answer(check, {"fetch": [], "ids_not_exist": ["b"]})
    assert check.synced and check.still_indexed == 0


def test_items_is_read_like_fetch():
    check = settled(["a", "b"])
    _answer(check, {"items": [{"id": "a", "fields": {}}], "ids_not_exist": ["b"]})
    assert check.remaining == ["a"]


def test_only_ids_not_exist_is_enough():
    check = settled(["a", "b"])
    _answer(check, {"ids_not_exist": ["a"]})
    assert check.remaining == ["b"]


def test_int64_keys_answered_as_strings_still_match():
    check = settled([1, 2**62])
    _answer(check, {"fetch": [{"id": str(2**62)}]})
    assert check.remaining == [2**62]


def test_del_all_is_synced_only_after_an_empty_search():
    check = IndexSyncCheck(TARGET, "idx", None, deleted_at=0)
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
    check = settled([f"i{n}" for n in range(8)], {"resource_id": "vdb-c"})
    check.look(lambda path, body: {"result": {"fetch": [{"id": i} for i in body["ids"]]}})
    assert check.pending_text() == (
        "8 of the 8 checked ids are still in index 'idx' of resource 'vdb-c'; "
        "first: 'i0', 'i1', 'i2', 'i3', 'i4', ..."
    )


# ---- absent is not gone: the proofs ----


def fetch_answer(present):
    return lambda path, body: {"result": {"fetch": [{"id": i} for i in body["ids"] if i in present]}}


def test_absent_but_never_seen_is_not_proof_until_the_settle_time_has_passed():
    check = IndexSyncCheck(TARGET, "idx", ["a", "b"], deleted_at=1000.0, settle=30)
    check.absorb(check.requests()[0][1], {"result": {"fetch": []}}, at=1010.0)
    assert not check.synced and check.still_indexed == 0 and len(check.absent_unproven) == 2
    assert "were never seen in it: they may not be indexed yet" in check.pending_text()
    check.absorb(check.requests()[0][1], {"result": {"fetch": []}}, at=1029.9)
    assert not check.synced
    check.absorb(check.requests()[0][1], {"result": {"fetch": []}}, at=1030.0)
    assert check.synced and check.proof == "settled" and check.proofs == {"seen_then_gone": 0, "settled": 2}


def test_seen_during_the_wait_then_absent_is_proof_at_once():
    check = IndexSyncCheck(TARGET, "idx", ["a", "b"], deleted_at=1000.0, settle=30)
    # the rollback case: rows loaded just before the delete reach the index after it
    check.absorb(check.requests()[0][1], {"result": {"fetch": []}}, at=1001.0)
    check.absorb(check.requests()[0][1], {"result": {"fetch": [{"id": "a"}, {"id": "b"}]}}, at=1002.0)
    assert not check.synced and check.still_indexed == 2 and check.absent_unproven == []
    check.absorb(check.requests()[0][1], {"result": {"fetch": [{"id": "b"}]}}, at=1004.0)
    assert check.remaining == ["b"]
    check.absorb(check.requests()[0][1], {"result": {"fetch": []}}, at=1005.0)
    assert check.synced and check.proof == "seen_then_gone"
    assert "proof: seen_then_gone" in check.done_text()


def test_a_look_before_the_delete_counts_as_seen_but_proves_nothing_itself():
    check = IndexSyncCheck(TARGET, "idx", ["a", "b"], settle=30)
    check.look(fetch_answer({"a", "b"}), before=True)
    assert check.looks == 0 and not check.synced and check.remaining == ["a", "b"]
    check.look(fetch_answer(set()))  # long indexed: the first look that finds them gone ends it
    assert check.synced and check.looks == 1 and check.proof == "seen_then_gone"


def test_a_mix_of_proofs_reports_settled():
    check = IndexSyncCheck(TARGET, "idx", ["a", "b"], deleted_at=0, seen=["a"])
    check.look(fetch_answer(set()))
    assert check.proofs == {"seen_then_gone": 1, "settled": 1} and check.proof == "settled"


def test_del_all_empty_search_needs_records_seen_before_or_the_settle_time():
    body = {"collection_name": "c"}
    check = IndexSyncCheck(TARGET, "idx", None, deleted_at=1000.0, settle=360)
    check.absorb(body, {"result": {"data": []}}, at=1001.0)
    assert not check.synced and "never returned records during this wait" in check.pending_text()
    check.absorb(body, {"result": {"data": [{"id": "x"}]}}, at=1002.0)
    check.absorb(body, {"result": {"data": []}}, at=1003.0)
    assert check.synced and check.proof == "seen_then_gone"
    late = IndexSyncCheck(TARGET, "idx", None, deleted_at=1000.0, settle=360)
    late.absorb(body, {"result": {"data": []}}, at=1360.0)
    assert late.synced and late.proof == "settled"


def test_default_settle_times_follow_the_documented_lags():
    assert IndexSyncCheck(TARGET, "idx", ["a"]).settle == 30
    assert IndexSyncCheck(TARGET, "idx", None).settle == 360


def test_provider_info_lists_the_sensor_and_the_trigger():
    from airflow_provider_vikingdb.get_provider_info import get_provider_info

    info = get_provider_info()
    assert info["sensors"] == [
        {"integration-name": "VikingDB", "python-modules": ["airflow_provider_vikingdb.sensors.vikingdb"]}
    ]
    assert info["triggers"] == [
        {"integration-name": "VikingDB", "python-modules": ["airflow_provider_vikingdb.triggers.vikingdb"]}
    ]
