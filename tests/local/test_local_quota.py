"""The write quota: a token bucket per collection, rows per second, 429 applies nothing."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_vikingdb.local.store import DEL_ALL_ROWS, Store, TokenBucket
from tests.local.vikingdb_signing_client import SigningClient, string_ids


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full_and_holds_one_second() -> None:
    bucket = TokenBucket(1500, now=0.0)
    assert bucket.take(1500, now=0.0)
    assert not bucket.take(1, now=0.0)
    assert bucket.take(150, now=0.1)  # refilled at 1500 rows/s
    assert not bucket.take(1, now=0.1)
    assert bucket.take(1500, now=60.0)  # never more than one second's worth
    assert not bucket.take(1, now=60.0)


def test_bucket_holds_the_burst_it_is_given() -> None:
    bucket = TokenBucket(1500, now=0.0, burst=0.2)
    assert bucket.take(300, now=0.0)  # starts full: 0.2 s of quota
    assert not bucket.take(1, now=0.0)
    assert bucket.take(150, now=0.1)
    assert bucket.take(300, now=60.0)  # never more than 0.2 s of quota
    assert not bucket.take(1, now=60.0)
    # docs/local-server.md: one larger than the bucket can never pass (0.05 s of 1500 rows/s: 75)
    assert not TokenBucket(1500, now=0.0, burst=0.05).take(100, now=3600.0)
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="quota_burst"):
            TokenBucket(1500, now=0.0, burst=bad)


def test_store_quota_burst_is_settable_and_checked() -> None:
    clock = FakeClock()
    store = Store(quota=1000, quota_burst=0.5, clock=clock)
    a = store.add_collection("a")
    store.take_rows(a, 500)
    with pytest.raises(Exception, match="quota"):
        store.take_rows(a, 1)
    store.quota_burst = 2
    clock.now += 10
    store.take_rows(a, 2000)  # the bucket now holds two seconds of quota
    with pytest.raises(Exception, match="quota"):
        store.take_rows(a, 1)
    store.quota = 100  # a new rate keeps the burst in seconds: 200 rows
    clock.now += 10
    store.take_rows(a, 200)
    with pytest.raises(Exception, match="quota"):
        store.take_rows(a, 1)
    with pytest.raises(ValueError, match="quota_burst must be a positive number of seconds"):
        store.quota_burst = 0
    assert store.quota_burst == 2


def test_a_smaller_burst_refuses_back_to_back_requests_over_http(
    vikingdb_server_factory, make_client
) -> None:
    server = vikingdb_server_factory(quota=1000, quota_burst=0.1)
    server.load("test_coll", [{"id": i} for i in string_ids(300)])
    client = make_client(server)
    assert client.delete(ids=string_ids(100)).status_code == 200
    assert client.delete(ids=string_ids(200)[100:]).status_code == 429  # 100 rows held, all spent
    server.quota_burst = 1.0
    time.sleep(0.35)  # 350 rows refilled: more than the old bucket could hold
    assert [client.delete(ids=string_ids(300)[n : n + 100]).status_code for n in (100, 200)] == [200, 200]
    assert server.records("test_coll") == {}


def test_bucket_refusal_takes_nothing() -> None:
    bucket = TokenBucket(100, now=0.0)
    assert bucket.take(60, now=0.0)
    assert not bucket.take(50, now=0.0)
    assert bucket.take(40, now=0.0)


def test_request_larger_than_the_bucket_is_always_refused() -> None:
    bucket = TokenBucket(50, now=0.0)
    assert not bucket.take(100, now=100.0)


def test_store_quota_is_per_collection_and_settable() -> None:
    clock = FakeClock()
    store = Store(quota=100, clock=clock)
    a = store.add_collection("a")
    b = store.add_collection("b")
    store.take_rows(a, 100)
    store.take_rows(b, 100)  # b has its own bucket
    with pytest.raises(Exception, match="quota") as caught:
        store.take_rows(a, 1)
    assert (caught.value.status, caught.value.code) == (429, "QuotaExceeded")
    store.quota = None
    store.take_rows(a, 10_000)
    store.quota = 10
    clock.now += 1
    store.take_rows(a, 10)
    with pytest.raises(Exception, match="quota"):
        store.take_rows(a, 1)


def test_429_over_http_applies_nothing(vikingdb_server_factory, make_client) -> None:
    server = vikingdb_server_factory(quota=100)
    server.load("test_coll", [{"id": i} for i in string_ids(300)])
    client = make_client(server)
    assert client.delete(ids=string_ids(100)).status_code == 200
    # The bucket refills 100 rows/s: a second 100-row request right away cannot be covered.
    response = client.delete(ids=string_ids(200)[100:])
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "QuotaExceeded"
    assert sorted(server.records("test_coll")) == string_ids(300)[100:]
    # upsert and update draw on the same bucket
    assert client.upsert("test_coll", [{"id": i} for i in string_ids(100, "new_")]).status_code == 429
    assert "new_00000" not in server.records("test_coll")


def test_quota_can_be_changed_at_run_time(vikingdb_server, client) -> None:
    assert vikingdb_server.quota is None
    vikingdb_server.quota = 100
    assert client.delete(ids=string_ids(100)).status_code == 200
    assert client.delete(ids=string_ids(100)).status_code == 429
    vikingdb_server.quota = None
    assert client.delete(ids=string_ids(100)).status_code == 200


def test_del_all_costs_one_row(vikingdb_server_factory, make_client) -> None:
    assert DEL_ALL_ROWS == 1
    server = vikingdb_server_factory(quota=100)
    server.load("test_coll", [{"id": i} for i in string_ids(500)])
    client = make_client(server)
    assert client.delete(ids=string_ids(99, "x")).status_code == 200  # 1 row left
    assert client.delete(del_all=True).status_code == 200
    assert server.records("test_coll") == {}


def test_invalid_requests_do_not_use_quota(vikingdb_server_factory, make_client) -> None:
    server = vikingdb_server_factory(quota=100)
    client = make_client(server)
    for _ in range(5):
        assert client.delete(ids=[*string_ids(99), 1]).status_code == 400
    assert client.delete(ids=string_ids(100)).status_code == 200


def test_burst_of_concurrent_deletes(vikingdb_server_factory) -> None:
    """30 clients at once, 100 ids each, against the service's 1500 rows/s: some are refused,
    and exactly the refused requests' records are still there."""
    server = vikingdb_server_factory(quota=1500)
    batches = [string_ids(100, f"b{n:02d}_") for n in range(30)]
    server.load("test_coll", [{"id": i} for batch in batches for i in batch])
    statuses: dict[int, int] = {}
    start = threading.Barrier(len(batches))

    def send(n: int) -> None:
        client = SigningClient(server.url)
        try:
            prepared = client.prepare(
                "/api/vikingdb/data/delete", {"collection_name": "test_coll", "ids": batches[n]}
            )
            start.wait()
            statuses[n] = client.send(prepared).status_code
        finally:
            client.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == list(range(30))
    assert set(statuses.values()) <= {200, 429}
    accepted = [n for n, status in statuses.items() if status == 200]
    refused = [n for n, status in statuses.items() if status == 429]
    assert accepted and refused
    assert len(accepted) >= 15  # the bucket starts full
    remaining = server.records("test_coll")
    for n in refused:
        assert all(i in remaining for i in batches[n]), f"refused request {n} was applied"
    for n in accepted:
        assert not any(i in remaining for i in batches[n]), f"accepted request {n} was not applied"
    assert len(remaining) == 100 * len(refused)
    codes = {r.code for r in server.requests if r.status == 429}
    assert codes == {"QuotaExceeded"}
