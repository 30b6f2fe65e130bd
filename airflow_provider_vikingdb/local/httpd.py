"""The HTTP plumbing of the local server: read a request, write an ``Answer`` (whole or not).

Speed matters because the provider's throughput tests and benchmarks run against this
server: HTTP/1.1 keep-alive, TCP_NODELAY on every accepted socket (otherwise Nagle and
delayed ACKs add ~40 ms per request), one write per answer, a large listen backlog, a
thread per connection (so a trickling answer holds up nobody else).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_vikingdb.local import errors

if TYPE_CHECKING:
    from airflow_provider_vikingdb.local.server import LocalVikingDB


@dataclass
class Answer:
    """What to send back, and how."""

    status: int
    body: bytes
    code: str
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close without answering
    cut: str | None = None  # "body", "headers" or "status": close partway through (faults.CUT_POINTS)
    trickle: float | None = None  # send one byte every this many seconds


def envelope(code: str, message: str, request_id: str, result: Any = None) -> bytes:
    """The V2 answer body: ``{"code", "message", "request_id", "result"}``."""
    return json.dumps(
        {"code": code, "message": message, "request_id": request_id, "result": result},
        separators=(",", ":"),
    ).encode("utf-8")


def cut_short(head: bytes, body: bytes, where: str) -> bytes:
    """The part of an answer sent before the connection is cut at ``where``."""
    status_line_end = head.index(b"\r\n")
    if where == "status":
        # "HTTP/1.1 5": inside the status code. A cut after the code would still parse
        # ("HTTP/1.1 503 Serv" is a status line with a short reason).
        return head[: head.index(b" ") + 2]
    if where == "headers":
        header_block = head[status_line_end + 2 :]
        return head[: status_line_end + 2 + len(header_block) // 2]
    return head + body[: len(body) // 2]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection for many requests
    server_version = "vikingdb-local"
    sys_version = ""
    disable_nagle_algorithm = True  # also set at accept time; see HTTPServer.get_request
    timeout = 300  # reap idle keep-alive connections eventually
    server: HTTPServer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silence BaseHTTPRequestHandler's stderr lines; LocalVikingDB.handle logs each request."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
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
            bad = envelope(errors.INVALID_PARAMETER, "Bad Content-Length.", "")
            self._send(Answer(400, bad, errors.INVALID_PARAMETER))
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
        self._send(answer)

    def _head(self, answer: Answer) -> bytes:
        reason = self.responses.get(answer.status, ("",))[0]
        lines = [
            f"HTTP/1.1 {answer.status} {reason}".rstrip(),
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
        ]
        if not any(name.lower() == "content-type" for name in answer.headers):
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(answer.body)}")
        lines.extend(f"{name}: {value}" for name, value in answer.headers.items() if value)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, answer: Answer) -> None:
        head = self._head(answer)
        body = b"" if self.command == "HEAD" else answer.body
        try:
            if answer.cut is not None:
                self.close_connection = True
                self.wfile.write(cut_short(head, body, answer.cut))
            elif answer.trickle is not None:
                self._trickle(head + body, answer.trickle)
            else:
                self.wfile.write(head + body)
            self.wfile.flush()
        except OSError:  # the client went away (a timed-out client after a stall, ...)
            self.close_connection = True

    def _trickle(self, data: bytes, interval: float) -> None:
        stopping = self.server.stopping
        for position in range(len(data)):
            if position and stopping.wait(interval):
                self.close_connection = True  # the server is stopping: give up mid-answer
                return
            self.wfile.write(data[position : position + 1])
            self.wfile.flush()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # many clients connecting at once must not be refused

    def __init__(self, address: tuple[str, int], app: LocalVikingDB, stopping: threading.Event) -> None:
        self.app = app
        self.stopping = stopping
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

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
