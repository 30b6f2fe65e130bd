"""VikingDBHook against the local server: real HTTP on loopback, real signatures."""

import datetime as dt
import json
import re
import subprocess
import sys

import pytest

from airflow_provider_vikingdb.exceptions import (
    VikingDBAuthError,
    VikingDBConfigError,
    VikingDBConnectionError,
    VikingDBError,
    VikingDBThrottledError,
)
from airflow_provider_vikingdb.hooks.vikingdb import (
    DELETE_PATH,
    FETCH_IN_COLLECTION_PATH,
    VikingDBBatchError,
    VikingDBHook,
    sign_headers,
)
from airflow_provider_vikingdb.transport import Answer, full_jitter, read_envelope
from tests.hooks.conftest import API_KEY, SECRETS, SESSION_TOKEN, SK


@pytest.fixture
def server(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(collections=("test_coll", "test_coll_int:id:int64"), ak="AK", sk=SK)
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    return srv


@pytest.fixture
def hook(server):
    hook = VikingDBHook()
    hook._sleep = lambda seconds: None  # backoff is not what these tests measure
    yield hook
    hook.close()


def deletes(server):
    return [r for r in server.requests if r.path == DELETE_PATH]


# ---------------------------------------------------------------- signing


@pytest.mark.parametrize(
    ("host", "signed_headers", "signature"),
    [
        (
            None,
            "content-type;x-content-sha256;x-date",
            "7140e60f387b16613967f2a6c0428608011f3e0b8d33f99deed7ee67f83b58e0",
        ),
        (
            "api-vikingdb.vikingdb.cn-beijing.volces.com",
            "content-type;host;x-content-sha256;x-date",
            "c0db4c025f936641a19b76dc70c7b0cf4ebb98d16e8847995cd91867e41230a0",
        ),
    ],
)
def test_contract_test_vector_through_the_hooks_signing(monkeypatch, host, signed_headers, signature):
    from volcengine.auth.SignerV4 import SignerV4

    monkeypatch.setattr(SignerV4, "get_current_format_date", staticmethod(lambda: "20250101T000000Z"))
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if host:
        headers["Host"] = host
    body = json.dumps({"collection_name": "test_coll", "ids": ["uid_001", "uid_002"]}).encode()
    signed = sign_headers(
        method="POST",
        path="/api/vikingdb/data/delete",
        body=body,
        headers=headers,
        access_key="AKTEST",
        secret_key="SKTEST",
        region="cn-beijing",
    )
    assert signed["X-Content-Sha256"] == "6fa7f3b9aaacc62dc1c54cdb548d0296037dbd3080a32e08c60db2d4b0bb000f"
    assert signed["Authorization"] == (
        "HMAC-SHA256 Credential=AKTEST/20250101/cn-beijing/vikingdb/request, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )


def test_the_bytes_sent_are_the_bytes_signed_compact_json(server, hook):
    server.load("test_coll", [{"id": "é-ü"}])
    hook.delete(["é-ü"], collection_name="test_coll")
    (req,) = deletes(server)
    assert req.auth_ok
    assert req.body == {"collection_name": "test_coll", "ids": ["é-ü"]}
    assert "é-ü" not in server.records("test_coll")


# ---------------------------------------------------------------- delete


def test_delete_250_ids_sends_three_signed_batches_and_the_records_are_gone(server, hook):
    ids = [f"uid_{i:03d}" for i in range(250)]
    server.load("test_coll", [{"id": i, "text": "t"} for i in [*ids, "keep_me"]])
    result = hook.delete(ids, collection_name="test_coll")
    sent = deletes(server)
    assert sorted(r.ids_count for r in sent) == [50, 100, 100]
    assert all(r.auth_ok and r.status == 200 for r in sent)
    assert sorted(i for r in sent for i in r.body["ids"]) == sorted(ids)
    assert list(server.records("test_coll")) == ["keep_me"]
    assert (result.ids_deleted, result.batches, result.batches_total) == (250, 3, 3)


def test_delete_by_resource_id_and_int64_ids(server, hook):
    server.load("test_coll_int", [{"id": i} for i in (1, 2, 2**62)])
    hook.delete([2**62, 1], resource_id=server.resource_id("test_coll_int"))
    assert list(server.records("test_coll_int")) == [2]


def test_invalid_ids_send_nothing(server, hook):
    server.load("test_coll", [{"id": "a"}])
    with pytest.raises(ValueError, match=r"ids\[1\]"):
        hook.delete(["a", None], collection_name="test_coll")
    assert deletes(server) == []
    assert "a" in server.records("test_coll")


def test_del_all_sends_one_request_without_ids(server, hook):
    server.load("test_coll", [{"id": f"x{i}"} for i in range(5)])
    result = hook.delete(collection_name="test_coll", del_all=True)
    (req,) = deletes(server)
    assert req.body == {"collection_name": "test_coll", "del_all": True}
    assert server.records("test_coll") == {}
    assert result.del_all and result.batches == 1


def test_target_must_be_exactly_one(hook, server):
    with pytest.raises(VikingDBConfigError, match="exactly one"):
        hook.delete(["a"])
    with pytest.raises(VikingDBConfigError, match="exactly one"):
        hook.delete(["a"], collection_name="c", resource_id="r")
    assert server.requests == []


# ---------------------------------------------------------------- retries and errors


def test_throttle_server_error_and_dropped_connection_are_retried_each_attempt_signed_anew(
    server, hook, monkeypatch
):
    from volcengine.auth.SignerV4 import SignerV4

    # A clock that moves one second per signature proves each attempt got its own X-Date.
    start = dt.datetime.now(dt.timezone.utc)
    ticks = iter(range(1000))
    monkeypatch.setattr(
        SignerV4,
        "get_current_format_date",
        staticmethod(lambda: (start + dt.timedelta(seconds=next(ticks))).strftime("%Y%m%dT%H%M%SZ")),
    )
    server.load("test_coll", [{"id": "a"}, {"id": "b"}])
    server.fail_next(DELETE_PATH, status=429, code="TooManyRequests")
    server.fail_next(DELETE_PATH, status=503, code="ServiceUnavailable")
    server.drop_next(DELETE_PATH)
    result = hook.delete(["a", "b"], collection_name="test_coll")
    assert result.ids_deleted == 2 and result.retries == 3 and result.throttled == 1
    assert server.records("test_coll") == {}
    attempts = deletes(server)
    assert len(attempts) == 4
    assert [a.status for a in attempts[-1:]] == [200]
    x_dates = [a.headers["X-Date"] for a in attempts]
    assert len(set(x_dates)) == 4
    assert all(a.auth_ok for a in attempts)


def test_retry_after_is_honoured(server, hook):
    delays = []
    hook._sleep = delays.append
    server.fail_next(DELETE_PATH, status=503, code="ServiceUnavailable", headers={"Retry-After": "1.5"})
    hook.delete(["a"], collection_name="test_coll")
    assert delays == [1.5]


def test_each_retry_is_logged_with_the_request_id_attempt_and_delay(server, hook, caplog, capfd):
    # docs/hook.md: "Each retry is logged as a warning: method, path, status, code, request_id,
    # the attempt count and the delay" (the request_id is what Volcengine support asks for).
    server.fail_next(DELETE_PATH, status=503, code="ServiceUnavailable", headers={"Retry-After": "1.5"})
    hook.delete(["a"], collection_name="test_coll")
    failed = deletes(server)[0]
    assert failed.status == 503 and failed.request_id
    line = f"POST {DELETE_PATH}: 503 ServiceUnavailable (request_id={failed.request_id}); retry 1/5 in 1.50s"
    logged = caplog.text + "".join(capfd.readouterr())  # Airflow's structlog may write to stdout
    assert line in logged
    assert not any(secret in logged for secret in SECRETS)  # read here, so checked here


@pytest.mark.parametrize(("header", "delay"), [("3600", 60.0), ("-5", 0.0)])
def test_retry_after_is_kept_within_a_minute(server, hook, header, delay):
    delays = []
    hook._sleep = delays.append
    server.fail_next(DELETE_PATH, status=503, code="ServiceUnavailable", headers={"Retry-After": header})
    hook.delete(["a"], collection_name="test_coll")
    assert sum(delays) == delay and len(deletes(server)) == 2  # no sleep at all for 0


def test_backoff_grows_and_gives_up_after_max_retries(server, hook, monkeypatch):
    # Full jitter: each delay is drawn from 0 up to 0.5 s doubling per failure, capped at 20 s.
    bounds = []
    monkeypatch.setattr(
        "airflow_provider_vikingdb.transport.random.uniform", lambda a, b: bounds.append((a, b)) or b
    )
    delays = []
    hook._sleep = delays.append
    server.fail_next(DELETE_PATH, times=10, status=500, code="InternalError")
    with pytest.raises(VikingDBError) as info:
        hook.delete(["a"], collection_name="test_coll")
    assert len(deletes(server)) == 1 + hook.config.max_retries == 6
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0] and all(low == 0 for low, _ in bounds)
    assert "InternalError" in str(info.value)


def test_backoff_is_capped_at_twenty_seconds(monkeypatch):
    monkeypatch.setattr("airflow_provider_vikingdb.transport.random.uniform", lambda a, b: b)
    assert [full_jitter(n) for n in (6, 7, 8, 30)] == [16.0, 20.0, 20.0, 20.0]


def test_invalid_parameter_fails_after_exactly_one_request(server, hook):
    server.fail_next(DELETE_PATH, status=400, code="InvalidParameter", message="bad ids")
    with pytest.raises(VikingDBBatchError) as info:
        hook.delete(["a"], collection_name="test_coll")
    assert len(deletes(server)) == 1
    err = info.value
    assert err.code == "InvalidParameter" and err.http_status == 400 and err.request_id
    assert "bad ids" in str(err) and err.request_id in str(err)


def test_a_refused_first_batch_says_nothing_was_deleted(server, hook):
    # docs/hook.md: VikingDBBatchError's done_ids are those the service acknowledged and
    # not_done_ids those whose batch failed or was never sent: after a refused first batch,
    # every id is not done, and the records are all still there.
    ids = [f"id{i}" for i in range(250)]
    server.load("test_coll", [{"id": i} for i in ids])
    server.fail_next(DELETE_PATH, status=400, code="InvalidParameter", message="refused")
    with pytest.raises(VikingDBBatchError) as info:
        hook.delete(ids, collection_name="test_coll")
    err = info.value
    assert len(deletes(server)) == 1  # the first batch went alone
    assert err.failed_batches == [1]
    assert (err.done_ids, err.not_done_ids) == ([], ids)
    assert "0 of 250 ids acknowledged in 0 of 3 batches; outcome unknown: 0 ids; not deleted" in str(err)
    assert sorted(server.records("test_coll")) == sorted(ids)


def test_permanent_error_stops_and_reports_what_was_and_was_not_deleted(server, hook):
    ids = [f"id{i}" for i in range(450)]
    server.load("test_coll", [{"id": i} for i in ids])
    hook.max_concurrency = 1  # strictly one batch after the other: the failure point is exact
    sent_before_failure = []

    original = hook.request

    def request(path, body=None, **kw):
        if path == DELETE_PATH and len(sent_before_failure) == 2:
            server.fail_next(DELETE_PATH, status=404, code="NotFound.VikingdbCollection", message="gone")
        if path == DELETE_PATH:
            sent_before_failure.append(body["ids"][0])
        return original(path, body, **kw)

    hook.request = request
    with pytest.raises(VikingDBBatchError) as info:
        hook.delete(ids, collection_name="test_coll", max_concurrency=1)
    err = info.value
    assert len(deletes(server)) == 3  # batches 4 and 5 never sent
    assert err.failed_batches == [3]
    assert err.done_ids == ids[:200]
    assert err.not_done_ids == ids[200:]
    assert sorted(server.records("test_coll")) == sorted(ids[200:])
    assert err.unknown_ids == []  # a 404 is the service's answer: that batch was not applied
    assert "200 of 450 ids acknowledged in 2 of 5 batches" in str(err)
    assert "not deleted (refused, or never sent): 250 ids (first: 'id200'" in str(err)
    assert str(err).endswith(
        "Fix the cause above, then clear the task: deletes are idempotent, "
        "so what was already applied is harmless to send again."
    )
    assert "batch 3 of 5" in str(err)
    assert "NotFound.VikingdbCollection" in str(err)


def test_wrong_secret_key_says_the_credentials_were_rejected(server, monkeypatch):
    conn = json.loads(server.connection_json())
    conn["password"] = "not-the-secret"
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    hook = VikingDBHook()
    with pytest.raises(VikingDBAuthError, match="credentials were rejected") as info:
        hook.request(DELETE_PATH, {"collection_name": "test_coll", "ids": ["a"]})
    assert info.value.http_status == 401
    assert re.search(
        r"credentials were rejected: \w.+[^.]\. Check the connection's Access Key ID", str(info.value)
    )
    assert len(server.requests) == 1  # a 401 is not retried
    ok, reason = hook.test_connection()
    assert not ok and "credentials were rejected" in reason


def test_an_expired_sts_token_says_to_refresh_it(server, hook):
    server.fail_next(
        DELETE_PATH,
        status=401,
        code="ExpiredToken",
        message="The security token included in the request is expired",
    )
    with pytest.raises(VikingDBAuthError) as info:
        hook.request(DELETE_PATH, {"collection_name": "test_coll", "ids": ["a"]})
    assert (
        "the credentials were rejected: The security token included in the request is expired. Refresh the "
        "STS token in the connection's extra 'session_token'"
    ) in str(info.value)
    assert ".." not in str(info.value)


def test_test_connection_proves_the_credentials(server, hook):
    ok, reason = hook.test_connection()
    assert ok, reason
    assert server.requests[-1].auth_ok


def test_test_connection_takes_a_not_found_code_as_proof_whatever_the_status(server, hook):
    # docs/connection.md: "a NotFound answer means the signature was accepted". The service does
    # not document the HTTP status of each code (vikingdb-api.md section 2): the code decides.
    server.fail_next(
        FETCH_IN_COLLECTION_PATH,
        status=400,
        code="NotFound.VikingdbCollection",
        message="The specified collection '__airflow_connection_test__' of VikingDB does not exist.",
    )
    ok, reason = hook.test_connection()
    assert ok, reason
    assert "credentials accepted" in reason and server.requests[-1].auth_ok


def test_test_connection_reports_an_unreachable_server(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIKINGDB_DEFAULT",
        json.dumps(
            {
                "conn_type": "vikingdb",
                "host": "http://127.0.0.1:9",
                "login": "AK",
                "password": "SK",
                "extra": {"region": "cn-beijing", "max_retries": 0, "timeout": 2},
            }
        ),
    )
    ok, reason = VikingDBHook().test_connection()
    assert not ok and "could not reach http://127.0.0.1:9" in reason


def test_api_key_is_sent_as_bearer(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(collections=("test_coll",), api_key=API_KEY)
    conn = json.loads(srv.connection_json())
    conn.pop("login"), conn.pop("password")
    conn["extra"]["api_key"] = API_KEY
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    srv.load("test_coll", [{"id": "a"}])
    VikingDBHook().delete(["a"], collection_name="test_coll")
    assert srv.records("test_coll") == {}
    assert srv.requests[-1].headers["Authorization"] == f"Bearer {API_KEY}"


def test_sts_session_token_is_sent_and_signed(server, monkeypatch):
    conn = json.loads(server.connection_json())
    conn["extra"]["session_token"] = SESSION_TOKEN
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    server.load("test_coll", [{"id": "a"}])
    VikingDBHook().delete(["a"], collection_name="test_coll")
    (req,) = deletes(server)
    assert req.auth_ok and req.headers["X-Security-Token"] == SESSION_TOKEN
    assert "x-security-token" in req.headers["Authorization"]
    assert server.records("test_coll") == {}


@pytest.mark.parametrize("body", [b"", b"[1]", b"{}", b'{"ok": true}', b"<html>OK</html>", b'{"code": "Succ'])
def test_a_200_that_is_not_an_envelope_counts_as_cut_short_and_is_retried(body):
    # "A 200 whose body is not an envelope counts as cut short" (docs/hook.md): a proxy's page,
    # a mangled or empty body, or JSON without a code is not the service's word.
    _, error = read_envelope(Answer(200, body, {}), DELETE_PATH)
    assert isinstance(error, VikingDBConnectionError) and error.retryable
    assert error.code == "BadResponse" and error.http_status == 200


def test_a_200_envelope_with_an_error_code_is_the_services_word():
    body = b'{"code": "InvalidParameter", "message": "ids too long", "request_id": "r-1"}'
    _, error = read_envelope(Answer(200, body, {}), DELETE_PATH)
    assert not isinstance(error, VikingDBConnectionError) and not error.retryable
    assert (error.code, error.request_id) == ("InvalidParameter", "r-1") and "ids too long" in str(error)


def test_an_error_without_a_code_is_named_by_its_status():
    _, error = read_envelope(Answer(429, b'{"message": "slow down"}', {}), DELETE_PATH)
    assert isinstance(error, VikingDBThrottledError) and error.code == "HTTP429" and error.retryable
    _, error = read_envelope(Answer(503, b"", {}), DELETE_PATH)
    assert error.code == "BadResponse" and error.retryable


def test_a_refusal_that_is_not_an_envelope_asks_whether_the_host_is_vikingdb():
    # e.g. a proxy or another service on the host answering 404 for a path it does not know
    _, error = read_envelope(Answer(404, b"<html>Not Found</html>", {}), DELETE_PATH)
    assert "did not answer like a VikingDB data-plane endpoint: check the connection's host" in str(error)
    _, error = read_envelope(Answer(502, b"<html>Bad Gateway</html>", {}), DELETE_PATH)
    assert "data-plane" not in str(error)  # a gateway's 5xx is transient, retried, not a wrong host
    body = b'{"code": "NotFound.VikingdbCollection", "message": "no such collection"}'
    _, error = read_envelope(Answer(404, body, {}), DELETE_PATH)
    assert "data-plane" not in str(error)  # the service's own 404


def test_non_json_answer_gives_status_and_start_of_body():
    body = b"<html><body>Bad Gateway from the proxy</body></html>"
    _, error = read_envelope(Answer(502, body, {}), DELETE_PATH)
    assert error.http_status == 502 and error.code == "BadResponse" and error.retryable
    assert "Bad Gateway from the proxy" in str(error)
    _, error = read_envelope(Answer(403, b"", {}), DELETE_PATH)
    assert isinstance(error, VikingDBAuthError) and not error.retryable


GATEWAY_TIMEOUT_PAGE = b"<html><head><title>504 Gateway Time-out</title></head><body>nginx</body></html>"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (504, GATEWAY_TIMEOUT_PAGE),
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
        (504, b""),
        (504, b'{"message": "Endpoint request timed out"}'),  # a gateway's own JSON, not an envelope
        # usually not passed on, but not always (a proxy's 503 on an upstream reset): a rollback
        # that misses rows is worse than one delete too many
        (503, b"<html><body><h1>503 Service Unavailable</h1></body></html>"),
        (500, b"<html><body>Internal Server Error</body></html>"),
    ],
    ids=["504-page", "502-page", "504-empty", "504-gateway-json", "503-page", "500-page"],
)
def test_a_gateways_5xx_page_is_an_answer_lost_that_may_have_been_applied(status, body):
    # RFC 9110 15.6.3/15.6.5: the gateway got no valid (or no timely) answer from the service,
    # which may have had the request and applied it. Retried, and outcome unknown if it stays so.
    _, error = read_envelope(Answer(status, body, {"X-Tt-Logid": "rid-gw"}), DELETE_PATH)
    assert error.maybe_applied and error.answer_lost and error.retryable
    assert (error.code, error.http_status, error.request_id) == ("BadResponse", status, "rid-gw")
    assert f"a gateway answered {status} in the service's place: the request may have reached" in str(error)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, b'{"code": "ServiceUnavailable", "message": "busy", "request_id": "r-8"}'),
        (502, b'{"code": "InternalError", "message": "upstream failed", "request_id": "r-9"}'),
        (504, b'{"code": "Timeout.Internal", "message": "took too long", "request_id": "r-10"}'),
    ],
    ids=["503-envelope", "502-envelope", "504-envelope"],
)
def test_the_services_own_5xx_envelope_was_not_applied(status, body):
    # an envelope: the service's word
    _, error = read_envelope(Answer(status, body, {}), DELETE_PATH)
    assert not error.maybe_applied and not error.answer_lost and error.retryable
    assert error.http_status == status and "gateway" not in str(error)


