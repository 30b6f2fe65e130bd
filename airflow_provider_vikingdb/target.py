"""What a call writes to or reads from: a collection by name, or by resource id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_vikingdb.exceptions import VikingDBConfigError

TARGET_RULE = "give exactly one of collection_name or resource_id"


@dataclass(frozen=True)
class Target:
    """A collection named by ``collection_name`` or by ``resource_id`` (the body key)."""

    key: str  # "collection_name" or "resource_id"
    name: str

    @classmethod
    def of(cls, collection_name: str | None = None, resource_id: str | None = None) -> Target:
        if bool(collection_name) == bool(resource_id):
            raise VikingDBConfigError(
                f"{TARGET_RULE} (got collection_name={collection_name!r}, resource_id={resource_id!r})"
            )
        if collection_name:
            return cls("collection_name", str(collection_name))
        return cls("resource_id", str(resource_id))

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Target:
        """The target a request body (or a serialized trigger's kwargs) names."""
        for key in ("collection_name", "resource_id"):
            if body.get(key):
                return cls(key, str(body[key]))
        raise VikingDBConfigError(f"{TARGET_RULE} (got {dict(body)!r})")

    @property
    def body(self) -> dict[str, str]:
        """The request body's part that names the collection."""
        return {self.key: self.name}

    def __str__(self) -> str:
        kind = "collection" if self.key == "collection_name" else "resource"
        return f"{kind} {self.name!r}"
