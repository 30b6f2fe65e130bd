"""Test-wide settings: a project-local Airflow home, no example DAGs, and two DAG bundles.

``dag.test()`` only runs DAGs that live in a configured bundle, so the example
DAGs and the end-to-end test DAGs are each a bundle. Set before anything imports
airflow (this package's pytest11 plugin imports nothing heavy at module level).
"""

import errno
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "example_dags"))
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": name,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(path)},
        }
        for name, path in (
            ("provider_examples", ROOT / "example_dags"),
            ("e2e_dags", ROOT / "tests" / "e2e" / "dags"),
        )
    ]
)


class Interrupted(BaseException):
    """What Airflow raises in a task's main thread, from a signal handler, on its execution timeout
    (AirflowTaskTimeout) or SIGTERM (AirflowTaskTerminated, from the operators' on_kill)."""


class Interrupter:
    """Interrupts the main thread as Airflow does: a signal whose handler raises ``Interrupted``."""

    def __init__(self) -> None:
        #: set once the handler has run (a test may clear it to wait for the next one)
        self.handled = threading.Event()
        self._watchers: list[threading.Thread] = []
        self._previous = signal.signal(signal.SIGUSR1, self._handler)

    def _handler(self, signum, frame):
        self.handled.set()
        raise Interrupted

    def __call__(self) -> threading.Event:
        """Send it now, from any thread; returns ``handled``."""
        os.kill(os.getpid(), signal.SIGUSR1)
        return self.handled

    def when(self, condition: Callable[[], bool], *, then: float = 0.0, timeout: float = 20.0) -> None:
        """Send it from a watcher thread once ``condition()`` holds (after ``timeout`` s at the
        latest), ``then`` seconds later."""

        def watch() -> None:
            deadline = time.monotonic() + timeout
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(then)
            self()

        watcher = threading.Thread(target=watch, name="test-interrupter", daemon=True)
        self._watchers.append(watcher)
        watcher.start()

    def close(self) -> None:
        for watcher in self._watchers:
            watcher.join(timeout=30)
        signal.signal(signal.SIGUSR1, self._previous)


@pytest.fixture
def interrupt():
    """``interrupt()`` interrupts the main thread now, ``interrupt.when(condition, then=s)`` once
    ``condition()`` holds: raising ``Interrupted`` there, as Airflow's timeout and SIGTERM do."""
    interrupter = Interrupter()
    yield interrupter
    interrupter.close()


#: what the next opens of the ``flaky_store`` raise, one each (module-level: fsspec and the path
#: classes cache the filesystem class and its instances across tests)
_STORE_FAILURES: list[BaseException] = []
#: ``[n]``: a file opened for writing takes n writes, then each raises ENOSPC (the store is full)
_STORE_WRITES: list[int] = []
FLAKY_BUCKET = "/flaky-bucket"


@pytest.fixture
def flaky_store():
    """An object store (fsspec's in-memory one, as ``flaky://``; put receipts in ``flaky://flaky-bucket/``)
    whose next opens raise what a test sets: ``store.failures = [ConnectionError("reset"), ...]``,
    one per open, then it works; with ``store.full_after = n``, a file takes n writes, then is full."""
    import warnings

    import fsspec
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    class FlakyStore(MemoryFileSystem):
        protocol = ("flaky",)

        @property
        def failures(self) -> list[BaseException]:
            return _STORE_FAILURES

        @failures.setter
        def failures(self, value: list[BaseException]) -> None:
            _STORE_FAILURES[:] = value

        @property
        def full_after(self) -> int | None:
            return _STORE_WRITES[0] if _STORE_WRITES else None

        @full_after.setter
        def full_after(self, writes: int | None) -> None:
            _STORE_WRITES[:] = [] if writes is None else [writes]

        def _open(self, path, mode="rb", **kwargs):
            if _STORE_FAILURES:
                raise _STORE_FAILURES.pop(0)
            opened = super()._open(path, mode, **kwargs)
            if _STORE_WRITES and "r" not in mode:
                left, write = [_STORE_WRITES[0]], opened.write

                def limited(data):
                    if left[0] <= 0:
                        raise OSError(errno.ENOSPC, "No space left on device")
                    left[0] -= 1
                    return write(data)

                opened.write = limited
            return opened

        def receipts(self) -> list[str]:
            """The files written under the test bucket, wherever the path class put them."""
            return [p for p in self.store if FLAKY_BUCKET.strip("/") in p]  # keys as written

    if "flaky" not in fsspec.registry:
        fsspec.register_implementation("flaky", FlakyStore)
    store = fsspec.filesystem("flaky")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UPath: "'flaky' filesystem not explicitly implemented"
        attach("flaky", fs=store)
    yield store
    _STORE_FAILURES.clear()
    _STORE_WRITES.clear()
    for path in store.receipts():  # the in-memory store is one per process: leave no trace
        store.store.pop(path, None)
