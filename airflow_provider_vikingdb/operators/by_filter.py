"""The delete operator's filter path: ``filter=`` and ``time_field``/``older_than`` (issue 12).

Kept out of ``operators/vikingdb.py`` so that module stays readable. Imported by DAG
files through it: only pure modules at top level; the hook comes when the task runs.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow_provider_vikingdb.exceptions import VikingDBError
from airflow_provider_vikingdb.filter_delete import (
    SAMPLE_SIZE,
    FilterDeleteError,
    check_max_passes,
    check_page_size,
)
from airflow_provider_vikingdb.filters import (
    InvalidFilterError,
    age_microseconds,
    and_filters,
    describe_age,
    parse_filter,
    plain_utc,
    retention_filter,
)
from airflow_provider_vikingdb.task_failure import fail_try

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator
    from airflow_provider_vikingdb.target import Target


def check_filter_args(
    *,
    ids: Any,
    del_all: Any,
    filter: Any,
    time_field: Any,
    older_than: Any,
    time_unit: Any,
    index_name: Any,
    wait_for_index: Any,
    sort_field: Any,
    page_size: Any,
    max_passes: Any,
) -> None:
    """Parse time: what can be known about a delete by filter. Raises ValueError naming the field."""
    if ids is not None:
        raise ValueError(
            "give ids or a filter (filter=, time_field=/older_than=), not both: they say what to delete "
            "in two ways"
        )
    if del_all is True:
        raise ValueError("give del_all=True or a filter, not both (del_all deletes everything)")
    if (time_field is None) != (older_than is None):
        given, missing = (
            ("time_field", "older_than") if time_field is not None else ("older_than", "time_field")
        )
        raise ValueError(
            f"{given} needs {missing}: retention deletes the records whose {{time_field}} is older than "
            "older_than (e.g. time_field='created_at', older_than=timedelta(days=90))"
        )
    if index_name is None:
        raise ValueError(
            "index_name is required with a filter: VikingDB has no delete-by-filter, so the matching ids "
            "are searched in an index (give the index whose scalar fields cover the filter, e.g. "
            "index_name='documents_index')"
        )
    if wait_for_index is not None:
        raise ValueError(
            "wait_for_index is not used with a filter: a delete by filter already ends when index_name "
            "has applied the deletes and no record matches any more; remove wait_for_index"
        )
    check_page_size(page_size)
    check_max_passes(max_passes)
    if sort_field is not None and (not isinstance(sort_field, str) or not sort_field.strip()):
        raise ValueError(f"sort_field must be a field name (an int64 or float32 field), got {sort_field!r}")
    if isinstance(filter, str) and "{{" in filter:
        pass  # checked once rendered
    elif filter is not None:
        parse_filter(filter)
    if time_field is not None and not (isinstance(older_than, str) and "{{" in older_than):
        retention_filter(time_field, older_than, time_unit, dt.datetime.now(dt.timezone.utc))


def reference_time(context: Context, log: Any) -> tuple[dt.datetime, str]:
    """Where retention is measured from: the run's ``data_interval_end`` (a retry deletes the same set)."""
    for key in ("data_interval_end", "logical_date"):
        value = context.get(key)
        if isinstance(value, dt.datetime) and value.utcoffset() is not None:
            if key != "data_interval_end":
                log.warning("The run has no data_interval_end: the cutoff is measured from its %s.", key)
            return plain_utc(value), key
    log.warning("The run has no data_interval_end nor logical_date: the cutoff is measured from now.")
    return dt.datetime.now(dt.timezone.utc), "now"


#: epoch milliseconds of 1973-03-03; epoch seconds stay below it until the year 5138
_SECONDS_OR_MILLISECONDS = 10**11


def _check_milliseconds(op: VikingDBDeleteOperator, runner: Any, cutoff: int | None) -> None:
    """Refuse ``time_unit="ms"`` on a field that holds seconds: every record would match."""
    try:
        newest = runner.newest(op.time_field)
    except VikingDBError as exc:
        fail_try(
            op,
            f"cannot search index {runner.index_name!r} for the newest match: {exc}. Nothing was deleted.",
            exc,
        )
    if newest is not None and newest < _SECONDS_OR_MILLISECONDS:
        as_ms = dt.datetime.fromtimestamp(newest / 1000, dt.timezone.utc).date()
        op._fail(
            f"time_field {op.time_field!r} holds epoch seconds, it seems: the newest record that matches "
            f"has {newest:.0f}, which in milliseconds is {as_ms}, and with time_unit='ms' the cutoff "
            f"{cutoff} matches every record. Set time_unit='s'. Nothing was deleted."
        )


