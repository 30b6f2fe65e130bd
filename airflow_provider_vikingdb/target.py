"""What a call writes to or reads from: a collection by name, or by resource id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from airflow_provider_vikingdb.exceptions import VikingDBConfigError

TARGET_RULE = "give exactly one of collection_name or resource_id"


class TargetBody(TypedDict, total=False):
    """The request body's part that names the collection: exactly one of the two keys.

    Typed so that ``hook.delete(ids, **target.body)`` type-checks as the two keyword arguments.
    """

    collection_name: str
    resource_id: str


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
    def body(self) -> TargetBody:
        """The request body's part that names the collection."""
        if self.key == "collection_name":
            return {"collection_name": self.name}
        return {"resource_id": self.name}

    def __str__(self) -> str:
        kind = "collection" if self.key == "collection_name" else "resource"
        return f"{kind} {self.name!r}"
