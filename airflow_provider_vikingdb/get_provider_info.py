"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_vikingdb import __version__
from airflow_provider_vikingdb.connection import (
    CONN_TYPE,
    provider_conn_fields,
    provider_ui_field_behaviour,
)

#: what ``airflow providers list`` shows; pyproject.toml's description is the same after its
#: "Apache Airflow provider for " (tests/test_provider_info.py checks both name every class)
DESCRIPTION = (
    "VikingDB (Volcengine's managed vector database): signed hook, delete and upsert operators, "
    "index-sync sensor and trigger, and a local VikingDB server for tests."
)


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-vikingdb",
        "name": "VikingDB",
        "description": DESCRIPTION,
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "VikingDB",
                "external-doc-url": "https://www.volcengine.com/docs/84313",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {"integration-name": "VikingDB", "python-modules": ["airflow_provider_vikingdb.hooks.vikingdb"]}
        ],
        "operators": [
            {
                "integration-name": "VikingDB",
                "python-modules": [
                    "airflow_provider_vikingdb.operators.vikingdb",
                    "airflow_provider_vikingdb.operators.upsert",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "VikingDB", "python-modules": ["airflow_provider_vikingdb.sensors.vikingdb"]}
        ],
        "triggers": [
            {
                "integration-name": "VikingDB",
                "python-modules": ["airflow_provider_vikingdb.triggers.vikingdb"],
            }
        ],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "airflow_provider_vikingdb.hooks.vikingdb.VikingDBHook",
                "hook-name": "VikingDB",
                "conn-fields": provider_conn_fields(),
                "ui-field-behaviour": provider_ui_field_behaviour(),
            }
        ],
    }
