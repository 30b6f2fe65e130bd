"""A local stand-in for VikingDB's V2 data plane, for tests and demos (moto's server mode, for VikingDB).

Run it with ``vikingdb-local`` or ``python -m airflow_provider_vikingdb.local``, or in-process::

    from airflow_provider_vikingdb.local import LocalVikingDB

    with LocalVikingDB(collections=("test_coll",)) as srv:
        print(srv.url, srv.connection_json())

This package is imported by the pytest plugin in every pytest session of anyone who
installs the provider, so it stays cheap: the server module is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_vikingdb.local.server import LocalVikingDB

__all__ = ["LocalVikingDB"]


def __getattr__(name: str) -> Any:
    if name == "LocalVikingDB":
        from airflow_provider_vikingdb.local.server import LocalVikingDB

        return LocalVikingDB
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
