"""VikingDBDeleteOperator: delete records from a VikingDB collection as a DAG step.

Imported by DAG files at parse time: only ``airflow.sdk`` and our pure modules
at top level; the hook (and through it ``requests``/``volcengine``) is imported
when the task runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator

from airflow_provider_vikingdb._compat import XComNotFound, default_deferrable, fail_task, task_name
from airflow_provider_vikingdb.arguments import (
    check_ids_args,
    check_max_delete,
    check_positive_int,
    check_target_args,
    jinja_dependency_warning,
    parse_del_all,
    parse_flag,
    rendered_target,
    rendered_text,
)
from airflow_provider_vikingdb.connection import DEFAULT_CONN_ID
from airflow_provider_vikingdb.exceptions import VikingDBError, end_sentence, plural
from airflow_provider_vikingdb.filter_delete import DEFAULT_MAX_PASSES, MAX_PAGE_SIZE
from airflow_provider_vikingdb.ids import InvalidIdsError, check_batch_size, normalize_ids
from airflow_provider_vikingdb.index_sync import (
    DEFAULT_MAX_CHECKED_IDS,
    DEFAULT_POKE_INTERVAL,
    check_max_checked_ids,
    check_seconds,
)
from airflow_provider_vikingdb.operators._hook import BatchedHookMixin
from airflow_provider_vikingdb.operators.by_filter import check_filter_args, execute_by_filter
from airflow_provider_vikingdb.operators.index_wait import (
    DELETE_SUMMARY_KEY,
    IndexNotSyncedError,
    IndexWaitMixin,
)
from airflow_provider_vikingdb.operators.upsert import WRITTEN_IDS_KEY, VikingDBUpsertOperator, is_unfinished
from airflow_provider_vikingdb.receipts import Receipt, ReceiptError, run_info
from airflow_provider_vikingdb.target import Target
from airflow_provider_vikingdb.task_failure import fail_try

__all__ = [
    "DELETE_SUMMARY_KEY",
    "IndexNotSyncedError",
    "VikingDBDeleteOperator",
    "VikingDBUpsertOperator",
    "parse_del_all",
]

_NOTHING_TO_DELETE = (
    "nothing to delete: give ids (e.g. ids=upstream_task.output), a filter (filter=..., or "
    "time_field=/older_than=, with index_name), or del_all=True"
)


if TYPE_CHECKING:
    from datetime import timedelta

    import jinja2
    from airflow.sdk import Context


_DEL_ALL_COUNT = (
    "{what} with del_all=True counts the records through an index first: give index_name "
    "(or wait_for_index). Nothing was sent."
)


class VikingDBDeleteOperator(BatchedHookMixin, IndexWaitMixin, BaseOperator):
    """Delete records from a VikingDB collection by primary key, by filter, or all of them.

    :param collection_name: the collection (templated). Give this or ``resource_id``.
    :param resource_id: the collection's resource id (templated), instead of its name.
    :param ids: primary keys to delete (templated): a list, tuple, set or generator of int64 or
        non-empty strings, or an XComArg such as ``upstream.output``. A Jinja string that renders
        to the text of a list is parsed back into the list; one that renders to ``"None"`` or
        ``""`` fails the task. Repeats are dropped.
    :param del_all: delete every record of the collection (templated; a bool or "true"/"false").
    :param filter: instead of ids, delete what a VikingDB filter matches (templated; a dict, or its
        JSON text as Jinja renders it; numeric text in range bounds becomes numbers). Needs
        ``index_name`` (the ids are searched there). A filter that restricts nothing is refused.
    :param time_field: with ``older_than``: delete the records whose int64 ``time_field`` (epoch in
        ``time_unit``, "s" or "ms") is older than ``older_than`` (a timedelta or seconds) at the
        run's ``data_interval_end``, so a retry deletes the same set. ANDed with ``filter``.
        ``older_than`` is templated (a rendered number of seconds is read as one).
    :param sort_field: an int64/float32 field to page by (default: ``time_field``); without one,
        pages come from ``search/random``.
    :param page_size: ids per search page, 1..5000. ``max_passes``: searches after the index has
        applied the deletes, before failing with how many records still match.
    :param batch_size: ids per request, 1..100 (VikingDB's limit is 100).
    :param max_concurrency: requests in flight at once (default: the hook's, 8).
    :param rows_per_second: optional fixed cap; without it the hook adapts to the quota by itself.
    :param vikingdb_conn_id: the Airflow connection of type ``vikingdb``.
    :param wait_for_index: an index name (templated): after deleting, wait until this index
        reflects the delete (the deleted ids are gone from it; after ``del_all``, it is empty).
        Deletes reach the collection at once but its indexes only later (about 20 s; about
        5 minutes after ``del_all``). Default None: no wait.
    :param deferrable: wait in the triggerer (``VikingDBIndexSyncTrigger``), holding no worker slot.
    :param index_poke_interval: seconds (or a ``timedelta``) between looks at the index (default 5).
    :param index_timeout: seconds (or a ``timedelta``) to wait for the index (default 10 minutes,
        15 after ``del_all``); then the task fails with how many checked ids were still in the index.
    :param max_checked_ids: ids checked per look at the index (default 1000); a larger delete is
        checked through a random sample of this size, and the log says so.
    :param receipt: where to write a deletion receipt (templated): an ``ObjectStoragePath`` or a
        URI such as ``file:///data/receipts/{{ run_id }}.jsonl`` or ``s3://...``. JSON Lines: one
        line per acknowledged batch (ids, request_id, time), then a final line with the target,
        the run, the counts and the outcome; written also when the task fails part-way. Opened
        before anything is deleted: a receipt that cannot be written fails the task first.

    Returns (to XCom) a summary: ``ids_requested``, ``ids_deleted``, ``batches``, ``del_all``,
    ``throttled``, ``retries``, ``target``, ``last_request_id`` and ``receipt``. With ``wait_for_index``
    also ``index_name``, ``index_synced`` (True), ``index_checked_ids``, ``index_sampled``,
    ``index_looks`` and ``index_wait_seconds``; the delete's summary is pushed to XCom key
    ``delete_summary`` before the wait, so it is there even when the wait fails.

    If a batch fails for good, nothing more is sent and the task fails with the
    service's code, message and request_id, how many ids were deleted in how
    many batches, and which batch failed. Deletes are idempotent: a task retry
    simply sends them again.
    """

    template_fields: Sequence[str] = (
        "collection_name",
        "resource_id",
        "ids",
        "del_all",
        "index_name",
        "wait_for_index",
        "dry_run",
        "filter",
        "older_than",
        "receipt",
    )
    ui_color = "#e8f1ff"
    # The public parameter, kept as the template field of that name: on an instance it hides
    # BaseOperator.dry_run(), the method that renders the template fields and logs them, which
    # Airflow itself never calls (checked: 3.1.8, 3.3.2). Declared here so mypy types the attribute.
    dry_run: bool | str  # type: ignore[assignment]

    def __init__(
        self,
        *,
        collection_name: str | None = None,
        resource_id: str | None = None,
        ids: Any = None,
        del_all: bool | str = False,
        batch_size: int = 100,
        max_concurrency: int | None = None,
        rows_per_second: float | None = None,
        vikingdb_conn_id: str = DEFAULT_CONN_ID,
        index_name: str | None = None,
        wait_for_index: str | None = None,
        deferrable: bool | None = None,
        index_poke_interval: timedelta | float = DEFAULT_POKE_INTERVAL,
        index_timeout: timedelta | float | None = None,
        index_settle: timedelta | float | None = None,
        max_checked_ids: int = DEFAULT_MAX_CHECKED_IDS,
        max_delete: int | None = None,
        dry_run: bool | str = False,
        filter: Any = None,
        time_field: str | None = None,
        older_than: Any = None,
        time_unit: str = "s",
        sort_field: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        max_passes: int = DEFAULT_MAX_PASSES,
        receipt: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # What can be known at parse time fails the DAG import, not a run at 3 a.m.
        owner = task_name(self)
        check_target_args(owner, collection_name, resource_id)
        by_filter = filter is not None or time_field is not None or older_than is not None
        if not by_filter:
            check_ids_args(owner, ids, del_all, _NOTHING_TO_DELETE)
        try:
            if by_filter:
                check_filter_args(
                    ids=ids,
                    del_all=del_all,
                    filter=filter,
                    time_field=time_field,
                    older_than=older_than,
                    time_unit=time_unit,
                    index_name=index_name,
                    wait_for_index=wait_for_index,
                    sort_field=sort_field,
                    page_size=page_size,
                    max_passes=max_passes,
                )
            check_batch_size(batch_size)
            if max_concurrency is not None:
                check_positive_int("max_concurrency", max_concurrency)
            index_poke_interval = check_seconds("index_poke_interval", index_poke_interval)
            if index_timeout is not None:
                index_timeout = check_seconds("index_timeout", index_timeout)
            if index_settle is not None:
                index_settle = check_seconds("index_settle", index_settle)
            check_max_checked_ids(max_checked_ids)
            check_max_delete(max_delete)
            if not (isinstance(dry_run, str) and "{{" in dry_run):  # a template is checked once rendered
                parse_flag("dry_run", dry_run)
            if del_all is True and index_name is None and wait_for_index is None:
                # what execute() refuses, said when the DAG is parsed where all of it is literal
                if max_delete is not None:
                    raise ValueError(_DEL_ALL_COUNT.format(what="max_delete"))
                if dry_run is True:
                    raise ValueError(_DEL_ALL_COUNT.format(what="dry_run"))
        except ValueError as exc:  # InvalidIdsError is a ValueError too
            raise ValueError(f"{owner}: {exc}") from None
        self.collection_name = collection_name
        self.resource_id = resource_id
        self.ids = ids
        # the text before rendering: to warn when it pulls XCom from a task that is not upstream
        self._ids_template = ids if isinstance(ids, str) else None
        self.del_all = del_all
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.rows_per_second = rows_per_second
        self.vikingdb_conn_id = vikingdb_conn_id
        self.index_name = index_name
        self.wait_for_index = wait_for_index
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.index_poke_interval = index_poke_interval
        self.index_timeout = index_timeout
        self.index_settle = index_settle
        self.max_checked_ids = max_checked_ids
        self.max_delete = max_delete
        self.dry_run = dry_run
        self.filter = filter
        self.time_field = time_field
        self.older_than = older_than
        self.time_unit = time_unit
        self.sort_field = sort_field
        self.page_size = page_size
        self.max_passes = max_passes
        self.receipt = receipt

    def render_template(
        self,
        content: Any,
        context: Context,
        jinja_env: jinja2.Environment | None = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        """As BaseOperator's, but an upsert's ``written_ids`` that does not exist means its load
        never ran (its upstream failed: ``one_failed`` still runs the rollback): nothing to delete."""
        try:
            return super().render_template(content, context, jinja_env, seen_oids)
        except XComNotFound:
            load = getattr(content, "operator", None)
            if getattr(content, "key", None) != WRITTEN_IDS_KEY or not isinstance(
                load, VikingDBUpsertOperator
            ):
                raise
            self._never_ran = load.task_id
            return []

    def execute(self, context: Context) -> dict[str, Any]:
        with self._killable():
            return self._execute(context)

    def _execute(self, context: Context) -> dict[str, Any]:
        # Rows written before now (a load that just failed) may not be indexed yet: a filter's
        # count of 0 is trusted only ``index_settle`` seconds after this.
        self._started_at = time.time()
        target = self._checked_target()
        wait_index = self._index_to_wait_for()
        count_index = rendered_text(self.index_name) or wait_index
        try:
            del_all = parse_del_all(self.del_all)
            dry_run = parse_flag("dry_run", self.dry_run)
        except ValueError as exc:
            self._fail(str(exc))
        if self.filter is not None or self.time_field is not None:
            if del_all or self.ids is not None:
                self._fail(
                    "give ids, del_all=True or a filter: one way to say what to delete. Nothing was sent."
                )
            index_name = rendered_text(self.index_name)
            if not index_name:
                self._fail(f"index_name rendered to {self.index_name!r}: a filter is searched in an index.")
            self.index_name = index_name
            return execute_by_filter(self, context, target, index_name, dry_run)
        if del_all:
            if self.ids is not None:
                self._fail("give ids or del_all=True, not both (they delete different things)")
            return self._delete_all(context, target, count_index, wait_index, dry_run)

        if warning := jinja_dependency_warning(self._ids_template, self.upstream_task_ids):
            self.log.warning(warning)
        if never_ran := getattr(self, "_never_ran", None):
            self.log.info(
                "Task %r never ran (it has no %r XCom): it wrote nothing.", never_ran, WRITTEN_IDS_KEY
            )
        if is_unfinished(self.ids):
            self._fail(
                f"ids: the load that {WRITTEN_IDS_KEY!r} comes from started but never recorded what it "
                "wrote: it was killed before it ended (out of memory, SIGKILL, a lost worker), so the ids "
                "it wrote are not known. Nothing was sent. Roll it back by filter (e.g. a field holding "
                "the run id), or re-run the load and then this rollback."
            )
        try:
            ids = normalize_ids(self.ids)
        except InvalidIdsError as exc:
            self._fail(f"ids: {exc}. Nothing was sent.")
        self._check_max_delete(len(ids), "ids")
        if dry_run:
            return self._dry_run_ids(target, ids)
        if not ids:
            self.log.info("No ids to delete from %s: nothing sent.", target)
            summary = self._summary({"target": str(target), "ids_requested": 0, "ids_deleted": 0})
            with self._open_receipt(context, target, 0) as receipt:
                summary = self._receipted(receipt, summary)
            return self._then_wait(context, None, summary)

        check = self._look_before(target, wait_index, ids)
        self.log.info(
            "Deleting %d distinct ids from %s in batches of at most %d", len(ids), target, self.batch_size
        )
        try:
            with self._open_receipt(context, target, len(ids)) as receipt:
                result = self.hook.delete(
                    ids,
                    batch_size=self.batch_size,
                    max_concurrency=self.max_concurrency,
                    on_batch=receipt.on_batch if receipt else None,
                    on_unknown=receipt.on_unknown if receipt else None,
                    **target.body,
                )
                deleted_at = time.time()
                summary = self._receipted(
                    receipt, self._summary({**result.to_dict(), "deleted_at": deleted_at})
                )
        except VikingDBError as exc:  # after the receipt recorded it: says what was and was not done
            fail_try(self, str(exc), exc)
        self.log.info(
            "Deleted %s from %s in %s (%d throttled, %d retries).",
            plural(result.ids_deleted, "id"),
            result.target,
            plural(result.batches, "batch"),
            result.throttled,
            result.retries,
        )
        return self._then_wait(context, check, summary, deleted_at=deleted_at)

    def _delete_all(
        self,
        context: Context,
        target: Target,
        count_index: str | None,
        wait_index: str | None,
        dry_run: bool,
    ) -> dict[str, Any]:
        """``del_all``: count first (through an index), check ``max_delete``, delete, say what was done."""
        hook = self.hook
        records_before = None
        must_count = dry_run or self.max_delete is not None
        if count_index is not None:
            try:
                records_before = hook.count(index_name=count_index, **target.body)
            except VikingDBError as exc:
                if must_count or exc.retryable:
                    fail_try(
                        self,
                        f"cannot count the records in index {count_index!r}: {end_sentence(str(exc))} "
                        "Nothing was sent.",
                        exc,
                    )
                self.log.warning("Cannot count the records before del_all (%s); deleting anyway.", exc)
            else:
                self.log.info(
                    "%s holds %d records (counted in index %r).", target, records_before, count_index
                )
        elif must_count:
            self._fail(_DEL_ALL_COUNT.format(what="dry_run" if dry_run else "max_delete"))
        if records_before is not None:
            self._check_max_delete(records_before, "records (del_all)")
        if dry_run:
            self.log.info("Dry run: del_all would delete every record of %s (%s).", target, records_before)
            return {
                **self._summary({"target": str(target), "del_all": True}),
                "dry_run": True,
                "records_before": records_before,
            }
        check = self._look_before(target, wait_index, None)
        if check is not None and records_before:
            check.seen_records = True
        self.log.warning("del_all=True: deleting EVERY record of %s", target)
        try:
            with self._open_receipt(context, target, None) as receipt:
                result = hook.delete(del_all=True, **target.body)
                deleted_at = time.time()
                if receipt is not None:
                    receipt.delete_all(result.request_ids[-1] if result.request_ids else None, records_before)
                summary = self._receipted(
                    receipt,
                    {
                        **self._summary({**result.to_dict(), "deleted_at": deleted_at}),
                        "records_before": records_before,
                    },
                )
        except VikingDBError as exc:
            fail_try(self, f"del_all on {target} failed: {exc}", exc)
        counted = (
            f"{records_before} records deleted" if records_before is not None else "every record deleted"
        )
        self.log.info(
            "del_all on %s: %s (request_id=%s); the index follows within about 5 minutes.",
            target,
            counted,
            result.request_ids[-1] if result.request_ids else "-",
        )
        return self._then_wait(context, check, summary, deleted_at=deleted_at)

    def _dry_run_ids(self, target: Target, ids: list[str | int]) -> dict[str, Any]:
        """Everything up to the first delete request: how many would go, and how many exist now."""
        try:
            existing, checked = self.hook.count_existing(ids, **target.body)
        except VikingDBError as exc:
            fail_try(self, f"dry run: cannot look up which ids exist: {exc}. Nothing was deleted.", exc)
        sampled = checked < len(ids)
        if sampled:
            estimate = round(existing * len(ids) / checked) if checked else 0
            self.log.info(
                "Dry run: would delete %d ids from %s; of a random sample of %d, %d exist now "
                "(about %d of all; fetch_in_collection has its own quota, so a large list is sampled). "
                "Nothing was deleted.",
                len(ids),
                target,
                checked,
                existing,
                estimate,
            )
        else:
            estimate = existing
            self.log.info(
                "Dry run: would delete %d ids from %s; %d of them exist now. Nothing was deleted.",
                len(ids),
                target,
                existing,
            )
        return {
            **self._summary({"target": str(target), "ids_requested": len(ids), "ids_deleted": 0}),
            "dry_run": True,
            "would_delete": len(ids),
            "exist_now": estimate,
            "exist_checked": checked,
            "exist_sampled": sampled,
        }

    # ---- deletion receipt ----

    def _open_receipt(
        self, context: Context, target: Target, requested: int | None
    ) -> AbstractContextManager[Receipt | None]:
        """The receipt, opened before anything is deleted (a receipt that cannot be written fails first)."""
        if self.receipt is None or rendered_text(self.receipt) is None:
            return nullcontext()
        try:
            return Receipt.open(self.receipt, target=str(target), run=run_info(context), requested=requested)
        except ReceiptError as exc:
            # The store unreachable: Airflow's retries may write it; a bad place fails at once.
            fail_try(self, f"receipt: {exc}. Nothing was deleted.", exc)

    @staticmethod
    def _receipted(receipt: Receipt | None, summary: dict[str, Any]) -> dict[str, Any]:
        """``summary`` with the receipt's path; the receipt's final line says the delete succeeded."""
        if receipt is None:
            return summary
        receipt.finish("success", summary)
        return {**summary, "receipt": receipt.uri}

    def _check_max_delete(self, count: int, what: str) -> None:
        if self.max_delete is not None and count > self.max_delete:
            self._fail(
                f"would delete {count} {what}, more than max_delete={self.max_delete}. Nothing was sent. "
                f"If that many is intended, raise max_delete to at least {count} (or split the job)."
            )

    def _checked_target(self) -> Target:
        try:
            return Target.from_body(rendered_target(self.collection_name, self.resource_id))
        except ValueError as exc:
            self._fail(str(exc))

    def _summary(self, data: dict[str, Any]) -> dict[str, Any]:
        summary = {
            "target": data.get("target"),
            "ids_requested": data.get("ids_requested", 0),
            "ids_deleted": data.get("ids_deleted", 0),
            "batches": data.get("batches", 0),
            "del_all": bool(data.get("del_all", False)),
            "throttled": data.get("throttled", 0),
            "retries": data.get("retries", 0),
            "last_request_id": data.get("last_request_id"),
            "dry_run": False,
            "deleted_at": data.get("deleted_at"),
        }
        return summary

    def _fail(self, message: str) -> NoReturn:
        fail_task(self, message)
