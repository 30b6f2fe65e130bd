"""Faults below HTTP, against the local server: cut answers, trickling servers, interrupts, TLS.

Each test states what a user relies on: a transient fault is retried with a fresh
signature, a call never outlives ``timeout x (max_retries + 1)`` plus backoff, an
interrupted task stops sending and says what was done, and no error carries a secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import threading
import time

import pytest

from airflow_provider_vikingdb.exceptions import VikingDBBatchError, VikingDBError
from airflow_provider_vikingdb.hooks.vikingdb import DELETE_PATH, FETCH_IN_INDEX_PATH, VikingDBHook
from tests.conftest import Interrupted
from tests.hooks.conftest import API_KEY, SESSION_TOKEN, SK


@pytest.fixture
def server(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(collections=("test_coll",), ak="AK", sk=SK)
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    return srv


def use_connection(server, monkeypatch, *, drop=(), **extra):
    conn = json.loads(server.connection_json())
    if "scheme" in extra:  # the local server's connection gives its scheme in the host URL
        conn["host"] = conn["host"].replace("http://", f"{extra.pop('scheme')}://")
    conn["extra"].update(extra)
    for key in drop:
        conn.pop(key, None)
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))


def deletes(server):
    return [r for r in server.requests if r.path == DELETE_PATH]


def load(server, n):
    ids = [f"r{i}" for i in range(n)]
    server.load("test_coll", [{"id": i} for i in ids])
    return ids


# ---------------------------------------------------------------- cut answers


@pytest.mark.parametrize("applied", [False, True])
@pytest.mark.parametrize("where", ["body", "status", "headers"])
def test_an_answer_cut_short_is_retried_with_a_fresh_signature(server, where, applied):
    load(server, 3)
    server.cut_next(DELETE_PATH, where=where, applied=applied)
    hook = VikingDBHook()
    hook._sleep = lambda s: None
    result = hook.delete(["r0", "r1", "r2"], collection_name="test_coll")
    assert result.ids_deleted == 3 and result.retries == 1
    attempts = deletes(server)
    assert len(attempts) == 2
    assert all(r.auth_ok for r in attempts)  # the second attempt is validly signed too
    assert server.records("test_coll") == {}


def test_a_trickling_server_cannot_hold_a_call_past_its_deadline(server, monkeypatch):
    use_connection(server, monkeypatch, timeout=1, max_retries=1)
    server.trickle_next(DELETE_PATH, times=2, interval=0.5)
    hook = VikingDBHook()
    started = time.monotonic()
    with pytest.raises(VikingDBError) as info:
        hook.request(DELETE_PATH, {"collection_name": "test_coll", "ids": ["a"]})
    elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed  # timeout x (max_retries + 1) + one backoff of at most 0.5 s
    assert info.value.code == "Timeout"
    assert "no complete answer within 1s" in str(info.value)
    assert len(deletes(server)) == 2


# ---------------------------------------------------------------- no connection: nothing was sent

UNRESOLVABLE = "https://no-such-host.invalid"  # RFC 6761: .invalid resolves nowhere, no network needed


def use_host(monkeypatch, host, **extra):
    conn = {"conn_type": "vikingdb", "host": host, "login": "AK", "password": SK}
    conn["extra"] = {"region": "cn-beijing", **extra}
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))


def sync_error(**hook_attrs):
    hook = VikingDBHook()
    hook._sleep = hook_attrs.get("sleep", lambda s: None)
    with pytest.raises(VikingDBError) as info:
        hook.request(DELETE_PATH, {"collection_name": "test_coll", "ids": ["a"]})
    return info.value


def async_error():
    async def go():
        async with VikingDBHook() as hook:
            await hook.arequest(DELETE_PATH, {"collection_name": "test_coll", "ids": ["a"]})

    with pytest.raises(VikingDBError) as info:
        asyncio.run(go())
    return info.value


def test_a_host_that_does_not_resolve_is_unreachable_not_an_answer_cut_short(monkeypatch):
    use_host(monkeypatch, UNRESOLVABLE, max_retries=2)
    delays = []
    error = sync_error(sleep=delays.append)
    assert error.code == "ConnectionError" and error.retryable
    expected = f"could not reach {UNRESOLVABLE}: the host name does not resolve ("
    assert error.message.startswith(expected), error.message
    assert "broke before the answer" not in str(error)
    assert len(delays) == 2  # transient (DNS may come back): retried like a refused connection


def test_a_refused_connection_is_retried_then_named(monkeypatch):
    from airflow_provider_vikingdb.exceptions import VikingDBConnectionError

    use_host(monkeypatch, "http://127.0.0.1:9", max_retries=3, timeout=2)  # discard port: nothing listens
    delays = []
    error = sync_error(sleep=delays.append)
    assert isinstance(error, VikingDBConnectionError) and error.code == "ConnectionError"
    assert "could not reach http://127.0.0.1:9" in str(error) and len(delays) == 3


def test_the_async_path_says_the_same_of_a_host_that_does_not_resolve(monkeypatch):
    use_host(monkeypatch, UNRESOLVABLE, max_retries=1)
    retries = []
    real = VikingDBHook._log_retry
    monkeypatch.setattr(
        VikingDBHook,
        "_log_retry",
        lambda self, *a, **kw: (retries.append(a[3].describe(a[2])), real(self, *a, **kw)),
    )
    error = async_error()
    assert error.code == "ConnectionError" and error.retryable
    assert retries == ["retry 1/1"]
    assert str(error) == str(sync_error())  # word for word, whichever client met it


def _unanswered_port():
    """A listening port whose accept queue is full: the kernel drops new SYNs, so connecting times out."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = [listener]
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        held.append(filler)
    time.sleep(0.1)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
    except (TimeoutError, OSError) as exc:
        if not isinstance(exc, TimeoutError):
            pytest.skip(f"this kernel refuses instead of dropping SYNs on a full queue: {exc!r}")
    else:
        pytest.skip("this kernel accepted a connection on a full accept queue")
    finally:
        probe.close()
    return port, held


