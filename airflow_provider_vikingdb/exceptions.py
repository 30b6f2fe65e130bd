"""Every error the VikingDB provider raises, under one base: ``VikingDBError``.

Every error the service answered carries what Volcengine support asks for: the
service's ``code``, ``message``, ``request_id`` and the HTTP status. Errors met
before anything was sent (``VikingDBConfigError``) say which field is wrong and
how to fix it.

Pure: no imports beyond the standard library (DAG files import it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class VikingDBError(Exception):
    """An error answered by VikingDB (or met on the way to it).

    ``code`` is the service's string code (``InvalidParameter``,
    ``NotFound.VikingdbCollection``, ...) or one of ours for errors the service
    did not name (``Timeout``, ``ConnectionError``, ``IncompleteAnswer``, ``SSLError``,
    ``BadResponse``, ``Interrupted``).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
        path: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.request_id = request_id
        self.http_status = http_status
        self.path = path
        super().__init__(self._text())

    def _text(self) -> str:
        where = f" on {self.path}" if self.path else ""
        status = f"HTTP {self.http_status} " if self.http_status is not None else ""
        code = self.code or "Error"
        rid = f" (request_id={self.request_id})" if self.request_id else ""
        return f"VikingDB {status}{code}{where}: {self.message}{rid}"

    #: set by the request loop on the error it gives up with when an earlier attempt of the same
    #: request was sent and its answer lost: that attempt may have been applied
    earlier_attempt_lost: bool = False

    @property
    def retryable(self) -> bool:
        """Throttling, server errors and network failures may succeed when tried again."""
        return is_retryable_status(self.http_status)

    @property
    def answer_lost(self) -> bool:
        """This attempt was sent and its answer was lost: cut off, timed out, a 200 that is not an
        envelope, or a gateway's 5xx page (``non_envelope_answer_lost``)."""
        return False

    @property
    def maybe_applied(self) -> bool:
        """The request may have been applied although no success came back (outcome unknown).

        True when this attempt's answer was lost (``answer_lost``: cut off, timed out, a 200 that
        is not an envelope, a gateway's 5xx page) or an earlier attempt's was
        (``earlier_attempt_lost``). False for an answer the service gave (an envelope 4xx or 5xx:
        it says what it did) and for a request that was never sent (a host that could not be
        reached, bad input).
        """
        return self.answer_lost or self.earlier_attempt_lost


class VikingDBConfigError(VikingDBError, ValueError):
    """The Airflow connection or an argument is wrong; raised before anything is sent.

    Also a ``ValueError``: it is bad input, and callers that catch ``ValueError`` for
    bad arguments keep working.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code="InvalidConfig")

    def _text(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        return False


class VikingDBAuthError(VikingDBError):
    """The service rejected the credentials or the signature (HTTP 401/403)."""


class VikingDBThrottledError(VikingDBError):
    """HTTP 429: the collection's quota is used up for now."""


#: codes of a request that was sent and whose answer was lost: it may have been applied
ANSWER_LOST_CODES = frozenset(("IncompleteAnswer", "Timeout", "BadResponse"))


def non_envelope_answer_lost(status: int) -> bool:
    """Does an answer with this status that is not an envelope stand for a lost answer?

    The one place that says so. A 200 cut or mangled on the way; and any 5xx page from something in
    front of the service (a gateway, a proxy, a load balancer). A 502 or 504 says it got no valid,
    or no timely, answer from the service (RFC 9110 15.6.3, 15.6.5), which may well have applied
    the request; a 500 or 503 page usually means the request was not passed on, but not always (a
    proxy's 503 on an upstream reset comes after it was). Counting such a batch as outcome unknown
    costs a rollback one harmless delete too many; counting it as not applied would leave rows a
    failed load wrote behind a green rollback. A 4xx page is a refusal, not a lost answer.
    """
    return status == 200 or 500 <= status <= 599


class VikingDBConnectionError(VikingDBError):
    """No usable HTTP answer: the host could not be reached (``ConnectionError``: it got nothing), the
    connection broke mid-answer (``IncompleteAnswer``), a timeout (``Timeout``), or an answer that is
    not an envelope where the service's should have been (``BadResponse``: a 200, or a gateway's 5xx
    page). The last three may have been applied (``maybe_applied``)."""

    @property
    def retryable(self) -> bool:
        return True

    @property
    def answer_lost(self) -> bool:
        return self.code in ANSWER_LOST_CODES


class VikingDBInterruptedError(VikingDBError):
    """The call was interrupted (the task was stopped) before it finished; nothing more is sent."""

    def __init__(
        self,
        message: str = "interrupted: the task is stopping",
        *,
        path: str | None = None,
        in_flight: bool = False,
    ) -> None:
        #: an attempt was in flight (sent, its answer abandoned): it may have been applied
        self.in_flight = in_flight
        super().__init__(message, code="Interrupted", path=path)

    @property
    def retryable(self) -> bool:
        return False

    @property
    def answer_lost(self) -> bool:
        return self.in_flight


