"""Deletion receipts: a JSON Lines file that shows what a delete removed, when, with which request.

A retention or erasure run is often evidence for an audit. The task's XCom summary keeps
counts and the last request id; a receipt keeps every acknowledged batch:

    {"kind": "batch", "target": "collection 'docs'", "ids": ["a", "b"], "request_id": "...", "time": "..."}
    ...
    {"kind": "unknown", "target": ..., "ids": ["c", "d"], "request_id": null, "error": "...", "time": "..."}
    {"kind": "final", "target": ..., "run": {...}, "outcome": "failed", "counts": {...}, ...}

An ``unknown`` line is a batch whose outcome is unknown: it was sent and its answer was lost
(cut off, timed out, abandoned by an interruption), so the service may have deleted its ids.
The final line's ``counts`` say ``ids_deleted`` (acknowledged) and ``batches``; when the delete
did not succeed they split the ids three ways: ``ids_deleted``, ``ids_unknown`` and (when the
number requested is known) ``ids_not_deleted`` (refused, or never sent: ``ids_requested`` less
the other two).

Use it from any delete path (ids, ``del_all``, delete-by-filter)::

    with Receipt.open(uri, target=str(target), run=run_info(context), requested=len(ids)) as receipt:
        hook.delete(ids, on_batch=receipt.on_batch, on_unknown=receipt.on_unknown, **target.body)
        receipt.finish("success", summary)

``batch(ids, request_id)`` writes one line per acknowledged batch (``on_batch`` is the
hook's callback shape), ``unknown(ids, error)`` one per batch whose outcome is unknown
(``on_unknown`` is the hook's callback shape); ``finish(outcome, summary)`` the last line.
Leaving the block on an exception writes the last line by itself (outcome ``failed``, or ``interrupted`` for a
timeout or a kill), with what was done until then and the error; leaving it normally
without ``finish`` writes ``success``. A second ``finish`` is ignored.

Where: an ``ObjectStoragePath`` or a URI (``file:///data/receipts/run.jsonl``, ``s3://...``
with the Amazon provider installed, an absolute local path). A local file is appended to (a
task retry adds its lines after the first try's final line); an object store cannot append,
so there an existing receipt is never overwritten: the open fails, naming the fix. The
storage library is imported when a receipt is opened, not when this module is.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import IO, Any

__all__ = ["Receipt", "ReceiptError", "read_receipt", "run_info", "storage_path"]

#: filesystems that can append to a file in place
_LOCAL = frozenset(("", "file", "local"))


class ReceiptError(ValueError):
    """The receipt cannot be written where it was asked to be (raised before anything is deleted).

    ``retryable``: the store could not be reached (a connection refused or reset, a timeout), so
    another try of the task may write it; anything else (a bad place, no permission, an object
    that exists already) fails the same way on every try.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


#: exception class names that mean "the store could not be reached": Python's own, and the names
#: object-store clients give theirs (botocore's ``ConnectionError``, under ``EndpointConnectionError``
#: and ``ConnectTimeoutError``; its ``ReadTimeoutError``), which do not derive from Python's
_UNREACHABLE = frozenset(("ConnectionError", "TimeoutError", "ReadTimeoutError", "ConnectTimeoutError"))


def unreachable(error: BaseException) -> bool:
    """Does ``error`` (from opening a receipt) say the store could not be reached?

    Not a TLS failure, although botocore's and requests' ``SSLError`` derive from their
    ``ConnectionError``: a certificate that does not verify fails on every try (as the hook's do).
    """
    names = {cls.__name__ for cls in type(error).__mro__}
    if "SSLError" in names:
        return False
    # A name that does not resolve (socket.gaierror), a network or host out of reach: OSErrors
    # that are not ConnectionErrors, and that the next try may well not meet.
    network = isinstance(error, OSError) and (
        isinstance(error, socket.gaierror)
        or error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN)
    )
    return network or bool(names & _UNREACHABLE)


