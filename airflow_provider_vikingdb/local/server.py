"""The local VikingDB server: ``LocalVikingDB``, its request log, and how it answers a request.

A request goes: read exactly Content-Length bytes -> added latency -> route (404/405)
-> signature check (its result is logged) -> scripted fault or random 503 (answered
whatever the signature) -> 401 if the signature failed -> JSON (400) -> endpoint
(400/404/429 or 200). A fault that answers instead of the service changes nothing, unless it
was scripted ``applied=True`` (``fail_next``, ``cut_next``): then the request is handled first
and the fault replaces or breaks off the service's answer. See ``faults.py`` for which ones let
the request through. The HTTP side is ``httpd.py``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_vikingdb.local import errors, routes
from airflow_provider_vikingdb.local.auth import RequestVerifier
from airflow_provider_vikingdb.local.errors import SUCCESS_MESSAGE, ApiError
from airflow_provider_vikingdb.local.faults import Fault, FaultScript, ScriptedFaults, echo_page
from airflow_provider_vikingdb.local.fields import check_fields, parse_field_spec
from airflow_provider_vikingdb.local.httpd import Answer, HTTPServer, envelope
from airflow_provider_vikingdb.local.store import Store, parse_collection_spec, parse_index_spec

if TYPE_CHECKING:
    from email.message import Message

logger = logging.getLogger("airflow_provider_vikingdb.local")

DEFAULT_COLLECTIONS = ("test_coll", "test_coll_int:id:int64")
DEFAULT_REGION = "cn-beijing"
#: The official SDK reads the request id from this response header.
REQUEST_ID_HEADER = "X-Tt-Logid"


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the server saw it. ``headers`` are as received (Authorization included:
    this log stays in memory; only the ``logging`` line leaves it out)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any  # the parsed JSON, or None if the body was not JSON
    status: int | None  # None: no status line got out (dropped, or cut in the status line)
    code: str | None
    auth_ok: bool | None  # None: nothing to check (an unsigned Ping, an unknown path or method)
    request_id: str
    ids_count: int | None  # ids (delete, fetch) or rows (upsert, update) in the body
    time: float  # time.time() when the request arrived
    client: tuple[str, int]  # the client's address: the same port means the same connection
    fault: str | None = None  # the fault that hit it: "fail", "drop", "stall", "cut", "trickle"


@dataclass
class _Request:
    method: str
    path: str
    query: str
    headers: Mapping[str, str] | Message[str, str]  # as received (names in their case, in order)
    lower: dict[str, str]  # lower-cased names, for the checks
    body: bytes
    parsed: Any
    parse_error: str | None
    request_id: str


class LocalVikingDB(ScriptedFaults):
    """A VikingDB V2 data plane on loopback, for tests and demos.

    ``collections``: specs ``NAME[:KEY_FIELD[:TYPE]]`` (key field ``id``, type ``string``
    or ``int64``). Every collection has an index ``{name}_index``; ``indexes`` adds
    more as ``COLLECTION:INDEX_NAME``. ``fields``: scalar fields per collection, as
    ``{"coll": {"created_at": "int64"}}`` or specs ``"coll:created_at:int64"``.
    ``port=0`` picks a free port (see ``.port``). ``clock``: the monotonic clock of
    index lags, TTLs and the quota (tests pass a fake one to step time).
    """

    def __init__(
        self,
        collections: Iterable[str] = DEFAULT_COLLECTIONS,
        *,
        indexes: Iterable[str] = (),
        fields: Mapping[str, Mapping[str, str]] | Iterable[str] | None = None,
        ak: str = "AK",
        sk: str = "SK",
        region: str = DEFAULT_REGION,
        api_key: str | None = None,
        index_lag: float = 0.0,
        del_all_index_lag: float | None = None,
        quota: float | None = None,
        quota_burst: float = 1.0,
        latency_ms: float = 0,
        fail_rate: float = 0.0,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_logged_requests: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(collections, str):
            collections = (collections,)
        self.faults = FaultScript(fail_rate, seed)
        self.store = Store(
            index_lag=index_lag,
            del_all_index_lag=del_all_index_lag,
            quota=quota,
            quota_burst=quota_burst,
            clock=clock,
        )
        declared = _fields_by_collection(fields)
        for spec in collections:
            name, key_field, key_type = parse_collection_spec(spec)
            self.store.add_collection(name, key_field, key_type, fields=declared.pop(name, None))
        if declared:
            raise ValueError(f"fields given for unknown collection(s): {', '.join(sorted(declared))}")
        for spec in indexes:
            self.store.add_index(*parse_index_spec(spec))
        self.ak, self.sk, self.region, self.api_key = ak, sk, region, api_key
        self.verifier = RequestVerifier({ak: sk}, region, api_key=api_key)
        self.latency_ms = latency_ms
        self._host = host
        self._port = port
        self._lock = threading.Lock()  # the request log and the request counter
        self._log: deque[LoggedRequest] = deque(maxlen=max_logged_requests)
        self._sequence = 0
        self._stopping = threading.Event()
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> LocalVikingDB:
        """Bind and serve in a background thread; returns once connections are accepted."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._stopping.clear()
        self._httpd = HTTPServer((self._host, self._port), self, self._stopping)
        self._port = self._httpd.server_address[1]
        # Short poll interval: stop() waits for one poll, and tests stop servers often.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"vikingdb-local:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (clients see the connection close)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes stalled requests, trickles and latency sleeps
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Block the calling thread until stop() (from another thread) or KeyboardInterrupt."""
        if not self.running:
            self.start()
        try:
            while (thread := self._thread) is not None:
                # join with a timeout: a bare join() would not let Ctrl-C through
                thread.join(timeout=0.5)
                if not thread.is_alive():
                    break
        finally:
            self.stop()

    def __enter__(self) -> LocalVikingDB:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    # --- where it is and how to reach it ---

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    def connection_json(self) -> str:
        """The Airflow connection (for ``AIRFLOW_CONN_VIKINGDB_DEFAULT``) that reaches this server."""
        # The scheme goes in the host URL, not in an extra: Airflow masks every extra value when
        # it reads a connection, and warns that "http" is too short to mask.
        extra: dict[str, Any] = {"region": self.region}
        if self.api_key is not None:
            extra["api_key"] = self.api_key
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        return json.dumps(
            {
                "conn_type": "vikingdb",
                "host": f"http://{host}",
                "port": self._port,
                "login": self.ak,
                "password": self.sk,
                "extra": extra,
            }
        )

    # --- settings that can change while it runs ---

    @property
    def quota(self) -> float | None:
        """Rows per second per collection, shared by upsert/update/delete; None: no quota."""
        return self.store.quota

    @quota.setter
    def quota(self, rows_per_second: float | None) -> None:
        self.store.quota = rows_per_second

    @property
    def quota_burst(self) -> float:
        """Seconds of quota a collection's bucket holds: the burst it admits at once (default 1)."""
        return self.store.quota_burst

    @quota_burst.setter
    def quota_burst(self, seconds: float) -> None:
        self.store.quota_burst = seconds

    @property
    def index_lag(self) -> float:
        """Seconds before a write, delete or expiry is seen by fetch_in_index, search and agg."""
        return self.store.index_lag

    @index_lag.setter
    def index_lag(self, seconds: float) -> None:
        self.store.index_lag = seconds

    @property
    def del_all_index_lag(self) -> float:
        """Seconds before a ``del_all`` reaches the indexes; follows ``index_lag`` unless set
        (set it to None to follow again)."""
        return self.store.del_all_index_lag

    @del_all_index_lag.setter
    def del_all_index_lag(self, seconds: float | None) -> None:
        self.store.del_all_index_lag = seconds

    # --- data, directly (no HTTP) ---

    def resource_id(self, collection: str) -> str:
        with self.store.lock:
            return self.store.get(collection).resource_id

    def add_collection(
        self,
        name: str,
        key_field: str = "id",
        key_type: str = "string",
        indexes: Iterable[str] = (),
        fields: Mapping[str, str] | None = None,
    ) -> str:
        """Add a collection (with index ``{name}_index``, ``indexes`` and scalar ``fields``);
        returns its resource_id."""
        return self.store.add_collection(name, key_field, key_type, indexes, fields).resource_id

    def fields(self, collection: str) -> dict[str, str]:
        """The collection's declared scalar fields: name -> type."""
        with self.store.lock:
            return dict(self.store.get(collection).fields)

    def load(self, collection: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert or replace records, in the collection and every index at once (as if written
        long ago), without a TTL. Rows are checked like an upsert's (ValueError)."""
        with self.store.lock:
            target = self.store.get(collection)
            try:
                split = [target.split_row(row, position) for position, row in enumerate(rows)]
            except ApiError as exc:
                raise ValueError(f"load({collection!r}): {exc.message}") from None
            self.store.current(target)
            target.load(split)

    def records(self, collection: str) -> dict[Any, dict[str, Any]]:
        """The collection now: id -> fields (the primary key is the dict key, not a field)."""
        with self.store.lock:
            target = self.store.get(collection)
            self.store.current(target)
            return {key: dict(fields) for key, fields in target.records.items()}

    def index_records(self, collection: str) -> dict[Any, dict[str, Any]]:
        """What the collection's indexes hold now (the collection as of the index lag)."""
        with self.store.lock:
            view = self.store.index_view(self.store.get(collection))
            return {key: dict(fields) for key, fields in view.records.items()}

    def expires_in(self, collection: str, key: Any) -> float | None:
        """Seconds until the record's TTL runs out; None if it has no TTL (or does not exist)."""
        with self.store.lock:
            target = self.store.get(collection)
            now = self.store.current(target)
            expires = target.expires_at(key)
            return None if expires is None else expires - now

    # --- the request log ---

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def _next_request_id(self) -> str:
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        return f"local-{sequence:08d}-{uuid.uuid4().hex[:12]}"

    # --- handling one request (called by the HTTP handler) ---

    def handle(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str] | Message[str, str],  # a Mapping, or http.server's headers
        body: bytes,
        client: tuple[str, int],
    ) -> Answer:
        arrived = time.time()
        lower: dict[str, str] = {}
        for name, value in headers.items():
            lower.setdefault(name.lower(), value)
        try:
            parsed: Any = json.loads(body) if body else None
            parse_error = None if body else "the body is empty"
        except (ValueError, UnicodeDecodeError) as exc:
            parsed, parse_error = None, str(exc)
        request = _Request(
            method, path, query, headers, lower, body, parsed, parse_error, self._next_request_id()
        )

        auth_ok: bool | None = None
        fault: Fault | None = None
        try:
            answer, auth_ok, fault = self._answer(request)
        except Exception:  # a bug here must still produce an answer, and a trace in the log
            logger.exception("vikingdb-local: error handling %s %s", method, path)
            answer = Answer(
                500,
                envelope(errors.INTERNAL_ERROR, "Internal error in the local server.", request.request_id),
                errors.INTERNAL_ERROR,
            )
        if not answer.drop:
            answer.headers.setdefault(REQUEST_ID_HEADER, request.request_id)
        count = routes.ids_count(path, parsed)
        status_sent = not answer.drop and answer.cut != "status"
        record = LoggedRequest(
            method=method,
            path=path,
            query=query,
            headers=dict(headers),
            body=parsed,
            status=answer.status if status_sent else None,
            code=answer.code,
            auth_ok=auth_ok,
            request_id=request.request_id,
            ids_count=count,
            time=arrived,
            client=client,
            fault=None if fault is None else fault.kind,
        )
        with self._lock:
            self._log.append(record)
        # Never the Authorization header: this line may end up in shared CI logs.
        logger.info(
            "%s %s %s %s ids=%s request_id=%s%s",
            method,
            path,
            answer.status if status_sent else "-",
            answer.code,
            "-" if count is None else count,
            request.request_id,
            "" if fault is None else f" fault={fault.kind}",
        )
        return answer

    def _answer(self, request: _Request) -> tuple[Answer, bool | None, Fault | None]:
        request_id = request.request_id

        def error(exc: ApiError, extra: Mapping[str, str] | None = None) -> Answer:
            body = envelope(exc.code, exc.message, request_id)
            return Answer(exc.status, body, exc.code, dict(extra or {}))

        if self.latency_ms:
            self._stopping.wait(self.latency_ms / 1000.0)

        method, path = request.method, request.path
        endpoint = routes.DATA_ENDPOINTS.get(path)
        allowed = "GET" if path == routes.PING_PATH else "POST" if endpoint else None
        if allowed is None:
            return error(ApiError(404, errors.API_NOT_FOUND, f"No such API: {method} {path}.")), None, None
        if method != allowed:
            exc = ApiError(405, errors.METHOD_NOT_ALLOWED, f"{path} accepts {allowed} only, not {method}.")
            return error(exc, {"Allow": allowed}), None, None

        # The SDK pings unsigned before anything else; a signed Ping is still checked.
        auth_error: ApiError | None = None
        auth_ok: bool | None = None
        if endpoint is not None or "authorization" in request.lower:
            try:
                self.verifier.verify(method, path, request.query, request.lower, request.body)
                auth_ok = True
            except ApiError as exc:
                auth_error, auth_ok = exc, False

        # A fault answers whatever the signature: it stands for a failure in front of the
        # service. auth_ok is still logged, so tests can check every retry was signed afresh.
        fault = self.faults.take(path)
        if fault is not None:
            # A drop, or a stall cut short by stop(): the connection closes unanswered, nothing applied.
            if fault.kind == "drop" or (fault.kind == "stall" and self._stopping.wait(fault.seconds)):
                return Answer(0, b"", "ConnectionDropped", drop=True), auth_ok, fault
            if fault.kind in ("fail", "cut") and not fault.applied:
                return _fault_answer(fault, request), auth_ok, fault

        if auth_error is not None:
            answer = error(auth_error)
        elif endpoint is None:  # Ping
            answer = Answer(200, envelope("Success", SUCCESS_MESSAGE, request_id), "Success")
        elif request.parse_error is not None:
            answer = error(errors.invalid(f"The request body is not JSON: {request.parse_error}."))
        elif not isinstance(request.parsed, dict):
            answer = error(errors.invalid("The request body must be a JSON object."))
        else:
            try:
                result = endpoint(self.store, request.parsed)
                answer = Answer(200, envelope("Success", SUCCESS_MESSAGE, request_id, result), "Success")
            except ApiError as exc:
                answer = error(exc)
        if fault is not None and fault.kind == "fail":  # applied: the fault replaces the real answer
            answer = _fault_answer(fault, request)
        elif fault is not None and fault.kind == "cut":  # applied: the real answer breaks off
            answer.cut = fault.where
        elif fault is not None and fault.kind == "trickle":
            answer.trickle = fault.interval
        return answer, auth_ok, fault


