"""Reading global ids and references back into vendor ids, checked against the source."""

from __future__ import annotations

from typing import Any

from mappings.common.context import SourceContext
from mappings.common.ids import GlobalId, decode_id
from mappings.errors import IdError, InvalidResource

__all__ = ["own_id", "participant", "reference_id"]


def own_id(fhir_id: Any, ctx: SourceContext, expression: str, *, scoped: bool) -> GlobalId:
    """Decode ``fhir_id`` and check it belongs to ``ctx``'s source (and has a scope iff
    ``scoped``)."""
    if not isinstance(fhir_id, str):
        raise InvalidResource(expression, "expected an id string")
    try:
        gid = decode_id(fhir_id)
    except IdError as exc:
        raise InvalidResource(expression, str(exc)) from None
    if gid.source != ctx.source:
        raise InvalidResource(expression, "refers to a resource of another source")
    if scoped != (gid.scope is not None):
        raise InvalidResource(expression, "is not an id of this source's kind")
    return gid


def reference_id(
    ref: Any, resource_type: str, ctx: SourceContext, expression: str, *, scoped: bool
) -> GlobalId:
    """The id in a literal reference ``{resource_type}/{id}`` of ``ctx``'s source."""
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
        raise InvalidResource(expression, "expected a literal reference")
    kind, _, fhir_id = ref["reference"].rpartition("/")
    if kind.rpartition("/")[2] != resource_type:
        raise InvalidResource(f"{expression}.reference", f"expected a {resource_type} reference")
    return own_id(fhir_id, ctx, f"{expression}.reference", scoped=scoped)


def participant(
    resource: dict[str, Any], resource_type: str
) -> tuple[int, dict[str, Any]] | tuple[None, None]:
    """The first Appointment.participant whose actor references ``resource_type``."""
    for i, item in enumerate(resource.get("participant") or ()):
        actor = item.get("actor") if isinstance(item, dict) else None
        if not isinstance(actor, dict):
            continue
        ref = actor.get("reference")
        if isinstance(ref, str) and ref.rpartition("/")[0].rpartition("/")[2] == resource_type:
            return i, actor
    return None, None
