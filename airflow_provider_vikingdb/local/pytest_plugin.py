"""pytest fixtures for the local VikingDB server (registered through the ``pytest11`` entry point).

This module is loaded into every pytest session of anyone who installs the provider,
so it imports nothing heavy at top level: the server is imported inside the fixtures.

- ``vikingdb_server``: a started server with collections ``test_coll`` (string ids)
  and ``test_coll_int`` (int64 ids), stopped after the test.
- ``vikingdb_server_factory``: ``factory(**LocalVikingDB kwargs)`` returns a started
  server; every server it made is stopped after the test.
- ``vikingdb_connection``: sets ``AIRFLOW_CONN_VIKINGDB_DEFAULT`` to the
  ``vikingdb_server``'s connection and yields that server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_vikingdb.local.server import LocalVikingDB


@pytest.fixture
def vikingdb_server_factory() -> Iterator[Callable[..., LocalVikingDB]]:
    from airflow_provider_vikingdb.local.server import LocalVikingDB

    started: list[LocalVikingDB] = []

    def factory(**kwargs: Any) -> LocalVikingDB:
        server = LocalVikingDB(**kwargs)
        server.start()
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.stop()


@pytest.fixture
def vikingdb_server(vikingdb_server_factory: Callable[..., LocalVikingDB]) -> LocalVikingDB:
    return vikingdb_server_factory(collections=("test_coll", "test_coll_int:id:int64"))


@pytest.fixture
def vikingdb_connection(
    vikingdb_server: LocalVikingDB, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalVikingDB]:
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", vikingdb_server.connection_json())
    yield vikingdb_server