def test_a_connect_timeout_is_unreachable_in_both_clients():
    import httpx
    import requests

    from airflow_provider_vikingdb.connection import parse_connection
    from airflow_provider_vikingdb.transport import (
        classify_httpx_error,
        classify_requests_error,
        transport_error,
    )

    port, held = _unanswered_port()
    url = f"http://127.0.0.1:{port}"
    cfg = parse_connection(
        conn_id="c", host=url, port=None, login="AK", password=SK, extra={"region": "cn-beijing"}
    )
    try:
        with pytest.raises(requests.ConnectTimeout) as sync_info:
            requests.post(url, data=b"{}", timeout=(0.3, 5))

        async def go():
            async with httpx.AsyncClient(timeout=httpx.Timeout(5, connect=0.3)) as client:
                await client.post(url, content=b"{}")

        with pytest.raises(httpx.ConnectTimeout) as async_info:
            asyncio.run(go())
    finally:
        for sock in held:
            sock.close()
    errors = [
        transport_error(*classify(info.value), cfg, DELETE_PATH)
        for classify, info in ((classify_requests_error, sync_info), (classify_httpx_error, async_info))
    ]
    for error in errors:
        assert error.code == "ConnectionError" and error.retryable
        assert error.message == f"could not reach {url}: no connection within the connect timeout"


@pytest.mark.parametrize("client", ["requests", "httpx"])
def test_a_short_timeout_still_says_the_host_could_not_be_reached(monkeypatch, client):
    # timeout <= 10 s: the connect phase is bounded by nearly the whole attempt's deadline; a host
    # that does not answer is still "could not reach" (nothing sent), not "deadline passed".
    port, held = _unanswered_port()
    try:
        # 2 s: the connect phase ends at 1.8 s, 0.2 s before the attempt's deadline (at 0.5 s the
        # 50 ms between them could be lost on a loaded machine, and the deadline fire first)
        use_host(monkeypatch, f"http://127.0.0.1:{port}", max_retries=0, timeout=2.0)
        error = sync_error() if client == "requests" else async_error()
    finally:
        for sock in held:
            sock.close()
    assert error.code == "ConnectionError", error
    assert "no connection within the connect timeout" in error.message