# ---------------------------------------------------------------- other calls


def test_upsert_then_fetch_in_collection_and_index(server, hook):
    rows = [{"id": f"r{i}", "n": i} for i in range(150)]
    result = hook.upsert(rows, collection_name="test_coll")
    assert result.batches == 2 and result.to_dict()["ids_written"] == 150
    got = hook.fetch_in_collection(["r1", "r149", "nope"], collection_name="test_coll")
    assert sorted(r["id"] for r in got["fetch"]) == ["r1", "r149"]
    assert got["ids_not_exist"] == ["nope"]
    in_index = hook.fetch_in_index(["r1"], index_name="test_coll_index", collection_name="test_coll")
    assert [r["id"] for r in in_index["fetch"]] == ["r1"]
    assert len(hook.search_random(index_name="test_coll_index", collection_name="test_coll", limit=5)) == 5


@pytest.mark.parametrize("value", [0, True, "8"])
def test_a_bad_max_concurrency_is_a_config_error_naming_it(value):
    with pytest.raises(VikingDBConfigError, match=r"^max_concurrency must be a positive integer, got "):
        VikingDBHook(max_concurrency=value)


def test_a_bad_chunk_rows_is_refused_before_anything_is_sent(server, hook):
    rows = ({"id": f"r{i}"} for i in range(10))
    with pytest.raises(VikingDBConfigError, match=r"^chunk_rows must be a positive integer, got 0"):
        hook.upsert(rows, collection_name="test_coll", chunk_rows=0)
    assert server.requests == []


