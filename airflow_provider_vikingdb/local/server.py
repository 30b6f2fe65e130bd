"""The local VikingDB server: HTTP, faults, the request log, and ``LocalVikingDB``.

A request goes: read exactly Content-Length bytes -> added latency -> route (404/405)
-> signature check (its result is logged) -> scripted fault or random 503 (answered
whatever the signature) -> 401 if the signature failed -> JSON (400) -> endpoint
(400/404/429 or 200). A faulted request changes nothing.

Speed matters because the provider's throughput tests and benchmarks run against this
server: HTTP/1.1 keep-alive, TCP_NODELAY on every accepted socket (otherwise Nagle and
delayed ACKs add ~40 ms per request), a large listen backlog, a thread per connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_vikingdb.local import api, errors
from airflow_provider_vikingdb.local.auth import RequestVerifier
from airflow_provider_vikingdb.local.errors import SUCCESS_MESSAGE, ApiError
from airflow_provider_vikingdb.local.store import Store, parse_collection_spec, parse_index_spec

logger = logging.getLogger("airflow_provider_vikingdb.local")

DEFAULT_COLLECTIONS = ("test_coll", "test_coll_int:id:int64")
DEFAULT_REGION = "cn-beijing"
API_PREFIX = "/api/vikingdb/"
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
    status: int | None  # None: the connection was dropped without an answer
    code: str | None
    auth_ok: bool | None  # None: nothing to check (an unsigned Ping, an unknown path or method)
    request_id: str
    ids_count: int | None  # ids (delete, fetch) or rows (upsert, update) in the body
    time: float  # time.time() when the request arrived
    client: tuple[str, int]  # the client's address: the same port means the same connection


@dataclass
class _Fault:
    kind: str  # "fail", "drop" or "stall"
    remaining: int
    after: int = 0  # requests to let through before this fault starts
    status: int = 503
    code: str = errors.INTERNAL_ERROR
    message: str = "Injected fault."
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # raw body instead of the JSON envelope (a proxy's HTML page, ...)
    seconds: float = 0.0


@dataclass
class _Answer:
    status: int
    body: bytes
    code: str
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


def full_path(path: str) -> str:
    """``data/delete`` -> ``/api/vikingdb/data/delete``; full paths are kept."""
    return path if path.startswith("/") else API_PREFIX + path.lstrip("/")


def envelope(code: str, message: str, request_id: str, result: Any = None) -> bytes:
    return json.dumps(
        {"code": code, "message": message, "request_id": request_id, "result": result},
        separators=(",", ":"),
    ).encode("utf-8")


class LocalVikingDB:
    """A VikingDB V2 data plane on loopback, for tests and demos.

    ``collections``: specs ``NAME[:KEY_FIELD[:TYPE]]`` (key field ``id``, type ``string``
    or ``int64``). Every collection has an index ``{name}_index``; ``indexes`` adds
    more as ``COLLECTION:INDEX_NAME``. ``port=0`` picks a free port (see ``.port``).
    """

    def __init__(
        self,
        collections: Iterable[str] = DEFAULT_COLLECTIONS,
        *,
        indexes: Iterable[str] = (),
        ak: str = "AK",
        sk: str = "SK",
        region: str = DEFAULT_REGION,
        api_key: str | None = None,
        index_lag: float = 0.0,
        quota: float | None = None,
        latency_ms: float = 0,
        fail_rate: float = 0.0,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_logged_requests: int = 100_000,
    ) -> None:
        if isinstance(collections, str):
            collections = (collections,)
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        self.store = Store(index_lag=index_lag, quota=quota)
        for spec in collections:
            name, key_field, key_type = parse_collection_spec(spec)
            self.store.add_collection(name, key_field, key_type)
        for spec in indexes:
            self.store.add_index(*parse_index_spec(spec))
        self.ak, self.sk, self.region, self.api_key = ak, sk, region, api_key
        self.verifier = RequestVerifier({ak: sk}, region, api_key=api_key)
        self.latency_ms = latency_ms
        self.fail_rate = fail_rate
        self._random = random.Random(seed)
        self._host = host
        self._port = port
        self._lock = threading.Lock()  # the request log, faults, the random generator
        self._log: deque[LoggedRequest] = deque(maxlen=max_logged_requests)
        self._faults: dict[str, deque[_Fault]] = {}
        self._sequence = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> LocalVikingDB:
        """Bind and serve in a background thread; returns once connections are accepted."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer((self._host, self._port), self)
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
        self._stopping.set()  # wakes stalled requests and latency sleeps
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
        extra: dict[str, Any] = {"region": self.region, "scheme": "http"}
        if self.api_key is not None:
            extra["api_key"] = self.api_key
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        return json.dumps(
            {
                "conn_type": "vikingdb",
                "host": host,
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
    def index_lag(self) -> float:
        """Seconds before a write is seen by fetch_in_index and search."""
        return self.store.index_lag

    @index_lag.setter
    def index_lag(self, seconds: float) -> None:
        self.store.index_lag = seconds

    # --- data, directly (no HTTP) ---

    def resource_id(self, collection: str) -> str:
        with self.store.lock:
            return self.store.get(collection).resource_id

    def add_collection(
        self, name: str, key_field: str = "id", key_type: str = "string", indexes: Iterable[str] = ()
    ) -> str:
        """Add a collection (with index ``{name}_index`` and ``indexes``); returns its resource_id."""
        return self.store.add_collection(name, key_field, key_type, indexes).resource_id

    def load(self, collection: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert or replace records, visible in the collection and every index at once."""
        with self.store.lock:
            target = self.store.get(collection)
            try:
                split = [target.split_row(row, position) for position, row in enumerate(rows)]
            except ApiError as exc:
                raise ValueError(f"load({collection!r}): {exc.message}") from None
            for key, fields in split:
                target.load(key, fields)

    def records(self, collection: str) -> dict[Any, dict]:
        """The collection now: id -> fields (the primary key is the dict key, not a field)."""
        with self.store.lock:
            return {key: dict(fields) for key, fields in self.store.get(collection).records.items()}

    def index_records(self, collection: str) -> dict[Any, dict]:
        """What the collection's indexes see now (the collection as of ``index_lag`` ago)."""
        with self.store.lock:
            view = self.store.get(collection).index_view(self.store.index_cutoff())
            return {key: dict(fields) for key, fields in view.items()}

    # --- the request log ---

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # --- scripted faults: the next `times` requests to `path`, after letting `after` through ---
    # Faults queue up per path: fail_next(...) then drop_next(...) answers once, then drops once.

    def fail_next(
        self,
        path: str,
        times: int = 1,
        status: int = 503,
        code: str = errors.INTERNAL_ERROR,
        message: str = "Injected fault.",
        headers: Mapping[str, str] | None = None,
        body: str | bytes | None = None,
        after: int = 0,
    ) -> None:
        """Answer ``status`` with the envelope ``code``/``message`` (or the raw ``body``); apply nothing."""
        raw = body.encode("utf-8") if isinstance(body, str) else body
        if not (isinstance(status, int) and 100 <= status <= 599):
            raise ValueError(f"status must be an HTTP status code, not {status!r}")
        fault = _Fault(
            "fail",
            remaining=times,
            after=after,
            status=status,
            code=code,
            message=message,
            headers=dict(headers or {}),
            body=raw,
        )
        self._add_fault(path, fault)

    def drop_next(self, path: str, times: int = 1, after: int = 0) -> None:
        """Close the connection without answering (after reading the request); apply nothing."""
        self._add_fault(path, _Fault("drop", remaining=times, after=after))

    def stall_next(self, path: str, times: int = 1, seconds: float = 5.0, after: int = 0) -> None:
        """Wait ``seconds`` before handling, to trip client timeouts.

        After the wait the request is handled as usual (and applied, like a slow real
        service); a client that timed out just never sees the answer.
        """
        self._add_fault(path, _Fault("stall", remaining=times, after=after, seconds=seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_fault(self, path: str, fault: _Fault) -> None:
        if fault.remaining < 1 or fault.after < 0:
            raise ValueError("times must be >= 1 and after >= 0")
        with self._lock:
            self._faults.setdefault(full_path(path), deque()).append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            if queue:
                fault = queue[0]
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.popleft()
                return fault
            # Random faults hit data endpoints only: the SDK's constructor pings and must get through.
            is_data = path.startswith(API_PREFIX + "data/")
            if is_data and self.fail_rate > 0 and self._random.random() < self.fail_rate:
                return _Fault(
                    "fail",
                    remaining=1,
                    status=503,
                    code=errors.SERVICE_UNAVAILABLE,
                    message="Injected random fault (fail_rate).",
                )
            return None

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
        headers: Mapping[str, str],
        body: bytes,
        client: tuple[str, int],
    ) -> _Answer:
        arrived = time.time()
        request_id = self._next_request_id()
        lower = {}
        for name, value in headers.items():
            lower.setdefault(name.lower(), value)
        try:
            parsed: Any = json.loads(body) if body else None
            parse_error = None if body else "the body is empty"
        except (ValueError, UnicodeDecodeError) as exc:
            parsed, parse_error = None, str(exc)

        auth_ok: bool | None = None
        try:
            answer, auth_ok = self._answer(method, path, query, lower, body, parsed, parse_error, request_id)
        except Exception:  # a bug here must still produce an answer, and a trace in the log
            logger.exception("vikingdb-local: error handling %s %s", method, path)
            answer = _Answer(
                500,
                envelope(errors.INTERNAL_ERROR, "Internal error in the local server.", request_id),
                errors.INTERNAL_ERROR,
            )
        if not answer.drop:
            answer.headers.setdefault(REQUEST_ID_HEADER, request_id)
        count = api.ids_count(path, parsed)
        record = LoggedRequest(
            method=method,
            path=path,
            query=query,
            headers=dict(headers),
            body=parsed,
            status=None if answer.drop else answer.status,
            code=answer.code,
            auth_ok=auth_ok,
            request_id=request_id,
            ids_count=count,
            time=arrived,
            client=client,
        )
        with self._lock:
            self._log.append(record)
        # Never the Authorization header: this line may end up in shared CI logs.
        logger.info(
            "%s %s %s %s ids=%s request_id=%s",
            method,
            path,
            "-" if answer.drop else answer.status,
            answer.code,
            "-" if count is None else count,
            request_id,
        )
        return answer

    def _answer(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        parsed: Any,
        parse_error: str | None,
        request_id: str,
    ) -> tuple[_Answer, bool | None]:
        def error(exc: ApiError, extra: Mapping[str, str] | None = None) -> _Answer:
            return _Answer(
                exc.status, envelope(exc.code, exc.message, request_id), exc.code, dict(extra or {})
            )

        if self.latency_ms:
            self._stopping.wait(self.latency_ms / 1000.0)

        endpoint = api.DATA_ENDPOINTS.get(path)
        allowed = "GET" if path == api.PING_PATH else "POST" if endpoint else None
        if allowed is None:
            return error(ApiError(404, errors.API_NOT_FOUND, f"No such API: {method} {path}.")), None
        if method != allowed:
            exc = ApiError(405, errors.METHOD_NOT_ALLOWED, f"{path} accepts {allowed} only, not {method}.")
            return error(exc, {"Allow": allowed}), None

        # The SDK pings unsigned before anything else; a signed Ping is still checked.
        auth_error: ApiError | None = None
        auth_ok: bool | None = None
        if endpoint is not None or "authorization" in headers:
            try:
                self.verifier.verify(method, path, query, headers, body)
                auth_ok = True
            except ApiError as exc:
                auth_error, auth_ok = exc, False

        # A fault answers whatever the signature: it stands for a failure in front of the
        # service. auth_ok is still logged, so tests can check every retry was signed afresh.
        fault = self._take_fault(path)
        if fault is not None and fault.kind == "stall":
            self._stopping.wait(fault.seconds)
        elif fault is not None and fault.kind == "drop":
            return _Answer(0, b"", "ConnectionDropped", drop=True), auth_ok
        elif fault is not None:
            raw = fault.body if fault.body is not None else envelope(fault.code, fault.message, request_id)
            headers_out = dict(fault.headers)
            if fault.body is not None:
                headers_out.setdefault("Content-Type", "text/html; charset=utf-8")
            return _Answer(fault.status, raw, fault.code, headers_out), auth_ok

        if auth_error is not None:
            return error(auth_error), auth_ok

        if endpoint is None:  # Ping
            return _Answer(200, envelope("Success", SUCCESS_MESSAGE, request_id), "Success"), auth_ok
        if parse_error is not None:
            return error(errors.invalid(f"The request body is not JSON: {parse_error}.")), auth_ok
        if not isinstance(parsed, dict):
            return error(errors.invalid("The request body must be a JSON object.")), auth_ok
        try:
            result = endpoint(self.store, parsed)
        except ApiError as exc:
            return error(exc), auth_ok
        return _Answer(200, envelope("Success", SUCCESS_MESSAGE, request_id, result), "Success"), auth_ok


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection for many requests
    server_version = "vikingdb-local"
    sys_version = ""
    disable_nagle_algorithm = True  # also set at accept time; see _HTTPServer.get_request
    timeout = 300  # reap idle keep-alive connections eventually
    server: _HTTPServer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silence BaseHTTPRequestHandler's stderr lines; LocalVikingDB.handle logs each request."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, then the empty line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        size = int(length)
        if size < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(size)

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._write(400, envelope(errors.INVALID_PARAMETER, "Bad Content-Length.", ""), {})
            return
        target = urlsplit(self.path)
        answer = self.server.app.handle(
            self.command,
            target.path,
            target.query,
            self.headers,
            body,
            self.client_address[:2],
        )
        if answer.drop:
            self.close_connection = True
            return
        self._write(answer.status, answer.body, answer.headers)

    def _write(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            self.send_response(status)
            names = {name.lower() for name in headers}
            if "content-type" not in names:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                if value:
                    self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:  # the client went away (a timed-out client after a stall, ...)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # many clients connecting at once must not be refused

    def __init__(self, address: tuple[str, int], app: LocalVikingDB) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can take
        # seconds on a machine without network; the name is only used in CGI variables.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        # Every answer is one small write; without TCP_NODELAY the client's delayed ACK
        # and Nagle's algorithm hold each request up by ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._connections_lock:
            self._connections.add(sock)
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every handler thread blocked on an idle keep-alive connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                sock.shutdown(socket.SHUT_RDWR)