def _fault_answer(fault: Fault, request: _Request) -> Answer:
    """The answer of a ``fail`` fault, or the (error) answer an unapplied ``cut`` breaks off."""
    if fault.kind == "cut":
        body = envelope(errors.INTERNAL_ERROR, "Injected fault (connection cut).", request.request_id)
        answer = Answer(503, body, errors.INTERNAL_ERROR)
        answer.cut = fault.where
        return answer
    headers = dict(fault.headers)
    if fault.echo_headers:
        raw = echo_page(fault.status, request.headers.items())
    elif fault.body is not None:
        raw = fault.body
    else:
        body = envelope(fault.code, fault.message, request.request_id)
        return Answer(fault.status, body, fault.code, headers)
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "text/html; charset=utf-8"
    return Answer(fault.status, raw, fault.code, headers)


def _fields_by_collection(
    fields: Mapping[str, Mapping[str, str]] | Iterable[str] | None,
) -> dict[str, dict[str, str]]:
    """``{"coll": {"name": "type"}}`` or specs ``"coll:name:type"`` -> {collection: {name: type}}."""
    if fields is None:
        return {}
    if isinstance(fields, str):
        fields = (fields,)
    if isinstance(fields, Mapping):
        return {name: check_fields(declared, f"fields[{name!r}]") for name, declared in fields.items()}
    grouped: dict[str, dict[str, str]] = {}
    for spec in fields:
        collection, name, field_type = parse_field_spec(spec)
        grouped.setdefault(collection, {})[name] = field_type
    return grouped
