"""Ids and references between the upstream and the facade.

A facade id is the source name and the upstream's id (``mappings.encode_id``); the part of
an upstream id before its first dot is kept as the id's scope, so that another facade's
ids (``ehr.9b2f...``) stay short a level up (``hosp-a.ehr.9b2f...``). References to the
upstream's resources of the types served become facade references; any other keeps only
its display. Writes go the other way, and a reference to another source cannot be held
upstream.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from adapter.connectors.base import ResourceNotFound, WriteRefused
from adapter.fhir.versions import with_version
from mappings import IdError, MappingError, SourceContext, decode_id

__all__ = ["Rewriter"]

_UNAVAILABLE = "a resource not available through this service"


class Rewriter:
    """The id and reference rewriting of one source over one upstream base."""

    def __init__(self, source: str, base_url: str, served: Collection[str]) -> None:
        self.source = source
        self.ctx = SourceContext(source, "UTC")  # the id codec only
        self.base_url = base_url.rstrip("/") + "/"
        self.served = frozenset(served)

    def fhir_id(self, upstream_id: str) -> str:
        """The facade's id of an upstream id (``IdTooLong`` past 64 characters)."""
        scope, dot, rest = upstream_id.partition(".")
        if dot and scope and rest:
            return self.ctx.id(rest, scope)
        return self.ctx.id(upstream_id)

    def upstream_id(self, resource_type: str, fhir_id: str) -> str:
        """The upstream's id of one of this source's facade ids; else not found."""
        try:
            gid = decode_id(fhir_id)
        except MappingError:
            raise ResourceNotFound(resource_type, fhir_id) from None
        if gid.source != self.source:
            raise ResourceNotFound(resource_type, fhir_id)
        return gid.vendor_id if gid.scope is None else f"{gid.scope}.{gid.vendor_id}"

    def _local_reference(self, reference: str) -> tuple[str, str] | None:
        """(type, upstream id) of a reference to the upstream itself, else None."""
        text = reference
        if text.startswith(self.base_url):
            text = text[len(self.base_url) :]
        elif "://" in text or text.startswith(("urn:", "#")):
            return None
        parts = text.split("/")
        if len(parts) == 4 and parts[2] == "_history":
            parts = parts[:2]
        if len(parts) != 2 or not parts[0] or not parts[1]:
            return None
        return parts[0], parts[1]

    def _down(self, value: Any) -> Any:
        """References rewritten to facade ids, throughout a value."""
        if isinstance(value, list):
            return [self._down(v) for v in value]
        if not isinstance(value, dict):
            return value
        out = {k: self._down(v) for k, v in value.items()}
        reference = value.get("reference")
        if isinstance(reference, str) and not reference.startswith("#"):
            local = self._local_reference(reference)
            rewritten = None
            if local is not None and local[0] in self.served:
                try:
                    rewritten = f"{local[0]}/{self.fhir_id(local[1])}"
                except IdError:
                    rewritten = None
            if rewritten is not None:
                out["reference"] = rewritten
            else:
                del out["reference"]
                if not out.get("display"):
                    out["display"] = _UNAVAILABLE
        return out

    def to_facade(self, resource: dict[str, Any]) -> dict[str, Any]:
        """An upstream resource as the facade serves it (``IdError`` for an id that does
        not fit)."""
        fhir_id = self.fhir_id(str(resource.get("id", "")))
        meta_in = resource.get("meta") or {}
        meta: dict[str, Any] = {
            k: meta_in[k]
            for k in ("versionId", "lastUpdated", "profile", "security", "tag")
            if k in meta_in
        }
        meta["source"] = self.source
        body = {k: self._down(v) for k, v in resource.items() if k not in ("id", "meta")}
        return with_version(
            {"resourceType": resource["resourceType"], "id": fhir_id, "meta": meta, **body}
        )

    def _up(self, value: Any, path: str) -> Any:
        """References to this source's resources rewritten to the upstream's ids; one to
        another source cannot be held upstream (422 naming the element)."""
        if isinstance(value, list):
            return [self._up(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, dict):
            return value
        out = {k: self._up(v, f"{path}.{k}") for k, v in value.items()}
        reference = value.get("reference")
        if isinstance(reference, str) and not reference.startswith("#"):
            kind, _, fhir_id = reference.partition("/")
            try:
                upstream = self.upstream_id(kind, fhir_id)
            except ResourceNotFound:
                raise WriteRefused(
                    f"{path}.reference", "references a resource of another source"
                ) from None
            out["reference"] = f"{kind}/{upstream}"
        return out

    def to_upstream(self, resource: dict[str, Any], upstream_id: str | None) -> dict[str, Any]:
        kind = resource["resourceType"]
        body = {
            k: self._up(v, f"{kind}.{k}") for k, v in resource.items() if k not in ("id", "meta")
        }
        return {"resourceType": kind, **({"id": upstream_id} if upstream_id else {}), **body}
