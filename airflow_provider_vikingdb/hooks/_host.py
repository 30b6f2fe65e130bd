"""What the hook's mixins use of ``VikingDBHook`` and of each other, declared for type checkers.

``VikingDBReadsMixin`` (``hooks/reads.py``) and ``VikingDBWritesMixin`` (``hooks/writes.py``) are
parts of ``VikingDBHook`` (``hooks/vikingdb.py``), which owns the connection and the request path.
At run time they derive from ``object``, so the hook's MRO is what it always was; for mypy they
derive from ``HookHost``, so their methods see the hook's attributes with their real types, and
mypy checks that ``VikingDBHook`` provides each of them with a matching signature (a declaration
that drifts from the hook is an error, not a silent ``Any``).

The mixin modules import this one only under ``TYPE_CHECKING``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_vikingdb._compat import BaseHook
from airflow_provider_vikingdb.ids import MAX_BATCH_SIZE

if TYPE_CHECKING:
    import requests

    from airflow_provider_vikingdb.batching import BatchResult, OnUnknown
    from airflow_provider_vikingdb.connection import VikingDBConnectionConfig
    from airflow_provider_vikingdb.deadline import Cancel
    from airflow_provider_vikingdb.ratelimit import AdaptiveRateLimiter


class HookHost(BaseHook):
    """The hook as its mixins see it: set in ``VikingDBHook.__init__`` or defined on it."""

    max_concurrency: int
    rows_per_second: float | None
    _sleep: Callable[[float], None] | None

    @property
    @abstractmethod
    def config(self) -> VikingDBConnectionConfig: ...

    @property
    @abstractmethod
    def session(self) -> requests.Session: ...

    @abstractmethod
    def _mount(self, session: requests.Session, size: int) -> None: ...

    @abstractmethod
    def request(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        method: str = "POST",
        rows: int = 0,
        limiter: AdaptiveRateLimiter | None = None,
        stats: BatchResult | None = None,
        cancel: Cancel | None = None,
    ) -> dict[str, Any]: ...

    # VikingDBWritesMixin's, used by VikingDBReadsMixin's delete by filter.
    @abstractmethod
    def delete(
        self,
        ids: Iterable[str | int] | None = None,
        *,
        collection_name: str | None = None,
        resource_id: str | None = None,
        del_all: bool = False,
        batch_size: int = MAX_BATCH_SIZE,
        max_concurrency: int | None = None,
        on_progress: Callable[[BatchResult], None] | None = None,
        on_batch: Callable[[Sequence[str | int], dict[str, Any]], None] | None = None,
        on_unknown: OnUnknown | None = None,
    ) -> BatchResult: ...
