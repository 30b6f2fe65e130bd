"""Deletion receipts: one line per acknowledged batch, a final line, written also on failure."""

from __future__ import annotations

import json
import re
import socket
import threading

import pytest

from airflow_provider_vikingdb.receipts import Receipt, ReceiptError, read_receipt, run_info


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batches_then_a_final_line_with_counts_and_summary(tmp_path):
    path = tmp_path / "sub" / "r.jsonl"
    with Receipt.open(f"file://{path}", target="collection 'docs'", run={"run_id": "r1"}, requested=3) as r:
        r.batch(["a", "b"], "req-1")
        r.on_batch(["c"], {"request_id": "req-2", "code": "Success"})
        r.finish("success", {"ids_deleted": 3})
    first, second, final = lines(path)
    assert (first["kind"], first["ids"], first["request_id"]) == ("batch", ["a", "b"], "req-1")
    assert first["time"].endswith("Z") and second["ids"] == ["c"] and second["request_id"] == "req-2"
    assert final["kind"] == "final" and final["outcome"] == "success"
    assert final["counts"] == {"ids_deleted": 3, "batches": 2, "ids_requested": 3}
    assert final["run"] == {"run_id": "r1"} and final["summary"] == {"ids_deleted": 3}
    assert read_receipt(str(path)) == [first, second, final]


def test_an_error_in_the_block_writes_a_failed_final_line_with_what_was_done(tmp_path):
    path = tmp_path / "r.jsonl"
    with pytest.raises(RuntimeError), Receipt.open(str(path), target="t") as r:
        r.batch([1, 2], "req-1")
        raise RuntimeError("batch 2 of 3 failed")
    final = lines(path)[-1]
    assert final["outcome"] == "failed" and final["error"] == "RuntimeError: batch 2 of 3 failed"
    assert final["counts"] == {"ids_deleted": 2, "batches": 1, "ids_unknown": 0}


def test_an_interruption_is_not_a_failure(tmp_path):
    path = tmp_path / "r.jsonl"
    with pytest.raises(KeyboardInterrupt), Receipt.open(str(path), target="t"):
        raise KeyboardInterrupt
    assert lines(path)[-1]["outcome"] == "interrupted"


def test_leaving_normally_finishes_once_as_success(tmp_path):
    path = tmp_path / "r.jsonl"
    with Receipt.open(str(path), target="t") as r:
        r.delete_all("req-9", records_before=7)
    batch, final = lines(path)
    assert batch["del_all"] is True and batch["ids"] is None and batch["records_before"] == 7
    assert final["outcome"] == "success" and final["counts"] == {
        "ids_deleted": 0,
        "batches": 1,
        "del_all": True,
    }


def test_a_local_receipt_is_appended_to_by_a_second_try(tmp_path):
    path = tmp_path / "r.jsonl"
    for attempt in (1, 2):
        with Receipt.open(str(path), target="t", run={"try_number": attempt}) as r:
            r.batch([attempt], f"req-{attempt}")
    assert [(x["kind"], x.get("run")) for x in lines(path)] == [
        ("batch", None),
        ("final", {"try_number": 1}),
        ("batch", None),
        ("final", {"try_number": 2}),
    ]


def test_concurrent_batches_each_write_one_whole_line(tmp_path):
    path = tmp_path / "r.jsonl"
    with Receipt.open(str(path), target="t") as r:
        threads = [
            threading.Thread(target=lambda n=n: r.batch(list(range(n * 100, n * 100 + 100)), f"q{n}"))
            for n in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    written = lines(path)
    ids = [i for x in written[:-1] for i in x["ids"]]
    assert sorted(ids) == list(range(800)) and written[-1]["counts"]["batches"] == 8


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("relative/r.jsonl", "is a relative path"),
        ("", "receipt rendered to ''"),
        # refused when the path is made (Airflow 3.2+) or when it is first written (3.1)
        ("nosuchscheme://bucket/r.jsonl", r"(cannot be opened|cannot write the receipt).*nosuchscheme"),
    ],
)
def test_bad_places_fail_before_anything_is_written(where, message):
    with pytest.raises(ReceiptError) as info:
        Receipt.open(where, target="t")
    assert re.search(message, str(info.value)), str(info.value)


def test_a_receipt_that_cannot_be_created_fails_on_open(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ReceiptError) as info:
        Receipt.open(str(blocker / "r.jsonl"), target="t")
    assert "cannot write the receipt" in str(info.value)