def storage_path(value: Any, field: str = "receipt") -> Any:
    """``value`` (an ``ObjectStoragePath``, a URI or an absolute local path) as an ``ObjectStoragePath``."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(value, ObjectStoragePath):
        return value
    text = str(value).strip() if value is not None else ""
    if not text or text == "None":
        raise ReceiptError(
            f"{field} rendered to {value!r}: give a URI such as file:///data/x.jsonl or s3://..."
        )
    try:
        path = ObjectStoragePath(text)
    except Exception as exc:  # an unknown scheme, a provider that is not installed
        raise ReceiptError(f"{field} = {text!r} cannot be opened: {exc}") from None
    if path.protocol in _LOCAL and not text.startswith(("/", "file:", "local:")):
        raise ReceiptError(
            f"{field} = {text!r} is a relative path: give an absolute path or a URI "
            "(file:///data/x.jsonl, s3://bucket/key.jsonl)"
        )
    return path


def run_info(context: Mapping[str, Any] | None) -> dict[str, Any]:
    """Which task run did the work: dag, task, run, try and map index (from the task's context)."""
    ti = (context or {}).get("ti")
    if ti is None:
        return {}
    info = {
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "map_index": getattr(ti, "map_index", None),
    }
    return {k: v for k, v in info.items() if isinstance(v, (str, int)) and not isinstance(v, bool)}


def read_receipt(path: Any) -> list[dict[str, Any]]:
    """Every line of a receipt, parsed (for checks and audits)."""
    with storage_path(path).open("r", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Receipt:
    """An open receipt: one line per acknowledged batch, then one final line. Thread-safe."""

    def __init__(
        self,
        stream: IO[str],
        *,
        uri: str,
        target: str,
        run: Mapping[str, Any] | None = None,
        requested: int | None = None,
    ) -> None:
        self.uri = uri
        self.target = target
        self.run = dict(run or {})
        self.requested = requested
        self.ids_deleted = 0
        self.ids_unknown = 0
        self.batches = 0
        self.del_all = False
        self.finished = False
        self.started_at = _now()
        self._stream = stream
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        where: Any,
        *,
        target: str,
        run: Mapping[str, Any] | None = None,
        requested: int | None = None,
    ) -> Receipt:
        """Open the receipt at ``where`` now (else ``ReceiptError``, before anything is deleted)."""
        path = storage_path(where)
        uri = str(path)
        local = path.protocol in _LOCAL
        try:
            if local:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif path.exists():
                raise ReceiptError(
                    f"receipt {uri} exists already, and an object store cannot append to it: give each "
                    "try its own receipt, e.g. ...-{{ ti.try_number }}.jsonl"
                )
            stream = path.open("a" if local else "w", encoding="utf-8")
        except ReceiptError:
            raise
        except Exception as exc:
            raise ReceiptError(
                f"cannot write the receipt {uri}: {type(exc).__name__}: {exc}",
                retryable=unreachable(exc),
            ) from None
        return cls(stream, uri=uri, target=target, run=run, requested=requested)

    def __enter__(self) -> Receipt:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        try:
            if error is None:
                self.finish("success")
            else:
                # A timeout or a kill is not an Exception: it stopped the work rather than failed it.
                self.finish("failed" if isinstance(error, Exception) else "interrupted", error=error)
        finally:
            self._stream.close()

    def batch(self, ids: Sequence[str | int], request_id: str | None) -> None:
        """One acknowledged batch: its ids and the request that deleted them."""
        id_list = list(ids)
        line = {"kind": "batch", "target": self.target, "ids": id_list, "request_id": request_id}
        with self._lock:
            # Counted once written: a line that cannot be written (a full store) leaves the batch
            # to the caller, which reports it as outcome unknown; counting it deleted too would
            # make the final counts add up to more than was asked.
            self._write({**line, "time": _now()})
            self.ids_deleted += len(id_list)
            self.batches += 1

    def on_batch(self, ids: Sequence[str | int], envelope: Mapping[str, Any]) -> None:
        """``batch`` in the shape of the hook's ``on_batch(batch, envelope)`` callback."""
        self.batch(ids, envelope.get("request_id") or None)

    def unknown(self, ids: Sequence[str | int], error: BaseException | None = None) -> None:
        """One batch whose outcome is unknown (sent, answer lost): its ids and the error that ended it."""
        id_list = list(ids)
        line = {
            "kind": "unknown",
            "target": self.target,
            "ids": id_list,
            "request_id": getattr(error, "request_id", None),
            "error": f"{type(error).__name__}: {error}"
            if error is not None
            else "in flight when interrupted",
        }
        with self._lock:
            self.ids_unknown += len(id_list)  # counted even if the line fails: the final line says so
            self._write({**line, "time": _now()})

    #: ``unknown`` already has the shape of the hook's ``on_unknown(batch, error)`` callback; the
    #: name pairs it with ``on_batch``
    on_unknown = unknown

    def delete_all(self, request_id: str | None, records_before: int | None = None) -> None:
        """The one request of a ``del_all`` (it names no ids); ``records_before`` if counted."""
        line = {
            "kind": "batch",
            "target": self.target,
            "del_all": True,
            "ids": None,
            "request_id": request_id,
        }
        with self._lock:
            self.del_all = True
            self.batches += 1
            self._write({**line, "records_before": records_before, "time": _now()})

    def finish(
        self, outcome: str, summary: Mapping[str, Any] | None = None, *, error: BaseException | None = None
    ) -> None:
        """The last line: target, run, counts, outcome (``success``/``failed``/...), summary, error."""
        with self._lock:
            if self.finished:
                return
            self.finished = True
            counts: dict[str, Any] = {"ids_deleted": self.ids_deleted, "batches": self.batches}
            if self.requested is not None:
                counts["ids_requested"] = self.requested
            if outcome != "success" and not self.del_all:
                # A delete that stopped: what may have been deleted, and what was not.
                counts["ids_unknown"] = self.ids_unknown
                if self.requested is not None:
                    counts["ids_not_deleted"] = max(self.requested - self.ids_deleted - self.ids_unknown, 0)
            if self.del_all:
                counts["del_all"] = True
            line: dict[str, Any] = {
                "kind": "final",
                "target": self.target,
                "run": self.run,
                "outcome": outcome,
                "counts": counts,
                "started_at": self.started_at,
                "finished_at": _now(),
            }
            if summary is not None:
                line["summary"] = dict(summary)
            if error is not None:
                line["error"] = f"{type(error).__name__}: {error}"
            self._write(line)

    def _write(self, line: Mapping[str, Any]) -> None:
        # One line at a time, flushed: what was written survives the task failing after it.
        self._stream.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        self._stream.flush()