def build_filter(
    op: VikingDBDeleteOperator, context: Context
) -> tuple[dict[str, Any], int | None, str | None]:
    """The rendered ``filter`` AND the retention range: ``(filter, cutoff, reference key)``."""
    user = parse_filter(op.filter) if op.filter is not None else None
    retention, cutoff, reference = None, None, None
    if op.time_field is not None:
        at, reference = reference_time(context, op.log)
        retention, cutoff = retention_filter(op.time_field, op.older_than, op.time_unit, at)
        age = describe_age(op.older_than)
        if age_microseconds(op.older_than) < 3600 * 1_000_000:
            op.log.warning(
                "older_than is %s (a number is seconds): records younger than that are kept, all "
                "others deleted. If you meant days, give a timedelta (older_than=timedelta(days=N)).",
                age,
            )
        unit = "epoch seconds" if op.time_unit == "s" else "epoch milliseconds"
        seconds = cutoff if op.time_unit == "s" else cutoff / 1000
        when = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds")
        op.log.info(
            "Retention: %s < %d (%s: %s): records older than %s at %s, %s.",
            op.time_field,
            cutoff,
            unit,
            when,
            age,
            "now" if reference == "now" else f"the run's {reference}",
            at.isoformat(),
        )
    return parse_filter(and_filters(user, retention)), cutoff, reference


def execute_by_filter(
    op: VikingDBDeleteOperator, context: Context, target: Target, index_name: str, dry_run: bool
) -> dict[str, Any]:
    """Count, check ``max_delete`` (or just log for ``dry_run``), delete page by page, verify.

    ``index_name``: the rendered index the filter is searched in (``op.index_name`` once checked).
    """
    try:
        flt, cutoff, reference = build_filter(op, context)
    except InvalidFilterError as exc:
        op._fail(f"{exc}. Nothing was sent.")
    sort_field = op.sort_field or op.time_field
    hook = op.hook
    runner = hook.filter_delete(
        index_name=index_name,
        filter=flt,
        sort_field=sort_field,
        page_size=op.page_size,
        batch_size=op.batch_size,
        max_concurrency=op.max_concurrency,
        settle=op.index_settle,
        poke_interval=op.index_poke_interval,
        verify_timeout=op.index_timeout,
        max_checked_ids=op.max_checked_ids,
        max_passes=op.max_passes,
        max_delete=op.max_delete,
        **target.body,
    )
    base = {
        **op._summary({"target": str(target)}),
        "filter": flt,
        "cutoff": cutoff,
        "cutoff_from": reference,
        "index_name": index_name,
        "sort_field": sort_field,
        "matched": None,
        "pages": 0,
        "remaining": None,
    }
    try:
        matched = runner.count_settled(op._started_at)
    except VikingDBError as exc:
        fail_try(
            op,
            f"cannot count the records matching the filter in index {index_name!r}: {exc}. "
            "Nothing was deleted.",
            exc,
        )
    op.log.info("%d records of %s match %s (counted in index %r).", matched, target, flt, index_name)
    if matched and op.time_field is not None and op.time_unit == "ms":
        _check_milliseconds(op, runner, cutoff)
    op._check_max_delete(matched, "records (filter)")
    if dry_run:
        try:
            sample = runner.sample(SAMPLE_SIZE) if matched else []
        except VikingDBError as exc:
            fail_try(
                op, f"cannot search index {index_name!r} with the filter: {exc}. Nothing was deleted.", exc
            )
        op.log.info(
            "Dry run: would delete %d records of %s matching the filter; first ids: %s. Nothing was "
            "deleted. Counted as index %r shows them now: records written in the last ~%gs "
            "(index_settle) may not be in it yet, and a real run's later passes would take them too.",
            matched,
            target,
            sample,
            index_name,
            runner.settle_seconds,
        )
        return {**base, "dry_run": True, "matched": matched, "would_delete": matched, "sample_ids": sample}
    with op._open_receipt(context, target, matched) as receipt:
        if matched == 0:
            op.log.info(
                "No record of index %r matches the filter: nothing to delete, nothing sent.%s",
                index_name,
                " (The index shows writes about 20 s late, and with index_settle=0 it was counted once: "
                "records written just before this task are not seen.)"
                if op.index_settle == 0
                else "",
            )
            return op._receipted(receipt, {**base, "matched": 0, "remaining": 0})
        if receipt is not None:  # the ids path's receipt lines: acknowledged, and outcome unknown
            runner.on_batch, runner.on_unknown = receipt.on_batch, receipt.on_unknown
        try:
            result = runner.run(matched)
        except FilterDeleteError as exc:
            if receipt is not None:
                # Its final counts say what the error says: not deleted = refused + not reached,
                # also when records came to match during the run.
                receipt.requested = matched + exc.result.matched_later
            # A cut connection or a 503 past the hook's retries: another try deletes the same set
            # (same cutoff) and finishes; a refused filter, a 404 index or the credentials do not.
            fail_try(op, str(exc), exc)
        summary = {**base, **result.to_dict(), "ids_requested": result.ids_deleted}
        summary["filter"], summary["target"] = flt, str(target)
        return op._receipted(receipt, summary)
