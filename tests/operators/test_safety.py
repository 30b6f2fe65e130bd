"""Safety before the first request: every id checked up front, the first batch alone, max_delete, dry_run.

A retention job runs unattended at 3 a.m. against production data: each test states what a
user relies on and checks, against the local server, how many requests were really sent.
"""

from __future__ import annotations

import numbers

import pytest

from airflow_provider_vikingdb._compat import AirflowFailException
from airflow_provider_vikingdb.exceptions import VikingDBBatchError
from airflow_provider_vikingdb.hooks.vikingdb import DELETE_PATH, FETCH_IN_COLLECTION_PATH
from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator


def make(**kwargs):
    kwargs.setdefault("task_id", "delete")
    kwargs.setdefault("collection_name", "test_coll")
    return VikingDBDeleteOperator(**kwargs)


def sent(server, path=DELETE_PATH):
    return [r for r in server.requests if r.path == path]


class Int64Like(numbers.Integral):
    """An integer type that is not ``int`` (numpy's int64 is one): accepted as the int it holds."""

    def __init__(self, value):
        self.value = value

    def __int__(self):
        return self.value

    __index__ = __int__

    def __repr__(self):
        return f"Int64Like({self.value})"

    def __hash__(self):
        return hash(self.value)

    def __eq__(self, other):
        return int(self) == int(other)

    # numbers.Integral's other abstract methods: not used by the checks
    __abs__ = __add__ = __and__ = __ceil__ = __floor__ = __floordiv__ = __invert__ = None
    __le__ = __lshift__ = __lt__ = __mod__ = __mul__ = __neg__ = __or__ = __pos__ = None
    __pow__ = __radd__ = __rand__ = __rfloordiv__ = __rlshift__ = __rmod__ = __rmul__ = None
    __ror__ = __round__ = __rpow__ = __rrshift__ = __rshift__ = __rtruediv__ = __rxor__ = None
    __truediv__ = __trunc__ = __xor__ = None


@pytest.mark.parametrize(
    ("ids", "named"),
    [
        ([*(f"r{n}" for n in range(200)), "bad\ud800id"], "ids[200]"),
        (["a", "b", 3], "ids[2]"),
        ([1, 2, "3"], "ids[2]"),
        ([1, 2.0], "ids[1]"),
    ],
)
def test_every_refused_id_is_named_with_its_position_and_nothing_is_sent(vikingdb_connection, ids, named):
    with pytest.raises(AirflowFailException) as info:
        make(ids=ids).execute({})
    assert named in str(info.value) and "Nothing was sent" in str(info.value)
    assert vikingdb_connection.requests == []


def test_written_ids_of_a_load_killed_before_it_ended_fail_the_rollback_loudly(vikingdb_connection):
    # What a load leaves in written_ids when it is killed outright: the rollback cannot know
    # what it wrote, and must not say "nothing to roll back".
    from airflow_provider_vikingdb.operators.upsert import UNFINISHED

    with pytest.raises(AirflowFailException) as info:
        make(ids=dict(UNFINISHED)).execute({})
    message = str(info.value)
    assert "never recorded what it wrote" in message and "Roll it back by filter" in message
    assert "Nothing was sent" in message and vikingdb_connection.requests == []


def test_a_mixed_list_names_the_first_id_of_the_other_type():
    from airflow_provider_vikingdb.ids import InvalidIdsError, normalize_ids

    with pytest.raises(InvalidIdsError) as info:
        normalize_ids(["a", "b", 3, "c", 4])
    text = str(info.value)
    assert "ids[2] = 3" in text and "ids[0]" in text  # the odd one, and where the list's type came from


def test_integral_types_are_deleted_as_the_ints_they_hold(vikingdb_connection):
    server = vikingdb_connection
    server.load("test_coll_int", [{"id": n} for n in (5, 6, 7)])
    summary = make(collection_name="test_coll_int", ids=[Int64Like(5), 6]).execute({})
    assert summary["ids_deleted"] == 2
    (request,) = sent(server)
    assert request.body["ids"] == [5, 6]
    assert sorted(server.records("test_coll_int")) == [7]


def test_a_refused_first_batch_costs_exactly_one_request(vikingdb_connection):
    server = vikingdb_connection
    ids = [f"r{n}" for n in range(250)]
    server.load("test_coll", [{"id": i} for i in ids])
    server.fail_next(DELETE_PATH, status=400, code="InvalidParameter", message="bad ids")
    # a 400 will be refused again: the task fails at once (AirflowFailException: no Airflow retry)
    with pytest.raises(AirflowFailException) as info:
        make(ids=ids, max_concurrency=8).execute({})
    assert len(sent(server)) == 1
    cause = info.value.__cause__
    assert isinstance(cause, VikingDBBatchError)
    assert cause.code == "InvalidParameter"
    assert cause.request_id == sent(server)[0].request_id
    assert cause.request_id in str(info.value)
    assert "not deleted (refused, or never sent): 250 ids" in str(info.value)
    assert len(server.records("test_coll")) == 250


def test_a_wrong_collection_costs_exactly_one_request(vikingdb_connection):
    with pytest.raises(AirflowFailException) as info:
        make(collection_name="no_such_coll", ids=[f"r{n}" for n in range(250)], max_concurrency=8).execute({})
    assert len(sent(vikingdb_connection)) == 1
    assert isinstance(info.value.__cause__, VikingDBBatchError)
    assert info.value.__cause__.code.startswith("NotFound")


