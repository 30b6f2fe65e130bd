"""Delete by filter (issue 12): paging under index lag, the verification, and what fails before sending."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter

import pytest

from airflow_provider_vikingdb.exceptions import VikingDBConfigError
from airflow_provider_vikingdb.filter_delete import FilterDeleteError
from airflow_provider_vikingdb.hooks.vikingdb import DELETE_PATH, VikingDBHook
from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator
from airflow_provider_vikingdb.task_failure import retry_can_fix

GROUP_A = {"op": "must", "field": "grp", "conds": ["a"]}


@pytest.fixture
def server(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(
        collections=("c",), fields={"c": {"created_at": "int64", "grp": "string", "score": "float32"}}
    )
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    return srv


def rows(n, values=7):
    return [{"id": f"r{i:05d}", "created_at": i % values, "grp": "a" if i % 3 else "b"} for i in range(n)]


def deleted_ids(server):
    return [i for r in server.requests if r.path == DELETE_PATH and r.status == 200 for i in r.body["ids"]]


def runner_for(hook, **kwargs):
    """``hook.filter_delete`` of what ``GROUP_A`` matches in collection 'c' (index 'c_index')."""
    return hook.filter_delete(index_name="c_index", collection_name="c", filter=GROUP_A, **kwargs)


def run(hook, **kwargs):
    kwargs.setdefault("settle", 10)
    kwargs.setdefault("poke_interval", 0.2)
    return hook.delete_by_filter(index_name="c_index", collection_name="c", filter=GROUP_A, **kwargs)


@pytest.mark.parametrize(
    ("values", "page_size"),
    [
        (7, 500),  # ~570 records per value: every page is one value, paged within it by offset
        (5000, 300),  # few ties: the watermark moves every page
        (1, 1000),  # one value for everything
    ],
)
def test_sort_field_paging_deletes_each_match_exactly_once_while_the_index_lags(server, values, page_size):
    server.index_lag = 1.0
    data = rows(6000, values)
    server.load("c", data)
    result = run(VikingDBHook(), sort_field="created_at", page_size=page_size)
    wanted = {r["id"] for r in data if r["grp"] == "a"}
    sent = deleted_ids(server)
    assert Counter(sent).most_common(1)[0][1] == 1  # no id deleted twice
    assert set(sent) == wanted
    assert set(server.records("c")) == {r["id"] for r in data} - wanted
    assert (result.matched, result.ids_deleted, result.remaining, result.passes) == (4000, 4000, 0, 1)
    assert result.pages >= 4000 // page_size
    assert result.index_proof == "seen_then_gone"


def test_random_paging_never_redeletes_nor_spins_on_still_indexed_ids(server):
    server.index_lag = 1.0
    data = rows(6000)
    server.load("c", data)
    result = run(VikingDBHook(), page_size=700)
    sent = deleted_ids(server)
    assert len(sent) == len(set(sent)) == 4000
    assert result.remaining == 0
    searches = [r for r in server.requests if r.path.endswith("/search/random")]
    # Each search of a pass looked further on: never the same page twice. A slow machine can make
    # a second pass (the first pages' deletes reach the index within the pass, the index shrinks
    # under the offset, and the verifying count finds what was skipped); that pass starts at 0.
    passes: list[list[int]] = []
    for search in searches:
        if search.body["offset"] == 0:
            passes.append([])
        passes[-1].append(search.body["offset"])
    assert len(passes) == result.passes
    assert all(offsets == sorted(set(offsets)) for offsets in passes), passes
    assert result.searches == len(searches)


def test_random_paging_moves_past_a_page_of_ids_it_already_took():
    # docs/operators.md, paging without a sort_field: "the offset moving past each page, ids taken
    # in this pass skipped: no id is deleted twice and no page of already-deleted ids is searched
    # again". Records indexed mid-pass can land ahead of the offset and push a whole page of ids
    # already taken (deleted, still in the lagging index) under it.
    from airflow_provider_vikingdb.filter_delete import OffsetPager

    first, rest, arrived = ([f"{p}{i}" for i in range(5)] for p in ("a", "b", "n"))
    offsets = []

    def send(path, body):
        offsets.append(body["offset"])
        assert len(offsets) < 10, f"the pager keeps searching the same page: offsets {offsets}"
        index = first + rest if len(offsets) == 1 else arrived + first + rest
        page = index[body["offset"] : body["offset"] + body["limit"]]
        return {"result": {"data": [{"id": i} for i in page]}}

    pager = OffsetPager(send, {"index_name": "c_index"}, GROUP_A, page_size=5)
    assert list(pager) == [first, rest]  # each id once; the arrivals are the next pass's
    assert offsets == [0, 5, 10, 15]


def test_records_that_the_first_pass_misses_are_found_by_another_pass(server):
    """The index applies deletes mid-pass and the offset slides past records: the next pass finds them."""
    server.index_lag = 0.0  # deletes reach the index at once: offsets skip records every page
    data = rows(3000)
    server.load("c", data)
    result = run(VikingDBHook(), page_size=500)
    assert result.remaining == 0 and result.passes >= 2
    assert not [r for r in server.records("c").values() if r["grp"] == "a"]
    assert len(deleted_ids(server)) == len(set(deleted_ids(server))) == 2000


def test_iter_matching_ids_yields_every_match_once_page_by_page(server):
    data = rows(2500, values=3)
    server.load("c", data)
    hook = VikingDBHook()
    wanted = sorted(r["id"] for r in data if r["grp"] == "a")
    for sort_field in ("created_at", None):
        pages = list(
            hook.iter_matching_ids(
                index_name="c_index",
                collection_name="c",
                filter=GROUP_A,
                sort_field=sort_field,
                page_size=400,
            )
        )
        assert max(len(p) for p in pages) <= 400
        assert sorted(i for p in pages for i in p) == wanted
    assert deleted_ids(server) == []


def test_float_sort_field_pages_by_its_value(server):
    data = [{"id": f"f{i}", "score": (i % 50) / 4, "grp": "a"} for i in range(1200)]
    server.load("c", data)
    result = run(VikingDBHook(), sort_field="score", page_size=100)
    assert result.ids_deleted == 1200 and server.records("c") == {}


def test_max_delete_is_checked_against_the_count_before_any_delete(server):
    server.load("c", rows(300))
    with pytest.raises(VikingDBConfigError, match="200 records match the filter, more than max_delete=199"):
        run(VikingDBHook(), max_delete=199)
    assert deleted_ids(server) == []


def test_records_arriving_after_the_count_cannot_push_the_delete_past_max_delete(server):
    server.load("c", rows(300))
    hook = VikingDBHook()
    runner = runner_for(hook, max_delete=200, page_size=150)
    matched = runner.count()
    server.load("c", [{"id": f"late{i}", "grp": "a", "created_at": 1} for i in range(100)])
    with pytest.raises(FilterDeleteError, match="more than max_delete=200") as caught:
        runner.run(matched)
    assert caught.value.result.ids_deleted == len(deleted_ids(server)) <= 200
    assert not retry_can_fix(caught.value)  # the cap is as low on the next try


def test_a_pass_never_takes_the_total_past_max_delete_even_by_one(server):
    # docs/operators.md: "A pass will not take the total past max_delete either (records that
    # started to match after the count)": one late record is one too many.
    server.load("c", rows(300))  # 200 match
    hook = VikingDBHook()
    runner = runner_for(hook, max_delete=200, page_size=250)
    matched = runner.count()
    server.load("c", [{"id": "late", "grp": "a", "created_at": 1}])
    with pytest.raises(FilterDeleteError, match="more than max_delete=200") as caught:
        runner.run(matched)
    assert caught.value.result.ids_deleted == len(deleted_ids(server)) <= 200


def test_what_still_matches_gets_another_pass_up_to_max_passes(server, monkeypatch):
    # docs/operators.md: "What still matches gets another pass [...], up to max_passes (3)".
    server.load("c", rows(30))
    hook = VikingDBHook()
    runner = runner_for(hook)
    counts = iter([5, 2, 0])  # an index that still shows some matches after passes 1 and 2
    monkeypatch.setattr(runner, "count", lambda: next(counts))
    monkeypatch.setattr(runner, "_wait_for_index", lambda ids, at: None)
    result = runner.run(20)
    assert (result.passes, result.remaining) == (3, 0)


@pytest.mark.parametrize(
    "listening", ["attributes", "arguments", None], ids=["on_unknown", "hook-args", "no-callback"]
)
def test_a_batch_whose_answer_was_lost_is_outcome_unknown_not_deleted(server, monkeypatch, listening):
    # docs/operators.md, Deletion receipts: a delete by filter records the ids whose outcome is
    # unknown (sent, the answer lost: the service may have deleted them), and its error says so.
    conn = json.loads(server.connection_json())
    conn["extra"]["max_retries"] = 0
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    server.load("c", rows(300))  # 200 match
    server.cut_next(DELETE_PATH, where="body", applied=True, after=1)  # the 2nd batch: applied, answer cut
    told, acknowledged = [], []
    callbacks = {
        "on_batch": lambda ids, envelope: acknowledged.append(list(ids)),
        "on_unknown": lambda ids, error: told.append((list(ids), error)),
    }
    runner = runner_for(
        VikingDBHook(), batch_size=50, max_concurrency=1, **(callbacks if listening == "arguments" else {})
    )
    if listening == "attributes":
        runner.on_batch, runner.on_unknown = callbacks["on_batch"], callbacks["on_unknown"]
    with pytest.raises(FilterDeleteError) as caught:
        runner.run(runner.count())
    sent = [r.body["ids"] for r in server.requests if r.path == DELETE_PATH]
    assert len(sent) == 2  # nothing after the lost batch
    result = caught.value.result
    assert (result.matched, result.ids_deleted, result.ids_unknown) == (200, 50, 50)
    if listening:
        assert acknowledged == [sent[0]]
        ((ids, error),) = told
        assert ids == sent[1] and error.code == "IncompleteAnswer" and error.maybe_applied
    assert (
        "deleting page 1 (200 ids) failed: " in str(caught.value)
        and "In all: 50 ids deleted from collection 'c' in 1 page (1 pass); outcome unknown: 50 ids (sent, "
        "no answer came back: the service may have deleted them); not deleted (refused, or never sent): "
        "100 ids; not reached yet: 0 of the 200 ids that matched at the start"
        in str(caught.value)
    )
    assert retry_can_fix(caught.value)  # another try deletes them again (idempotent)


def test_a_search_error_fails_with_what_was_done(server):
    server.load("c", rows(300))
    with pytest.raises(FilterDeleteError, match="searching index 'c_index' failed") as caught:
        run(VikingDBHook(), sort_field="grp")  # a string field: search/scalar refuses it
    assert "search/scalar orders by int64 or float32" in str(caught.value)
    assert caught.value.result.ids_deleted == 0 and deleted_ids(server) == []
    assert not retry_can_fix(caught.value)  # a 400: the same search is refused again


def test_records_that_keep_matching_fail_after_max_passes_saying_how_many(server, monkeypatch):
    server.load("c", rows(30))
    hook = VikingDBHook()
    runner = runner_for(hook, max_passes=2)
    monkeypatch.setattr(runner, "count", lambda: 7)  # an index that never reflects the deletes
    monkeypatch.setattr(runner, "_wait_for_index", lambda ids, at: None)
    with pytest.raises(
        FilterDeleteError, match="7 records of index 'c_index' still match the filter after 2"
    ) as caught:
        runner.run(20)
    assert retry_can_fix(caught.value)  # another try runs more passes, on an index that moved on


# ---- the operator: what fails when the DAG is parsed ----


def make(**kwargs):
    kwargs.setdefault("task_id", "delete")
    kwargs.setdefault("collection_name", "c")
    return VikingDBDeleteOperator(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filter": GROUP_A, "ids": ["a"], "index_name": "i"}, "give ids or a filter"),
        ({"filter": GROUP_A, "del_all": True, "index_name": "i"}, "give del_all=True or a filter"),
        ({"filter": GROUP_A}, "index_name is required with a filter"),
        ({"filter": {}, "index_name": "i"}, "restricts nothing"),
        ({"filter": {"op": "and", "conds": []}, "index_name": "i"}, "restricts nothing"),
        ({"filter": {"op": "eq", "field": "grp", "conds": ["a"]}, "index_name": "i"}, "use 'must'"),
        ({"filter": "{not json", "index_name": "i"}, "neither JSON nor a Python literal"),
        ({"time_field": "created_at", "index_name": "i"}, "time_field needs older_than"),
        ({"older_than": 60, "index_name": "i"}, "older_than needs time_field"),
        ({"time_field": "t", "older_than": 0, "index_name": "i"}, "older_than = 0 is not above 0"),
        ({"time_field": "t", "older_than": 9, "time_unit": "h", "index_name": "i"}, "time_unit must be"),
        ({"filter": GROUP_A, "index_name": "i", "wait_for_index": "i"}, "wait_for_index is not used"),
        ({"filter": GROUP_A, "index_name": "i", "page_size": 5001}, "page_size must be an integer"),
    ],
)
def test_bad_filter_arguments_fail_at_parse_time(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_a_templated_filter_is_checked_once_rendered_and_is_a_template_field():
    op = make(filter="{{ params.filter }}", index_name="i")
    assert "filter" in VikingDBDeleteOperator.template_fields
    assert op.filter == "{{ params.filter }}"


def test_retention_cutoff_comes_from_the_data_interval_end(server, capfd):
    from airflow_provider_vikingdb.operators.by_filter import build_filter

    op = make(filter=GROUP_A, time_field="created_at", older_than=dt.timedelta(days=90), index_name="c_index")
    end = dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc)
    flt, cutoff, reference = build_filter(
        op, {"data_interval_end": end, "logical_date": end - dt.timedelta(1)}
    )
    # the one line that shows a unit mistake: the field's unit and the age, both spelled out
    out = capfd.readouterr().out
    iso = (end - dt.timedelta(days=90)).isoformat()  # the cutoff as a date too
    assert (
        f"Retention: created_at < {cutoff} (epoch seconds: {iso}): records older than 90 days at the run's "
        "data_interval_end, 2026-04-01T00:00:00+00:00." in out
    )
    assert "a number is seconds" not in out
    assert reference == "data_interval_end"
    assert cutoff == int((end - dt.timedelta(days=90)).timestamp())
    assert flt == {"op": "and", "conds": [GROUP_A, {"op": "range", "field": "created_at", "lt": cutoff}]}
    _, cutoff_ms, reference = build_filter(
        make(time_field="created_at", older_than=60, time_unit="ms", index_name="c_index"),
        {"logical_date": end},
    )
    assert (cutoff_ms, reference) == (int(end.timestamp() - 60) * 1000, "logical_date")
    out = capfd.readouterr().out
    # a number is seconds: "{{ params.days }}" rendering to 90 means 90 s, and the log says so
    assert "older_than is 1 minute (a number is seconds)" in out and "timedelta(days=N)" in out
    when = (end - dt.timedelta(seconds=60)).isoformat()
    assert f"(epoch milliseconds: {when}): records older than 1 minute at the run's logical_date" in out


def test_retention_takes_airflows_pendulum_duration_and_data_interval(server):
    # What a DAG author writes with Airflow's own types (pendulum.duration used to fail at parse
    # time with AttributeError), and what Airflow hands the task (a pendulum data_interval_end).
    import pendulum

    from airflow_provider_vikingdb.operators.by_filter import build_filter

    op = make(time_field="created_at", older_than=pendulum.duration(days=90), index_name="c_index")
    end = pendulum.datetime(2026, 4, 1, tz="Asia/Shanghai")
    _, cutoff, reference = build_filter(op, {"data_interval_end": end})
    assert reference == "data_interval_end"
    assert cutoff == int(end.timestamp()) - 90 * 86400


@pytest.mark.parametrize(
    ("newest", "refused"),
    [(1_767_225_600, True), (99_999_999_999, True), (10**11, False), (1_767_225_600_000, False)],
)
def test_time_unit_ms_on_a_field_of_seconds_is_refused_below_ten_to_the_eleven(newest, refused):
    # docs/operators.md, unit mistakes: "when the newest matching record's value is below 10^11
    # (1973 in milliseconds, the year 5138 in seconds) the task fails before deleting anything".
    from airflow_provider_vikingdb._compat import AirflowFailException
    from airflow_provider_vikingdb.operators.by_filter import _check_milliseconds

    class Runner:
        index_name = "c_index"

        def newest(self, field):
            return float(newest)

    op = make(time_field="created_at", older_than=60, time_unit="ms", index_name="c_index")
    if refused:
        with pytest.raises(AirflowFailException, match=r"holds epoch seconds, it seems.*Set time_unit='s'"):
            _check_milliseconds(op, Runner(), 1_767_225_540_000)
    else:
        _check_milliseconds(op, Runner(), 1_767_225_540_000)


@pytest.mark.parametrize("indexed_before", [0, 60])
def test_rows_written_just_before_are_deleted_once_the_index_shows_them(server, indexed_before):
    # A rollback by filter right after a load: the index shows the load's rows only later.
    # A first count of 0 is made again after settle; a count above 0 is completed by the next
    # pass (the index applies writes in order: once it has our deletes, it has the load).
    server.index_lag = 1.5
    old = rows(indexed_before)
    server.load("c", old)  # indexed long ago
    hook = VikingDBHook()
    fresh = [{"id": f"new{i:03d}", "created_at": 1, "grp": "a"} for i in range(120)]
    hook.upsert(fresh, collection_name="c")
    result = run(hook, settle=3)
    wanted = {r["id"] for r in old if r["grp"] == "a"} | {r["id"] for r in fresh}
    assert set(deleted_ids(server)) == wanted
    assert all(record.get("grp") != "a" for record in server.records("c").values())
    assert (result.ids_deleted, result.remaining) == (len(wanted), 0)
    assert result.deleted_at is not None and result.to_dict()["deleted_at"] == result.deleted_at


def test_a_count_of_zero_is_counted_again_only_within_settle_of_the_call(server):
    server.load("c", [{"id": "x", "grp": "b", "created_at": 1}])

    def counts():
        return sum(r.path.endswith("/data/agg") for r in server.requests)

    result = run(VikingDBHook(), settle=0)  # nothing written within 0 s of the call: trusted
    assert (result.matched, result.ids_deleted, result.deleted_at, counts()) == (0, 0, None, 1)
    run(VikingDBHook(), settle=0.5)  # the call itself is within settle: counted again after it
    assert counts() == 3


@pytest.mark.parametrize(("older_than", "warned"), [(3599, True), (3600, False), (5400, False)])
def test_an_age_under_an_hour_is_warned_about(server, capfd, older_than, warned):
    from airflow_provider_vikingdb.operators.by_filter import build_filter

    op = make(time_field="created_at", older_than=older_than, index_name="c_index")
    build_filter(op, {"data_interval_end": dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc)})
    assert ("(a number is seconds)" in capfd.readouterr().out) is warned


def test_each_page_says_where_the_whole_delete_stands(server, caplog, capfd):
    data = rows(4500, 5000)  # 3000 in group a
    server.load("c", data)
    run(VikingDBHook(), sort_field="created_at", page_size=1000)
    out = capfd.readouterr()
    logged = caplog.text + out.out + out.err
    done = re.findall(
        r"Delete by filter: page (\d) done: (\d+) ids of the 3000 that matched at the start", logged
    )
    totals = [int(total) for _, total in done]
    assert [int(page) for page, _ in done] == list(range(1, len(done) + 1)) and len(done) >= 3
    assert totals[0] == 1000 and totals == sorted(totals) and totals[-1] == 3000  # a running total


def test_records_that_came_to_match_during_the_run_are_counted_so_the_numbers_add_up(server):
    # 200 match at the start; 100 more come to match while the run deletes (a late load); a batch
    # is refused on page 3. "Not deleted" is what the run searched and could not delete, not
    # "what matched at the start less what was deleted" (which would say 0 here).
    server.load("c", rows(300))  # 200 match
    loaded_late = []

    def on_batch(ids, envelope):
        if not loaded_late:
            late = [{"id": f"late{i:03d}", "created_at": 1, "grp": "a"} for i in range(100)]
            server.load("c", late)
            loaded_late.extend(late)

    server.fail_next(DELETE_PATH, status=400, code="InvalidParameter", message="scripted", after=4)
    runner = runner_for(VikingDBHook(), batch_size=50, page_size=100, max_concurrency=1, on_batch=on_batch)
    with pytest.raises(FilterDeleteError) as caught:
        runner.run(runner.count())
    result = caught.value.result
    still_matching = [i for i, r in server.records("c").items() if r.get("grp") == "a"]
    assert (result.matched, result.ids_deleted, result.ids_unknown) == (200, 200, 0)
    refused = result.ids_refused  # page 3's refused batch and the rest of that page
    assert 0 < refused <= 100 and (result.not_reached, result.matched_later) == (0, refused)
    assert len(still_matching) >= refused  # (and late ones the run had not searched for yet)
    assert (
        f"not deleted (refused, or never sent): {refused} ids; not reached yet: 0 of the 200 ids that "
        f"matched at the start ({refused} more came to match during the run)" in str(caught.value)
    )
