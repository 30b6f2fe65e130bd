"""Test-wide settings: a project-local Airflow home, no example DAGs, and two DAG bundles.

``dag.test()`` only runs DAGs that live in a configured bundle, so the example
DAGs and the end-to-end test DAGs are each a bundle. Set before anything imports
airflow (this package's pytest11 plugin imports nothing heavy at module level).
"""

import json
import os
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


#: what the next opens of the ``flaky_store`` raise, one each (module-level: fsspec and the path
#: classes cache the filesystem class and its instances across tests)
_STORE_FAILURES: list[BaseException] = []
FLAKY_BUCKET = "/flaky-bucket"


@pytest.fixture
def flaky_store():
    """An object store (fsspec's in-memory one, as ``flaky://``; put receipts in ``flaky://flaky-bucket/``)
    whose next opens raise what a test sets: ``store.failures = [ConnectionError("reset"), ...]``,
    one per open, then it works."""
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

        def _open(self, path, mode="rb", **kwargs):
            if _STORE_FAILURES:
                raise _STORE_FAILURES.pop(0)
            return super()._open(path, mode, **kwargs)

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
    for path in store.receipts():  # the in-memory store is one per process: leave no trace
        store.store.pop(path, None)
