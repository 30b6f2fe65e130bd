"""The one hook a batching operator (delete, upsert) uses for a task's whole life."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING

from airflow_provider_vikingdb._compat import AirflowTaskTerminated, task_name

if TYPE_CHECKING:
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

#: the hook's default requests in flight (the hook module is imported only when a task runs)
DEFAULT_MAX_CONCURRENCY = 8


class BatchedHookMixin:
    """``hook``: one session and one connection pool, sized to the operator's ``max_concurrency``;
    ``on_kill``: SIGTERM stops the task while it runs (``execute`` runs in ``_killable()``)."""

    task_id: str
    vikingdb_conn_id: str
    max_concurrency: int | None
    rows_per_second: float | None
    _executing = False

    @contextmanager
    def _killable(self) -> Iterator[None]:
        """Around ``execute``'s work: while in it, ``on_kill`` stops the task."""
        self._executing = True
        try:
            yield
        finally:
            self._executing = False

    def on_kill(self) -> None:
        """SIGTERM: the task was cleared or marked failed, or its worker is stopping.

        Airflow 3's SIGTERM handler calls this and nothing more, so a delete would go on
        sending until SIGKILL comes (5 s later), and never say what it did. While the work
        runs, this raises ``AirflowTaskTerminated`` into it (the handler runs in the main
        thread, as Airflow's execution timeout raises ``AirflowTaskTimeout``; Airflow 2 raised
        this one after ``on_kill``): no new batch or retry starts, requests in flight are
        abandoned, the log says what was and was not done, and the task fails. Outside the
        work (Airflow calls this after an execution timeout too) it does nothing.
        """
        if self._executing and threading.current_thread() is threading.main_thread():
            self._executing = False  # once: a second SIGTERM finds the first one on its way
            raise AirflowTaskTerminated(
                f"{task_name(self)} received SIGTERM (the task was cleared or "
                "marked failed, or its worker is stopping): stopped"
            )

    @cached_property
    def hook(self) -> VikingDBHook:
        """One hook (one session, one connection pool) for the task's whole life."""
        from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

        return VikingDBHook(
            self.vikingdb_conn_id,
            max_concurrency=self.max_concurrency or DEFAULT_MAX_CONCURRENCY,
            rows_per_second=self.rows_per_second,
        )

    def get_hook(self) -> VikingDBHook:
        return self.hook
