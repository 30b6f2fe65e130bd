"""VikingDBUpsertOperator: write records into a VikingDB collection, and say which ids were written.

The load side of an ETL rollback. The ids the service acknowledged, and those of batches whose
outcome is unknown (sent, the answer lost: they may have been written), go to XCom key
``written_ids`` whatever happens (success, a batch failing part-way, an interruption), so
``VikingDBDeleteOperator(ids=load.written_ids, trigger_rule="one_failed")`` takes back
exactly what the load wrote. Records can carry a TTL (the service deletes them itself).

Imported by DAG files at parse time: only ``airflow.sdk`` and our pure modules at top level;
the hook (``requests``, ``volcengine``) and the object-storage library load when a task runs.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator, XComArg

from airflow_provider_vikingdb._compat import fail_task, task_name
from airflow_provider_vikingdb.arguments import (
    check_positive_int,
    check_rows_per_second,
    check_target_args,
    rendered_target,
)
from airflow_provider_vikingdb.connection import DEFAULT_CONN_ID
from airflow_provider_vikingdb.exceptions import VikingDBBatchError, VikingDBError, end_sentence, plural
from airflow_provider_vikingdb.ids import check_batch_size
from airflow_provider_vikingdb.operators._hook import BatchedHookMixin
from airflow_provider_vikingdb.receipts import storage_path
from airflow_provider_vikingdb.records import (
    InvalidRecordsError,
    check_id_field,
    check_records,
    check_ttl,
    iter_jsonl_records,
)
from airflow_provider_vikingdb.target import Target
from airflow_provider_vikingdb.task_failure import fail_try

if TYPE_CHECKING:
    from airflow.sdk import Context


__all__ = ["WRITTEN_IDS_KEY", "VikingDBUpsertOperator"]

#: XCom key of the ids the service acknowledged or may have written (outcome unknown), pushed on
#: success, failure and interruption
WRITTEN_IDS_KEY = "written_ids"
#: what ``written_ids`` holds while a load runs, before anything is sent: a load killed outright
#: (out of memory, SIGKILL) leaves it, and a rollback by ids then says it cannot know what to delete
UNFINISHED = {"unfinished": True, "why": "the load started and has not recorded what it wrote"}


def is_unfinished(value: object) -> bool:
    """``written_ids`` of a load that started and never recorded what it wrote."""
    return isinstance(value, Mapping) and value.get("unfinished") is True


class VikingDBUpsertOperator(BatchedHookMixin, BaseOperator):
    """Upsert records into a VikingDB collection, with an optional TTL, in batches.

    :param collection_name: the collection (templated). Give this or ``resource_id``.
    :param resource_id: the collection's resource id (templated), instead of its name.
    :param records: a list of records (dicts of field -> value), e.g. an XComArg such as
        ``make_rows()`` (templated; Jinja text of a list is parsed back into the list).
    :param records_path: instead of ``records``: a JSON Lines file, one record per line, as an
        ``ObjectStoragePath`` or a URI (``file:///...``, ``s3://...``; templated). Read twice,
        streaming: once to check every record, once to send, so a load larger than XCom works.
    :param id_field: the collection's primary-key field (default ``"id"``).
    :param ttl: seconds (or a ``timedelta``) each record lives, 1..2**31-1, sent with every batch
        (templated); None: the records never expire.
    :param batch_size: records per request, 1..100 (use 1 for a collection that vectorizes on write).
    :param max_concurrency: requests in flight at once (default: the hook's, 8).
    :param rows_per_second: optional fixed cap; without it the hook adapts to the quota by itself.
    :param vikingdb_conn_id: the Airflow connection of type ``vikingdb``.

    Every record is checked before anything is sent (a key under ``id_field``: int64 other than
    0 or a non-empty string, one type, no repeats; values JSON can encode, no NaN): the first
    bad one is named with its position and nothing is sent.

    Pushes the acknowledged ids to XCom key ``written_ids`` (also when a batch fails part-way
    or the task is interrupted; ``[]`` when bad input stopped it before sending), with the ids
    of any batch whose outcome is unknown (sent, the answer lost or abandoned): they may have
    been written, and deleting an id that never was is harmless. ``written_ids``
    (the attribute) is that XCom as an XComArg, for the rollback's ``ids``. Returns a summary:
    ``target``, ``records``, ``ids_written``, ``batches``, ``throttled``, ``retries``, ``ttl``,
    ``last_request_id``.
    """

    template_fields: Sequence[str] = ("collection_name", "resource_id", "records", "records_path", "ttl")
    ui_color = "#e8fff1"

    def __init__(
        self,
        *,
        collection_name: str | None = None,
        resource_id: str | None = None,
        records: Any = None,
        records_path: Any = None,
        id_field: str = "id",
        ttl: Any = None,
        batch_size: int = 100,
        max_concurrency: int | None = None,
        rows_per_second: float | None = None,
        vikingdb_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner = task_name(self)
        check_target_args(owner, collection_name, resource_id)
        try:
            if (records is None) == (records_path is None):
                raise ValueError(
                    "give exactly one of records (a list of dicts, e.g. records=make_rows()) or "
                    "records_path (a JSON Lines file)"
                )
            check_batch_size(batch_size)
            if max_concurrency is not None:
                check_positive_int("max_concurrency", max_concurrency)
            check_rows_per_second(rows_per_second)
            check_id_field(id_field)
            if not (isinstance(ttl, str) and "{{" in ttl):
                check_ttl(ttl)
        except ValueError as exc:  # InvalidRecordsError and InvalidIdsError are ValueErrors too
            raise ValueError(f"{owner}: {exc}") from None
        self.collection_name = collection_name
        self.resource_id = resource_id
        self.records = records
        self.records_path = records_path
        self.id_field = id_field
        self.ttl = ttl
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.rows_per_second = rows_per_second
        self.vikingdb_conn_id = vikingdb_conn_id

    @property
    def written_ids(self) -> XComArg:
        """The ids this task wrote, for a rollback: ``VikingDBDeleteOperator(ids=load.written_ids)``."""
        return XComArg(self, key=WRITTEN_IDS_KEY)

    #: of ``written_ids``: ids whose batch's outcome is unknown (this try)
    _unknown_written = 0
    #: this try's number: above 1 (a retry, or a cleared task's new try), earlier tries may have
    #: written any of the records, and Airflow cleared the written_ids they recorded
    _try_number = 1
    #: ``written_ids`` holds every id of the input (a later try, once the input was checked)
    _whole_input = False

    def execute(self, context: Context) -> dict[str, Any]:
        written: list[str | int] = []
        self._unknown_written, self._whole_input = 0, False
        ti = context.get("ti")
        self._try_number = getattr(ti, "try_number", None) or 1
        # Before anything is sent: a rollback that finds no written_ids at all knows the load
        # never ran; one that finds this knows it ran and was killed before saying what it wrote.
        if ti is not None:
            ti.xcom_push(key=WRITTEN_IDS_KEY, value=UNFINISHED)
        try:
            with self._killable():
                summary = self._load(written, context)
        except BaseException:
            # Whatever happened (a batch refused, bad input, a timeout, a kill): what the
            # service acknowledged is where the rollback reads it.
            self._push_written(context, written, failing=True)
            raise
        self._push_written(context, written)
        return summary

    def _load(self, written: list[str | int], context: Context) -> dict[str, Any]:
        target = self._checked_target()
        try:
            ttl = check_ttl(self.ttl)
        except InvalidRecordsError as exc:
            self._fail(f"{exc}. Nothing was sent.")
        if self.records_path is not None:
            path = self._checked_path()
            count = self._check_file(path)
            rows: Any = self._read_file(path) if count else []
            source = f"{count} records of {path}"
            again = partial(self._read_file, path)  # another pass over the file
        else:
            try:
                rows = check_records(self.records, self.id_field)
            except InvalidRecordsError as exc:
                self._fail(f"{exc}. Nothing was sent.")
            count = len(rows)
            source = f"{count} records"
            again = partial(iter, rows)
        summary: dict[str, Any] = {"target": str(target), "records": count, "ttl": ttl}
        if not count:
            self.log.info("No records to write to %s: nothing sent.", target)
            nothing = {"ids_written": 0, "batches": 0, "throttled": 0, "retries": 0, "last_request_id": None}
            return {**summary, **nothing}

        id_field = self.id_field
        if self._try_number > 1:
            # What earlier tries wrote is not known any more, and may be any of the records: the
            # rollback must be able to take back all of them, from before the first request.
            written.extend(row[id_field] for row in again())
            self._whole_input = True
            self.log.warning(
                "This is try %d of the load: an earlier try may have written any of the %s, and "
                "Airflow cleared the %r it recorded when this try started. %r holds all %s from now "
                "on, so a rollback takes back whatever any try wrote.",
                self._try_number,
                plural(count, "record"),
                WRITTEN_IDS_KEY,
                WRITTEN_IDS_KEY,
                plural(len(written), "id"),
            )
            self._push_written(context, written)

        def acknowledged(batch: Sequence[Mapping[str, Any]], envelope: dict[str, Any]) -> None:
            if self._whole_input:
                return  # listed already
            written.extend(row[id_field] for row in batch)  # one batch at a time (the pool's lock)

        def maybe_written(batch: Sequence[Mapping[str, Any]], error: VikingDBError | None) -> None:
            if self._whole_input:
                return
            # Sent, the answer lost: the rows may be in the collection. A rollback must delete
            # them (deleting an id never written is harmless; leaving one written is not). A
            # batch the task was stopped on just as it was recorded as acknowledged (the last
            # recorded) is there already: the ids count once.
            keys = [row[id_field] for row in batch]
            if written[-len(keys) :] == keys:
                return
            written.extend(keys)
            self._unknown_written += len(keys)

        self.log.info(
            "Upserting %s into %s in batches of at most %d%s",
            source,
            target,
            self.batch_size,
            f", ttl {ttl} s" if ttl is not None else "",
        )
        try:
            result = self.hook.upsert(
                rows,
                key_field=id_field,
                ttl=ttl,
                batch_size=self.batch_size,
                max_concurrency=self.max_concurrency,
                on_batch=acknowledged,
                on_unknown=maybe_written,
                **target.body,
            )
        except VikingDBBatchError as exc:
            fail_try(
                self,
                f"{end_sentence(str(exc))} XCom {WRITTEN_IDS_KEY!r} holds "
                f"{self._written_text(len(written))}: a rollback deletes them with "
                f"VikingDBDeleteOperator(ids={self.task_id}.written_ids).",
                exc,
            )
        except VikingDBError as exc:  # e.g. a record of the file that changed after it was checked
            fail_try(self, str(exc), exc)
        finally:
            if isinstance(rows, Generator):
                rows.close()  # closes the file
        self.log.info(
            "Wrote %s to %s in %s (%d throttled, %d retries).",
            plural(result.ids_done, "record"),
            result.target,
            plural(result.batches, "batch"),
            result.throttled,
            result.retries,
        )
        return {
            **summary,
            "ids_written": result.ids_done,
            "batches": result.batches,
            "throttled": result.throttled,
            "retries": result.retries,
            "last_request_id": result.request_ids[-1] if result.request_ids else None,
        }

    # ---- records_path ----

    def _checked_path(self) -> Any:
        try:
            return storage_path(self.records_path, "records_path")
        except ValueError as exc:
            self._fail(f"{exc}. Nothing was sent.")

    def _check_file(self, path: Any) -> int:
        """The first pass: every record checked, streaming; returns how many there are."""
        count = 0
        try:
            with path.open("rb") as stream:
                for _ in iter_jsonl_records(stream, self.id_field):
                    count += 1
        except InvalidRecordsError as exc:
            self._fail(f"records_path {path}: {exc}. Nothing was sent.")
        except OSError as exc:
            self._fail(f"records_path {path} cannot be read: {type(exc).__name__}: {exc}. Nothing was sent.")
        self.log.info("Checked %d records in %s.", count, path)
        return count

    def _read_file(self, path: Any) -> Iterator[dict[str, Any]]:
        """The second pass: the records again, streamed to the hook (checked again as they go)."""
        with path.open("rb") as stream:
            yield from iter_jsonl_records(stream, self.id_field)

    # ---- helpers ----

    def _push_written(self, context: Context, written: list[str | int], *, failing: bool = False) -> None:
        ti = context.get("ti")
        if ti is None:
            return
        try:
            ti.xcom_push(key=WRITTEN_IDS_KEY, value=list(written))
        except Exception as exc:
            self.log.error("Could not push %d written ids to XCom %r: %s", len(written), WRITTEN_IDS_KEY, exc)
            if not failing:  # a failing task's own error says more than this one
                raise
            return
        self.log.info("XCom %r holds %s (this try).", WRITTEN_IDS_KEY, self._written_text(len(written)))

    def _written_text(self, count: int) -> str:
        """``the 100 ids the service acknowledged`` (and those whose outcome is unknown)."""
        if self._whole_input:
            return (
                f"all {plural(count, 'id')} of the input (try {self._try_number}: an earlier try may have "
                "written any of them)"
            )
        unknown = self._unknown_written
        text = f"the {plural(count - unknown, 'id')} the service acknowledged"
        if unknown:
            text += (
                f" and the {plural(unknown, 'id')} whose outcome is unknown (sent, the answer lost: "
                "they may have been written)"
            )
        return text

    def _checked_target(self) -> Target:
        try:
            return Target.from_body(rendered_target(self.collection_name, self.resource_id))
        except ValueError as exc:
            self._fail(str(exc))

    def _fail(self, message: str) -> NoReturn:
        fail_task(self, message)
