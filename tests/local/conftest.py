"""Fixtures for the local server's tests. The server fixtures themselves (vikingdb_server,
vikingdb_server_factory, vikingdb_connection) come from the provider's pytest plugin, which
these tests therefore exercise too."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_vikingdb.local import LocalVikingDB
from tests.local.vikingdb_signing_client import SigningClient


class FakeClock:
    """A monotonic clock that moves only when told: ``clock.advance(seconds)``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client() -> Iterator[Callable[..., SigningClient]]:
    clients: list[SigningClient] = []

    def make(server: LocalVikingDB, **kwargs: Any) -> SigningClient:
        kwargs.setdefault("ak", server.ak)
        kwargs.setdefault("sk", server.sk)
        kwargs.setdefault("region", server.region)
        client = SigningClient(server.url, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(vikingdb_server: LocalVikingDB, make_client: Callable[..., SigningClient]) -> SigningClient:
    return make_client(vikingdb_server)