class VikingDBBatchError(VikingDBError):
    """A batched call stopped part-way: says what was done, what may have been, and what was not.

    Three disjoint lists of keys (ids for a delete, primary keys for an upsert), in batch order:

    - ``done_ids``: acknowledged by the service;
    - ``unknown_ids``: outcome unknown: their batch was sent and its answer was lost (cut off,
      timed out, a 200 that is not an envelope, a gateway's 5xx page;
      ``VikingDBError.maybe_applied``), so the service may have applied it. A rollback must
      treat them as written, a delete as possibly still there;
    - ``not_done_ids``: not applied: their batch was refused, or never sent.

    ``result`` is the ``BatchResult`` of what was acknowledged, ``failed_batches`` the 1-based
    numbers of the batches that failed and ``failures`` their errors by number. Batches in flight
    when one failed can fail too, for other reasons: ``cause`` is the one that decides what to do
    next, a failure another try cannot fix (a 400 among 503s) if there is one, else the
    lowest-numbered. The message names the others that differ from it.
    """

    def __init__(
        self,
        cause: VikingDBError,
        *,
        action: str,
        result: Any,
        failed_batches: list[int],
        done_ids: list[str | int],
        not_done_ids: list[str | int],
        unknown_ids: list[str | int] | None = None,
        failures: Mapping[int, VikingDBError] | None = None,
    ) -> None:
        self.cause = cause
        self.result = result
        self.failed_batches = failed_batches
        self.failures = dict(failures or {})
        self.done_ids = done_ids
        self.unknown_ids = list(unknown_ids or ())
        self.not_done_ids = not_done_ids
        others = {n: e for n, e in sorted(self.failures.items()) if brief(e) != brief(cause)}
        same = [n for n in failed_batches if n not in others]
        also = "; ".join(f"batch {n}: {brief(e)}" for n, e in others.items())
        summary = (
            f"{action} stopped on {result.target}: {'batch' if len(same) == 1 else 'batches'} "
            f"{', '.join(map(str, same))} of {result.batches_total} failed with "
            f"{end_sentence(str(cause))} "
            + (f"Also failed, in flight at the same time: {also}. " if also else "")
            + outcome_text(
                action,
                done=len(done_ids),
                requested=result.ids_requested,
                batches=result.batches,
                batches_total=result.batches_total,
                unknown=self.unknown_ids,
                not_done=not_done_ids,
                unknown_why="sent, but no usable answer came back: the service may have applied them",
            )
            + " "
            + next_step(action, retry_helps=retry_helps(cause))
        )
        super().__init__(
            summary,
            code=cause.code,
            request_id=cause.request_id,
            http_status=cause.http_status,
        )

    def _text(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        return False


def brief(error: VikingDBError) -> str:
    """``HTTP 503 ServiceUnavailable``: an error in a few words, to name it beside another."""
    status = f"HTTP {error.http_status} " if error.http_status is not None else ""
    return f"{status}{error.code or type(error).__name__}"


def retry_helps(error: VikingDBError) -> bool:
    """Could another try of the task get past ``error``? The one place that says so.

    Yes when it is ``retryable`` (429, 5xx, timeouts, unreachable hosts, cut answers) or the task
    was interrupted from outside (nothing is wrong with the request). ``maybe_applied`` does not
    enter into it: a 403 or a 400 on a retry whose earlier attempt lost its answer leaves its ids
    outcome unknown, and is still a 403 or a 400 on the next try.
    """
    return error.retryable or isinstance(error, VikingDBInterruptedError)


def stopping_cause(failures: Mapping[int, VikingDBError]) -> int:
    """Of batches that failed (errors by number), the number of the one that decides what to do
    next: the lowest-numbered failure another try cannot fix (``retry_helps`` is false: a 400
    among 503s, retrying would only fail on it again), else the lowest-numbered one."""
    permanent = [n for n, e in failures.items() if not retry_helps(e)]
    return min(permanent or failures)


def outcome_text(
    action: str,
    *,
    done: int,
    requested: int,
    batches: int,
    batches_total: int,
    unknown: Sequence[object],
    not_done: Sequence[object],
    unknown_why: str,
) -> str:
    """The three-way split of a batched call, one sentence: acknowledged, outcome unknown, not done.

    ``100 of 300 ids acknowledged in 1 of 3 batches; outcome unknown: 200 ids (first: ...) (why);
    not deleted (refused, or never sent): 0 ids.``
    """
    verb = "deleted" if action == "delete" else "written"
    return (
        f"{done} of {plural(requested, 'id')} acknowledged in {batches} of {plural(batches_total, 'batch')}; "
        f"outcome unknown: {plural(len(unknown), 'id')}{sample(unknown)}"
        f"{f' ({unknown_why})' if unknown else ''}; "
        f"not {verb} (refused, or never sent): {plural(len(not_done), 'id')}{sample(not_done)}."
    )


def next_step(action: str, *, retry_helps: bool) -> str:
    """What to do after a batched call stopped part-way (the last sentence of its messages)."""
    again = "deletes" if action == "delete" else "upserts"
    if retry_helps:
        return (
            f"{again.capitalize()} are idempotent: clearing the task (or an Airflow retry) sends "
            "all of them again, those already applied included, and finishes the job if its "
            "execution_timeout leaves it the time."
        )
    return (
        f"Fix the cause above, then clear the task: {again} are idempotent, so what was already "
        "applied is harmless to send again."
    )


def plural(count: int, word: str) -> str:
    """``1 id``, ``2 ids``, ``1 batch``, ``3 batches``."""
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word}{'es' if word.endswith(('s', 'sh', 'ch', 'x')) else 's'}"


def end_sentence(text: str) -> str:
    """``text`` ending in one full stop: ``"failed: x"`` and ``"failed: x."`` both give ``"failed: x."``.

    Messages quote other messages (a cause, a hint that ends its own sentence) and go on
    after them; this is where the full stop between them is decided, once.
    """
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def is_retryable_status(status: int | None) -> bool:
    """The one place that says which HTTP answers are worth another attempt.

    The service's code list is not documented, so classify by status: 429
    (throttled) and 5xx are transient, every other 4xx is permanent.
    """
    return status is not None and (status == 429 or status >= 500)


def sample(ids: Sequence[object], limit: int = 5) -> str:
    """`` (first: 'a', 'b', ...)`` for a message, or nothing for no ids."""
    if not ids:
        return ""
    shown = ", ".join(repr(i) for i in ids[:limit])
    return f" (first: {shown}{', ...' if len(ids) > limit else ''})"