@pytest.mark.parametrize("client", ["requests", "httpx"])
def test_a_connection_closed_after_the_request_was_sent_is_an_incomplete_answer(server, monkeypatch, client):
    # The other side of the line: the request went out, so it may have been applied.
    use_connection(server, monkeypatch, max_retries=0)
    server.drop_next(DELETE_PATH)
    error = sync_error() if client == "requests" else async_error()
    assert error.code == "IncompleteAnswer" and error.retryable
    assert f"the connection to {server.url} broke before the answer was complete" in str(error)
    assert len(deletes(server)) == 1


def test_a_long_detail_is_shortened_at_a_word_boundary_and_says_so():
    from airflow_provider_vikingdb.transport import first_line, shorten

    words = [f"word{n:03d}" for n in range(80)]  # 639 characters
    detail = first_line(OSError(" ".join(words)))
    assert detail.startswith("OSError: word000 word001") and detail.endswith(" …")
    assert len(detail) <= len("OSError: ") + 300
    assert all(word in words for word in detail.removeprefix("OSError: ").removesuffix(" …").split(" "))
    assert shorten("short enough") == "short enough"


# ---------------------------------------------------------------- lost answers: outcome unknown


def wait_for_records(server, expected, seconds=5.0):
    """The collection's ids once they are ``expected`` (a stalled request is applied after its stall)."""
    deadline = time.monotonic() + seconds
    while sorted(server.records("test_coll")) != sorted(expected) and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(server.records("test_coll"))


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_middle_batch_whose_answer_was_lost_is_outcome_unknown_not_undone(server, monkeypatch, fault):
    ids = load(server, 500)
    if fault == "cut":  # every attempt of batch 3 is applied, and its answer cut off
        use_connection(server, monkeypatch, max_retries=1)
        server.cut_next(DELETE_PATH, where="body", applied=True, times=2, after=2)
    else:  # batch 3 outlives the timeout; the server applies it after the client gave up
        use_connection(server, monkeypatch, max_retries=0, timeout=1)
        server.stall_next(DELETE_PATH, seconds=2, after=2)
    hook = VikingDBHook()
    hook._sleep = lambda delay: None
    unknown_batches = []
    with pytest.raises(VikingDBBatchError) as info:
        hook.delete(
            ids,
            collection_name="test_coll",
            max_concurrency=1,
            on_unknown=lambda batch, error: unknown_batches.append((list(batch), error.code)),
        )
    err = info.value
    code = "IncompleteAnswer" if fault == "cut" else "Timeout"
    assert err.code == code and err.cause.maybe_applied
    assert (err.done_ids, err.unknown_ids, err.not_done_ids) == (ids[:200], ids[200:300], ids[300:])
    assert unknown_batches == [(ids[200:300], code)]
    # ... and that is what the server did: batch 3 was applied, batches 4 and 5 never sent
    assert wait_for_records(server, ids[300:]) == ids[300:]
    sent = 2 + 2 if fault == "cut" else 2 + 1
    deadline = time.monotonic() + 5  # the server logs a request after it has applied it
    while len(deletes(server)) < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(deletes(server)) == sent
    text = str(err)
    assert f"batch 3 of 5 failed with VikingDB {code}" in text
    assert "200 of 500 ids acknowledged in 2 of 5 batches" in text
    assert "outcome unknown: 100 ids (first: 'r200'" in text
    assert "the service may have applied them" in text
    assert "not deleted (refused, or never sent): 200 ids (first: 'r300'" in text
    assert "Not done" not in text and ".." not in text.replace(", ...)", "")
    assert text.endswith("Deletes are idempotent: clearing the task (or an Airflow retry) sends all of them "
                         "again, those already applied included, and finishes the job if its "
                         "execution_timeout leaves it the time.")  # fmt: skip


def test_a_batch_stays_unknown_when_an_earlier_attempt_lost_its_answer(server, monkeypatch):
    ids = load(server, 300)
    use_connection(server, monkeypatch, max_retries=2)
    # batch 2: its first attempt is applied and the answer cut; the two retries get a 503
    server.cut_next(DELETE_PATH, where="body", applied=True, after=1)
    server.fail_next(DELETE_PATH, status=503, code="InternalError", times=2)
    hook = VikingDBHook()
    hook._sleep = lambda delay: None
    with pytest.raises(VikingDBBatchError) as info:
        hook.delete(ids, collection_name="test_coll", max_concurrency=1)
    err = info.value
    assert err.cause.http_status == 503 and not err.cause.answer_lost and err.cause.maybe_applied
    assert (err.done_ids, err.unknown_ids, err.not_done_ids) == (ids[:100], ids[100:200], ids[200:])
    assert sorted(server.records("test_coll")) == ids[200:]