def test_run_info_reads_the_task_instance():
    class TI:
        dag_id, task_id, run_id, try_number, map_index = "d", "t", "manual__1", 2, -1

    assert run_info({"ti": TI()}) == {
        "dag_id": "d",
        "task_id": "t",
        "run_id": "manual__1",
        "try_number": 2,
        "map_index": -1,
    }
    assert run_info({}) == {}


def test_an_object_store_receipt_is_never_overwritten():
    # docs/operators.md: "An object store cannot append: there an existing receipt is never
    # overwritten and the task fails first". fsspec's in-memory filesystem stands in for S3.
    import uuid

    import fsspec
    from airflow.sdk.io import attach

    store = fsspec.filesystem("memory")
    attach("memory", fs=store)
    uri = f"memory://receipts/{uuid.uuid4().hex}.jsonl"
    with Receipt.open(uri, target="t") as first_try:
        first_try.batch(["a", "b"], "req-1")
    evidence = store.cat(uri)
    with pytest.raises(ReceiptError, match=r"exists already.*ti\.try_number"):
        Receipt.open(uri, target="t")
    assert store.cat(uri) == evidence  # the first try's receipt is intact
    assert json.loads(evidence.splitlines()[-1])["outcome"] == "success"


@pytest.mark.parametrize(
    ("failure", "retryable"),
    [
        (ConnectionError("connection reset by peer"), True),
        (TimeoutError("read timed out"), True),
        (PermissionError("access denied"), False),
        (OSError(101, "Network is unreachable"), True),
        (socket.gaierror(-2, "Name or service not known"), True),
        (OSError(28, "No space left on device"), False),
        # botocore's: EndpointConnectionError < its own ConnectionError < BotoCoreError, not Python's
        (type("EndpointConnectionError", (type("ConnectionError", (Exception,), {}),), {})("no route"), True),
        (type("ReadTimeoutError", (Exception,), {})("read timed out"), True),
        (type("NoCredentialsError", (Exception,), {})("unable to locate credentials"), False),
        # botocore's and requests' SSLError derive from their ConnectionError: a certificate that
        # does not verify fails the same way on every try
        (type("SSLError", (type("ConnectionError", (Exception,), {}),), {})("cert verify failed"), False),
    ],
    ids=[
        "reset",
        "timeout",
        "denied",
        "net-unreachable",
        "dns",
        "disk-full",
        "boto-endpoint",
        "boto-read-timeout",
        "boto-credentials",
        "boto-tls",
    ],
)
def test_a_store_that_cannot_be_reached_is_worth_another_try_a_refusal_is_not(
    flaky_store, failure, retryable
):
    # docs/operators.md, Retries: an object store that could not be reached fails only the try.
    flaky_store.failures = [failure]
    uri = "flaky://flaky-bucket/r.jsonl"
    with pytest.raises(ReceiptError) as info:
        Receipt.open(uri, target="t")
    assert info.value.retryable is retryable
    # (Airflow 3.1's path classes spell an unknown scheme's URI their own way: flaky:///flaky:/...)
    assert re.search(
        rf"cannot write the receipt flaky:\S*flaky-bucket/r\.jsonl: {type(failure).__name__}:",
        str(info.value),
    )
    assert flaky_store.receipts() == []


def test_a_batch_line_that_cannot_be_written_is_not_counted_deleted(tmp_path):
    # The store is full for one write: batch 2's line fails, so the batch pool reports that batch
    # as outcome unknown (it was applied, its line is missing). The final counts must add up: it
    # is unknown, not deleted as well.
    path = tmp_path / "r.jsonl"
    real = path.open("a", encoding="utf-8")

    class FullOnce:
        writes = 0

        def write(self, text):
            FullOnce.writes += 1
            if FullOnce.writes == 2:
                raise OSError(28, "No space left on device")
            return real.write(text)

        def flush(self):
            real.flush()

        def close(self):
            real.close()

    with pytest.raises(OSError), Receipt(FullOnce(), uri=str(path), target="t", requested=6) as r:
        r.batch(["a", "b"], "req-1")
        try:
            r.batch(["c", "d"], "req-2")
        except OSError:
            r.unknown(["c", "d"])  # as the batch pool does for that batch
            raise
    final = lines(path)[-1]
    assert [line["kind"] for line in lines(path)] == ["batch", "unknown", "final"]
    assert final["counts"] == {
        "ids_deleted": 2,
        "batches": 1,
        "ids_requested": 6,
        "ids_unknown": 2,
        "ids_not_deleted": 2,
    }
