"""The one hook a batching operator (delete, upsert) uses for a task's whole life."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

#: the hook's default requests in flight (the hook module is imported only when a task runs)
DEFAULT_MAX_CONCURRENCY = 8


class BatchedHookMixin:
    """``hook``: one session and one connection pool, sized to the operator's ``max_concurrency``."""

    vikingdb_conn_id: str
    max_concurrency: int | None
    rows_per_second: float | None

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
