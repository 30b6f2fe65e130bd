"""Test-wide settings: a project-local Airflow home, no example DAGs, and two DAG bundles.

``dag.test()`` only runs DAGs that live in a configured bundle, so the example
DAGs and the end-to-end test DAGs are each a bundle. Set before anything imports
airflow (this package's pytest11 plugin imports nothing heavy at module level).
"""

import json
import os
from pathlib import Path

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