# ---------------------------------------------------------------- secrets and import cost


def test_no_secret_in_any_log_line_repr_or_error(server, monkeypatch, capfd, caplog):
    hook = VikingDBHook()
    hook._sleep = lambda s: None
    server.fail_next(DELETE_PATH, status=503, code="ServiceUnavailable")
    hook.delete(["a"], collection_name="test_coll")
    server.fail_next(DELETE_PATH, status=400, code="InvalidParameter")
    with pytest.raises(VikingDBError) as info:
        hook.delete(["a"], collection_name="test_coll")
    conn = json.loads(server.connection_json())
    conn["password"] = SK + "-wrong"
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    bad = VikingDBHook()
    with pytest.raises(VikingDBAuthError) as auth_info:
        bad.request(DELETE_PATH, {"collection_name": "test_coll", "ids": ["a"]})
    out, err = capfd.readouterr()
    logged = "\n".join([out, err, caplog.text])
    assert "retry 1/" in logged  # the retry really was logged, and is checked
    seen = "\n".join(
        [logged, repr(hook), repr(hook.config), str(info.value), str(auth_info.value), repr(bad.config)]
    )
    assert SK not in seen


def test_importing_hook_and_operator_loads_neither_requests_nor_volcengine():
    code = (
        "import sys\n"
        "import airflow_provider_vikingdb.hooks.vikingdb\n"
        "import airflow_provider_vikingdb.operators.vikingdb\n"
        "print(sorted(m for m in ('requests', 'volcengine', 'airflow_provider_vikingdb.local.server')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_https_against_a_plain_http_server_fails_at_once_and_says_to_set_scheme(server, monkeypatch):
    conn = json.loads(server.connection_json())
    conn["host"] = conn["host"].replace("http://", "https://")
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    hook = VikingDBHook()
    delays = []
    hook._sleep = delays.append
    with pytest.raises(VikingDBError) as info:
        hook.request(DELETE_PATH, {"collection_name": "test_coll", "ids": ["a"]})
    assert info.value.code == "SSLError" and not info.value.retryable
    assert "set the connection's extra 'scheme' to 'http'" in str(info.value)
    assert delays == []  # not retried
    ok, reason = hook.test_connection()
    assert not ok and "'scheme' to 'http'" in reason