GATEWAY_PAGES = {
    504: "<html><head><title>504 Gateway Time-out</title></head><body><center>nginx</center></body></html>",
    502: "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>",
}


@pytest.mark.parametrize("status", [504, 502])
def test_a_batch_answered_by_a_gateways_page_after_it_was_applied_is_outcome_unknown(
    server, monkeypatch, status
):
    # A load balancer in front of the service gave up on batch 2 (every attempt) after the
    # service had deleted its ids: that batch may have been applied, so it is not "not deleted".
    ids = load(server, 300)
    use_connection(server, monkeypatch, max_retries=2)
    server.fail_next(DELETE_PATH, status=status, body=GATEWAY_PAGES[status], applied=True, times=3, after=1)
    hook = VikingDBHook()
    hook._sleep = lambda delay: None
    with pytest.raises(VikingDBBatchError) as info:
        hook.delete(ids, collection_name="test_coll", max_concurrency=1)
    err = info.value
    assert (err.done_ids, err.unknown_ids, err.not_done_ids) == (ids[:100], ids[100:200], ids[200:])
    assert sorted(server.records("test_coll")) == ids[200:]  # the server did delete batch 2
    assert [r.status for r in deletes(server)] == [200, status, status, status]  # 2 retries, then gave up
    text = str(err)
    assert f"batch 2 of 3 failed with VikingDB HTTP {status} BadResponse" in text
    assert f"a gateway answered {status} in the service's place: the request may have reached" in text
    assert "100 of 300 ids acknowledged in 1 of 3 batches; outcome unknown: 100 ids (first: 'r100'" in text
    assert "not deleted (refused, or never sent): 100 ids (first: 'r200'" in text
    assert "clearing the task (or an Airflow retry) sends all of them again" in text


def test_a_refused_or_unreachable_request_was_not_applied_and_a_lost_answer_may_have_been():
    from airflow_provider_vikingdb.exceptions import VikingDBConnectionError, VikingDBInterruptedError

    def lost(code):
        return VikingDBConnectionError("x", code=code).maybe_applied

    assert [lost(c) for c in ("IncompleteAnswer", "Timeout", "BadResponse")] == [True, True, True]
    assert lost("ConnectionError") is False  # could not reach the host: nothing was sent
    assert VikingDBError("x", code="InternalError", http_status=503).maybe_applied is False
    assert VikingDBError("x", code="InvalidParameter", http_status=400).maybe_applied is False
    assert VikingDBInterruptedError(in_flight=True).maybe_applied is True
    assert VikingDBInterruptedError().maybe_applied is False


def test_a_tls_hint_quoted_in_a_batch_error_ends_with_one_full_stop(server, monkeypatch):
    use_connection(server, monkeypatch, scheme="https")
    with pytest.raises(VikingDBBatchError) as info:
        VikingDBHook().delete(["a"], collection_name="test_coll")
    text = str(info.value)
    assert "(or give the host as an http:// URL). 0 of 1 id acknowledged in 0 of 1 batch;" in text
    assert ".." not in text
    assert "not deleted (refused, or never sent): 1 id (first: 'a')." in text
    assert text.endswith("Fix the cause above, then clear the task: deletes are idempotent, so what was "
                         "already applied is harmless to send again.")  # fmt: skip


# ---------------------------------------------------------------- interrupts


def test_an_interrupt_while_the_workers_start_is_reported_like_any_other(server, monkeypatch, caplog, capfd):
    # SIGTERM or the execution timeout can land while the pool is starting its workers: the
    # report must not trip over a worker that was never started.
    ids = load(server, 250)
    start = threading.Thread.start
    started: list[threading.Thread] = []

    def start_then_interrupt(thread):
        if thread.name.startswith("vikingdb-delete"):
            if started:
                raise Interrupted  # as a signal handler raises, between two starts
            started.append(thread)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
    with pytest.raises(Interrupted):
        VikingDBHook(max_concurrency=8).delete(ids, collection_name="test_coll")
    monkeypatch.undo()
    out, err = capfd.readouterr()
    logged = "\n".join([caplog.text, out, err])
    assert re.search(r"interrupted: \d+ of 250 ids acknowledged in \d of 3 batches", logged), logged[-2000:]