def test_max_delete_refuses_a_larger_list_before_anything_is_sent(vikingdb_connection):
    ids = [f"r{n}" for n in range(250)]
    with pytest.raises(AirflowFailException) as info:
        make(ids=ids, max_delete=100).execute({})
    text = str(info.value)
    assert "would delete 250 ids, more than max_delete=100" in text
    assert "raise max_delete to at least 250" in text
    assert vikingdb_connection.requests == []
    assert make(ids=ids[:100], max_delete=100).execute({})["ids_requested"] == 100  # the cap itself is fine


def test_max_delete_refuses_even_one_id_over_the_cap(vikingdb_connection):
    # docs/operators.md, Behaviour 8: "when more ids [...] are to be deleted than this, the task
    # fails before sending anything".
    ids = [f"r{n}" for n in range(101)]
    vikingdb_connection.load("test_coll", [{"id": i} for i in ids])
    with pytest.raises(AirflowFailException, match="would delete 101 ids, more than max_delete=100"):
        make(ids=ids, max_delete=100).execute({})
    assert vikingdb_connection.requests == []
    assert len(vikingdb_connection.records("test_coll")) == 101


@pytest.mark.parametrize("dry_run", [True, "true", "True"])
def test_dry_run_sends_no_delete_and_counts_what_would_go_and_what_exists(vikingdb_connection, dry_run):
    server = vikingdb_connection
    server.load("test_coll", [{"id": f"r{n}"} for n in range(180)])
    ids = [f"r{n}" for n in range(250)]  # 180 exist, 70 do not
    summary = make(ids=ids, dry_run=dry_run, max_delete=250).execute({})
    assert sent(server) == []
    assert summary["dry_run"] is True and summary["ids_deleted"] == 0
    assert (summary["would_delete"], summary["exist_now"], summary["exist_sampled"]) == (250, 180, False)
    assert len(server.records("test_coll")) == 180
    assert {r.path for r in server.requests} == {FETCH_IN_COLLECTION_PATH}


def test_dry_run_of_a_large_list_checks_a_paced_sample_and_says_so(vikingdb_connection, caplog, capfd):
    server = vikingdb_connection
    server.load("test_coll", [{"id": f"r{n}"} for n in range(0, 3000, 2)])  # every other id exists
    summary = make(ids=[f"r{n}" for n in range(3000)], dry_run=True).execute({})
    assert sent(server) == []
    assert summary["exist_sampled"] is True and summary["exist_checked"] == 1000
    assert 1200 <= summary["exist_now"] <= 1800  # an estimate from the sample of 1000
    fetches = sent(server, FETCH_IN_COLLECTION_PATH)
    assert len(fetches) == 10
    # paced to fetch_in_collection's own quota of 1000 rows/s: 1000 ids take about a second
    assert fetches[-1].time - fetches[0].time >= 0.85
    out, err = capfd.readouterr()
    assert "random sample of 1000" in caplog.text + out + err


def test_dry_run_is_templated_and_refuses_other_text(vikingdb_connection):
    assert "dry_run" in VikingDBDeleteOperator.template_fields
    with pytest.raises(ValueError, match="dry_run must be True/False"):
        make(ids=["a"], dry_run="maybe")
    op = make(ids=["a"], dry_run="{{ params.dry }}")
    op.dry_run = "perhaps"  # what a template rendered to
    with pytest.raises(AirflowFailException, match="dry_run must be True/False"):
        op.execute({})
    assert vikingdb_connection.requests == []


@pytest.fixture
def counted(vikingdb_server_factory, monkeypatch):
    """A collection whose index can count (a declared scalar field), 120 records in it."""
    server = vikingdb_server_factory(collections=("test_coll",), fields={"test_coll": {"n": "int64"}})
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", server.connection_json())
    server.load("test_coll", [{"id": f"r{n}", "n": n} for n in range(120)])
    return server


def test_del_all_counts_first_and_reports_what_it_deleted(counted, caplog, capfd):
    summary = make(ids=None, del_all=True, index_name="test_coll_index").execute({})
    assert summary["records_before"] == 120 and summary["del_all"] is True
    assert counted.records("test_coll") == {}
    out, err = capfd.readouterr()
    assert "del_all on collection 'test_coll': 120 records deleted" in caplog.text + out + err


def test_del_all_over_max_delete_is_refused_before_anything_is_deleted(counted):
    with pytest.raises(
        AirflowFailException, match=r"would delete 120 records \(del_all\), more than max_delete=100"
    ):
        make(ids=None, del_all=True, index_name="test_coll_index", max_delete=100).execute({})
    assert sent(counted) == [] and len(counted.records("test_coll")) == 120


def test_del_all_dry_run_gives_the_record_count_and_deletes_nothing(counted):
    summary = make(ids=None, del_all=True, index_name="test_coll_index", dry_run=True).execute({})
    assert summary["dry_run"] is True and summary["records_before"] == 120 and summary["ids_deleted"] == 0
    assert sent(counted) == [] and len(counted.records("test_coll")) == 120


@pytest.mark.parametrize("kwargs", [{"max_delete": 1000}, {"dry_run": True}])
def test_del_all_with_a_cap_but_no_index_to_count_with_is_refused_at_parse_time(kwargs):
    with pytest.raises(
        ValueError, match="with del_all=True counts the records through an index first: give index_name"
    ):
        make(ids=None, del_all=True, **kwargs)


def test_del_all_with_a_templated_cap_but_no_index_is_refused_before_sending(counted):
    op = make(ids=None, del_all="{{ params.purge }}", max_delete=1000)  # del_all known only at run time
    op.del_all = "True"
    with pytest.raises(AirflowFailException, match="give index_name"):
        op.execute({})
    assert counted.requests == []