def test_an_interrupt_stops_every_batch_at_once_and_says_what_was_done(server, caplog, capfd):
    ids = load(server, 250)
    server.stall_next(DELETE_PATH, times=50, seconds=30, after=1)  # the first batch gets through
    hook = VikingDBHook(max_concurrency=8)

    def interrupt(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    started = time.monotonic()
    try:
        with pytest.raises(Interrupted):
            hook.delete(ids, collection_name="test_coll")
        surfaced = time.monotonic() - started
        interrupted_at = time.time()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert surfaced < 1.0 + 2.0, surfaced
    out, err = capfd.readouterr()
    logged = "\n".join([caplog.text, out, err])
    line = next(text for text in logged.splitlines() if "interrupted:" in text)
    assert "100 of 250 ids acknowledged in 1 of 3 batches" in line
    # both stalled batches were sent and never answered: they may have been applied
    assert "outcome unknown: 150 ids (first: 'r100'" in line
    assert "in flight when interrupted" in line
    assert "not deleted (refused, or never sent): 0 ids." in line
    # no worker starts a new batch or a retry afterwards
    time.sleep(1.5)
    assert len(deletes(server)) <= 3
    assert all(r.time <= interrupted_at for r in deletes(server))
    assert not [t for t in threading.enumerate() if t.name.startswith("vikingdb-delete")]


def test_a_batch_waiting_for_the_rate_limiter_when_interrupted_was_never_sent(
    server, interrupt, caplog, capfd
):
    # 50 rows/s: batch 2 waits 2 s for the limiter after batch 1. Interrupted in that wait, it
    # was never sent: "not deleted", not "outcome unknown" (which would ask a rollback or an
    # audit to treat those ids as maybe deleted).
    ids = load(server, 300)
    hook = VikingDBHook(max_concurrency=1, rows_per_second=50)
    interrupt.when(lambda: any(r.status == 200 for r in deletes(server)), then=0.3)  # after batch 1
    with pytest.raises(Interrupted):
        hook.delete(ids, collection_name="test_coll")
    out, err = capfd.readouterr()
    line = next(text for text in "\n".join([caplog.text, out, err]).splitlines() if "interrupted:" in text)
    assert "100 of 300 ids acknowledged in 1 of 3 batches; outcome unknown: 0 ids;" in line
    assert "not deleted (refused, or never sent): 200 ids (first: 'r100'" in line
    time.sleep(2.5)  # when batch 2 would have gone
    assert len(deletes(server)) == 1 and len(server.records("test_coll")) == 200
    hook.close()


# ---------------------------------------------------------------- secrets in errors


@pytest.mark.parametrize("secret_field", ["api_key", "session_token"])
def test_a_proxy_page_echoing_the_auth_headers_is_quoted_without_them(server, monkeypatch, secret_field):
    if secret_field == "api_key":
        server.verifier.api_key = API_KEY
        use_connection(server, monkeypatch, api_key=API_KEY)
    else:
        use_connection(server, monkeypatch, session_token=SESSION_TOKEN)
    server.fail_next(DELETE_PATH, status=400, echo_headers=True, headers={"X-Tt-Logid": "rid-proxy-1"})
    with pytest.raises(VikingDBError) as info:
        VikingDBHook().request(DELETE_PATH, {"collection_name": "test_coll", "ids": ["a"]})
    text = str(info.value)
    assert "HTTP 400" in text and "rid-proxy-1" in text
    assert "Your request" in text  # the page is quoted (its start)...
    assert API_KEY not in text and SESSION_TOKEN not in text and SK not in text  # ...without the secrets


def test_quoted_pages_have_secrets_and_auth_header_values_removed():
    from airflow_provider_vikingdb.transport import Answer, read_envelope

    page = (
        f"<pre>Authorization: Bearer {API_KEY}\nX-Security-Token: {SESSION_TOKEN}\n"
        f"Authorization: HMAC-SHA256 Credential=AK/20250101/cn-beijing/vikingdb/request, Signature=abc</pre>"
    ).encode()
    _, error = read_envelope(Answer(502, page, {}), DELETE_PATH, secrets=(API_KEY, SESSION_TOKEN))
    text = str(error)
    assert "Authorization: ***" in text and "X-Security-Token: ***" in text
    assert API_KEY not in text and SESSION_TOKEN not in text and "Signature=abc" not in text
    # even a secret the connection does not know of is gone when it is an auth header's value
    _, error = read_envelope(Answer(502, b"authorization=Bearer other-key-123", {}), DELETE_PATH)
    assert "other-key-123" not in str(error)


def test_a_gateways_json_page_echoing_the_auth_headers_is_quoted_without_them():
    # A 502/504 that is not an envelope is quoted whole (outcome unknown), and a gateway may answer
    # JSON that echoes the request's headers. JSON puts a quote between a header's name and its
    # colon, and may write an STS token's "/" as "\/": neither may let a secret through.
    from airflow_provider_vikingdb.transport import Answer, read_envelope

    token = "STS2eyJhYi9jZCtlZg/xyz+abc=="  # base64, as real STS tokens are: "/" and "+"
    escaped = token.replace("/", "\\/")  # what the gateway wrote
    pages = [
        f'{{"X-Security-Token": "{escaped}", "message": "Endpoint request timed out"}}',
        '{"Authorization":"HMAC-SHA256 Credential=AK/20250101/cn-beijing/vikingdb/request, Signature=abc"}',
        f'{{"message": "Endpoint request timed out for token {escaped}"}}',
    ]
    for status in (502, 504):
        for page in pages:
            _, error = read_envelope(Answer(status, page.encode(), {}), DELETE_PATH, secrets=(token,))
            text = str(error)
            assert error.maybe_applied and page[:8] in text  # quoted...
            assert "xyz+abc" not in text and "Signature=abc" not in text  # ...without them
    _, error = read_envelope(Answer(504, pages[0].encode(), {}), DELETE_PATH, secrets=(token,))
    assert '"X-Security-Token": "***"' in str(error)


@pytest.mark.parametrize(
    "body",
    [
        # a proxy's page naming them in running text, not as the value of an auth header
        f"<p>Rejected token {SESSION_TOKEN} (key signed with {SK})</p>",
        # the service's own message quoting one
        json.dumps({"code": "InvalidParameter", "message": f"bad token {SESSION_TOKEN}, key {SK}"}),
    ],
    ids=["page", "message"],
)
def test_a_secret_quoted_anywhere_in_an_answer_is_replaced(server, monkeypatch, body):
    # docs/hook.md: "What an error quotes of such a page has the connection's secrets (SK, API
    # key, STS token) [...] replaced by ***" -- not only where a page echoes an auth header.
    use_connection(server, monkeypatch, session_token=SESSION_TOKEN)
    server.fail_next(DELETE_PATH, status=400, body=body)
    with pytest.raises(VikingDBError) as info:
        VikingDBHook().request(DELETE_PATH, {"collection_name": "test_coll", "ids": ["a"]})
    text = str(info.value)
    assert "HTTP 400" in text and "token ***" in text  # the answer is quoted...
    assert SESSION_TOKEN not in text and SK not in text  # ...without the secrets


def test_a_refused_connection_is_unreachable_whatever_wraps_the_refusal():
    # docs/hook.md: a refused address is "could not reach" (nothing was sent), never "broke
    # before the answer was complete", also when the refusal reaches requests under another
    # wrapper than urllib3's NewConnectionError.
    import requests
    from urllib3.exceptions import ProtocolError

    from airflow_provider_vikingdb.transport import UNREACHABLE, classify_requests_error

    refusal = ConnectionRefusedError(111, "Connection refused")
    for wrapped in (refusal, ProtocolError("Connection aborted.", refusal)):
        kind, reason = classify_requests_error(requests.ConnectionError(wrapped))
        assert (kind, reason) == (UNREACHABLE, "Connection refused")


def chain(exc):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def test_no_error_keeps_the_request_headers_in_its_chain(server, monkeypatch):
    server.verifier.api_key = API_KEY
    use_connection(server, monkeypatch, api_key=API_KEY, session_token=SESSION_TOKEN, scheme="https")
    with pytest.raises(VikingDBError) as info:
        VikingDBHook().request(DELETE_PATH, {"collection_name": "test_coll", "ids": ["a"]})
    assert info.value.code == "SSLError"
    for exc in chain(info.value):
        assert isinstance(exc, VikingDBError), f"a cause from below the provider is kept: {exc!r}"
        text = f"{exc!r} {exc} {vars(exc)}"
        assert API_KEY not in text and SESSION_TOKEN not in text


# ---------------------------------------------------------------- the async path


def test_tls_failure_ends_the_trigger_at_once_with_the_hooks_message(server, monkeypatch):
    from airflow_provider_vikingdb.triggers.vikingdb import VikingDBIndexSyncTrigger

    use_connection(server, monkeypatch, scheme="https")
    with pytest.raises(VikingDBError) as info:
        VikingDBHook().request(FETCH_IN_INDEX_PATH, {"collection_name": "test_coll", "ids": ["a"]})
    trigger = VikingDBIndexSyncTrigger(
        target={"collection_name": "test_coll"},
        index_name="test_coll_index",
        ids=["a"],
        deadline=time.time() + 30,
        poke_interval=0.1,
    )

    async def first():
        return await anext(trigger.run())

    started = time.monotonic()
    event = asyncio.run(first()).payload
    assert time.monotonic() - started < 5
    assert event["status"] == "error" and event["code"] == "SSLError"
    assert info.value.message in event["message"]  # the same words as the hook's
    assert "set the connection's extra 'scheme' to 'http'" in event["message"]


def test_the_async_path_retries_a_cut_answer_and_bounds_a_trickle(server, monkeypatch):
    server.load("test_coll", [{"id": "a"}])
    server.cut_next(FETCH_IN_INDEX_PATH, where="body")

    async def fetch(hook):
        async with hook:
            return await hook.arequest(
                FETCH_IN_INDEX_PATH,
                {"collection_name": "test_coll", "index_name": "test_coll_index", "ids": ["a"]},
            )

    hook = VikingDBHook()
    envelope = asyncio.run(fetch(hook))
    assert [r["id"] for r in envelope["result"]["fetch"]] == ["a"]
    looks = [r for r in server.requests if r.path == FETCH_IN_INDEX_PATH]
    assert len(looks) == 2 and all(r.auth_ok for r in looks)

    use_connection(server, monkeypatch, timeout=1, max_retries=1)
    server.trickle_next(FETCH_IN_INDEX_PATH, times=2, interval=0.5)
    started = time.monotonic()
    with pytest.raises(VikingDBError) as info:
        asyncio.run(fetch(VikingDBHook()))
    assert time.monotonic() - started < 5
    assert info.value.code == "Timeout" and "no complete answer within 1s" in str(info.value)


def test_both_paths_read_the_ca_bundle_from_the_environment(server, monkeypatch, tmp_path):
    from airflow_provider_vikingdb.exceptions import VikingDBConfigError

    use_connection(server, monkeypatch, scheme="https")
    missing = str(tmp_path / "no-such-ca.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", missing)
    with pytest.raises(VikingDBConfigError, match="REQUESTS_CA_BUNDLE") as sync_info:
        VikingDBHook().request(DELETE_PATH, {"collection_name": "test_coll", "ids": ["a"]})

    async def go():
        async with VikingDBHook() as hook:
            await hook.arequest(DELETE_PATH, {"collection_name": "test_coll", "ids": ["a"]})

    with pytest.raises(VikingDBConfigError) as async_info:
        asyncio.run(go())
    assert str(async_info.value) == str(sync_info.value)
    assert server.requests == []


# ---------------------------------------------------------------- masking


def test_reading_the_connection_masks_only_its_secrets(server, monkeypatch, caplog, capfd):
    from airflow_provider_vikingdb import _compat

    caplog.set_level(logging.DEBUG)
    masked = []
    real = _compat.mask_secret
    monkeypatch.setattr(_compat, "mask_secret", lambda value: (masked.append(value), real(value)))
    use_connection(server, monkeypatch, session_token=SESSION_TOKEN, timeout=5, max_retries=2)
    VikingDBHook().delete(["a"], collection_name="test_coll")
    assert sorted(masked) == sorted([SK, SESSION_TOKEN])  # not "http", "cn-beijing", 5, 2
    out, err = capfd.readouterr()
    assert "too short" not in caplog.text + out + err


def _rearm_short_secret_warning(monkeypatch):
    """Airflow warns about a too-short secret once per process: make this test see it again."""
    import importlib

    found = 0
    for module in (
        "airflow.sdk._shared.secrets_masker.secrets_masker",  # Airflow 3.2+
        "airflow.sdk.execution_time.secrets_masker",  # Airflow 3.1
        "airflow._shared.secrets_masker.secrets_masker",
    ):
        try:
            masker_class = importlib.import_module(module).SecretsMasker
        except (ImportError, AttributeError):
            continue
        monkeypatch.setattr(masker_class, "_has_warned_short_secret", False, raising=False)
        found += 1
    assert found, "no SecretsMasker found: the test would check nothing"


def too_short_warned(vikingdb_server_factory, monkeypatch, capfd, caplog, *, sk=SK, host=None, **extra):
    """Whether Airflow warns "too short" for the local server's connection changed as given."""
    server = vikingdb_server_factory(collections=("test_coll",), sk=sk)
    conn = json.loads(server.connection_json())
    conn["extra"].update(extra)
    if host is not None:
        conn["host"] = host
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    capfd.readouterr()
    caplog.clear()
    _rearm_short_secret_warning(monkeypatch)
    VikingDBHook().delete(["a"], collection_name="test_coll")
    out, err = capfd.readouterr()
    return "too short" in caplog.text + out + err


@pytest.mark.parametrize(
    ("change", "warns"),
    [
        # the local server's connection: a long SK, the scheme in the host URL, login "AK" (never
        # registered with the masker, so its length does not matter), region "cn-beijing"
        ({}, False),
        ({"timeout": 30, "max_retries": 2, "verify": False}, False),  # numbers and booleans as such
        # any one value shorter than 5 characters that Airflow registers is enough
        ({"sk": "SK"}, True),  # the local server's default SK
        ({"host": "127.0.0.1", "scheme": "http"}, True),
        ({"timeout": "30"}, True),  # text, as a URI's query gives it
        ({"verify": "true"}, True),
    ],
    ids=["docs", "typed-extras", "short-sk", "scheme-extra", "timeout-text", "verify-text"],
)
def test_what_makes_airflow_warn_that_a_secret_is_too_short(
    vikingdb_server_factory, monkeypatch, capfd, caplog, change, warns
):
    # The warning is Airflow's own: reading a connection masks its password and every extra value
    # (docs/connection.md says which values cause it; this is the list).
    caplog.set_level(logging.DEBUG)
    assert too_short_warned(vikingdb_server_factory, monkeypatch, capfd, caplog, **change) is warns


def _docs_local_connection(page):
    from tests.conftest import ROOT

    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    (block,) = [
        b
        for b in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)
        if b.startswith("export ") and "127.0.0.1" in b
    ]
    return json.loads(block.split("=", 1)[1].strip().strip("'"))


@pytest.mark.parametrize("page", ["connection.md", "local-server.md"])
def test_the_docs_local_connection_signs_and_gets_no_too_short_warning(
    vikingdb_server_factory, monkeypatch, capfd, caplog, page
):
    caplog.set_level(logging.DEBUG)
    documented = _docs_local_connection(page)
    assert len(documented["password"]) >= 5
    server = vikingdb_server_factory(
        collections=("test_coll",), ak=documented["login"], sk=documented["password"]
    )
    conn = {**documented, "port": server.port}  # the page's, on this test's free port
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    capfd.readouterr()
    _rearm_short_secret_warning(monkeypatch)
    server.load("test_coll", [{"id": "a"}])
    VikingDBHook().delete(["a"], collection_name="test_coll")
    assert server.records("test_coll") == {} and all(r.auth_ok for r in server.requests)
    out, err = capfd.readouterr()
    assert "too short" not in caplog.text + out + err
