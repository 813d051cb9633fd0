"""The JSON Schemas of the resources the write routes take, for the OpenAPI document.

Made from the R4B models of ``fhir.resources`` (the models the writes are validated
against, :mod:`adapter.fhir.validation`), pruned so as to stay small and free of cycles:

- A resource names every element R4 gives its type, and nothing else
  (``additionalProperties: false``): the service refuses an unknown element (422), as R4's
  JSON format does. ``resourceType`` is a constant; the elements R4 requires are required
  (but ``Subscription.status``: the service sets it).
- A primitive is its R4 JSON type with R4's regular expression (``id``, ``code``,
  ``date``, ``dateTime``, ``instant``, ``time``, ``uri``, ``oid``...); a ``string`` holds
  no control character and at most :data:`~adapter.fhir.validation.MAX_STRING`
  characters, as the service takes it; ``_element`` (a primitive's id and extensions) is
  an ``Element``.
- The data types the sources map (:data:`DETAILED`: HumanName, Identifier, ContactPoint,
  Reference, CodeableConcept, Coding, Period, Address, Extension, Meta, the backbone
  elements of the types written...) are components of their own, each element typed
  likewise. Every other one (an Attachment, a Timing, a contained resource...) is an
  object, checked by the service when it comes. So are a data type within itself (an
  Identifier's assigner), the extensions within a data type (the resource's own are
  typed: an Extension's primitive value[x], its other ones objects) and a data type's
  ``_element``: the schemas hold no cycle, which a fuzzer or a client generator would
  have to unroll, and each stays small once its references are put in place, which a
  fuzzer does before it generates a body.

What the schemas cannot say (a reference to a resource the source holds, an end after the
start, one of a choice's types at most) the service answers as a 422 naming the element.
"""

from __future__ import annotations

import types
import typing
import uuid
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from adapter.fhir.validation import MAX_STRING

__all__ = ["DETAILED", "body_name", "write_schemas"]

_SCHEMAS = "#/components/schemas/"
# The data types (and backbone elements) given a schema of their own: those the
# connectors map of the resources written, and what those are made of.
DETAILED = frozenset(
    {
        "Address",
        "Age",
        "AppointmentParticipant",
        "CodeableConcept",
        "Coding",
        "ContactPoint",
        "Element",
        "Extension",
        "HumanName",
        "Identifier",
        "Meta",
        "Narrative",
        "PatientCommunication",
        "PatientContact",
        "PatientLink",
        "Period",
        "Quantity",
        "Reference",
        "SubscriptionChannel",
    }
)
# R4's regular expressions of the primitive types (https://hl7.org/fhir/R4/datatypes.html)
_YEAR = "([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH = "(0[1-9]|1[0-2])"
_DAY = "(0[1-9]|[1-2][0-9]|3[0-1])"
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?"
_ZONE = "(Z|(\\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_STRING = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_STRING,
    # R4's [ \r\n\t\S]+, less the control characters the service refuses
    "pattern": "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]+$",
}
_URI = {"type": "string", "minLength": 1, "maxLength": MAX_STRING, "pattern": "^\\S+$"}
_PRIMITIVES: dict[str, dict[str, Any]] = {
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "integer64": {"type": "integer"},
    "unsignedInt": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "positiveInt": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    "decimal": {"type": "number"},
    "string": _STRING,
    "markdown": _STRING,
    "xhtml": {"type": "string", "description": "XHTML: a div of FHIR's narrative subset"},
    "id": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"},
    "code": {"type": "string", "maxLength": MAX_STRING, "pattern": "^[^\\s]+(\\s[^\\s]+)*$"},
    "uri": _URI,
    "url": _URI,
    "canonical": _URI,
    "oid": {"type": "string", "pattern": "^urn:oid:[0-2](\\.(0|[1-9][0-9]*))+$"},
    "uuid": {  # as the models take it: a version 4 UUID, with R4's urn:uuid: or without
        "type": "string",
        "pattern": "^(urn:uuid:)?[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}"
        "-[0-9a-f]{12}$",
    },
    "base64Binary": {"type": "string", "pattern": "^(\\s*([0-9a-zA-Z\\+/=]){4}\\s*)+$"},
    "date": {"type": "string", "pattern": f"^{_YEAR}(-{_MONTH}(-{_DAY})?)?$"},
    "dateTime": {
        "type": "string",
        "pattern": f"^{_YEAR}(-{_MONTH}(-{_DAY}(T{_TIME}{_ZONE})?)?)?$",
    },
    "instant": {"type": "string", "pattern": f"^{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_ZONE}$"},
    "time": {"type": "string", "pattern": f"^{_TIME}$"},
}
# What the service sets itself, whatever a body says.
_SET_BY_SERVICE = {"Subscription": {"status"}}


def write_schemas(resource_types: typing.Iterable[str]) -> dict[str, dict[str, Any]]:
    """Components: ``<Type>Write`` for each of ``resource_types`` (the body of its
    writes), and the data types they name (see the module's description)."""
    out: dict[str, dict[str, Any]] = {}
    for resource_type in sorted(resource_types):
        _component(resource_type, out, [])
    return out


def _component(name: str, out: dict[str, dict[str, Any]], stack: list[str]) -> None:
    if name in out:
        return
    model = get_fhir_model_class("FHIRPrimitiveExtension" if name == "Element" else name)
    out[name] = {}  # taken: a type within itself is not made twice
    stack.append(name)
    properties: dict[str, Any] = {}
    required: list[str] = []
    resource = _is_resource(model)
    if resource:
        properties["resourceType"] = {"const": name}
        required.append("resourceType")
    for field_name, field in model.model_fields.items():
        key = field.alias or field_name
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if key.startswith("_"):
            properties[key] = _element(field.annotation, out, stack, within=not resource)
            continue
        if not extra.get("element_property"):
            continue  # not an R4 element (fhir_comments)
        if not resource and key in ("extension", "modifierExtension"):
            properties[key] = {"type": "array", "minItems": 1, "items": _loose("Extension")}
            continue
        properties[key] = _typed(field.annotation, extra, out, stack)
        if name == "Extension" and "$ref" in properties[key]:  # a complex value[x]
            properties[key] = _loose(properties[key]["$ref"].rsplit("/", 1)[1])
        if (field.is_required() or extra.get("element_required")) and key not in (
            _SET_BY_SERVICE.get(name, set())
        ):
            required.append(key)
    stack.pop()
    if resource:  # the answers' schemas are named by the type alone
        del out[name]
        name = body_name(name)
    out[name] = {
        "type": "object",
        "description": f"FHIR R4 {model.get_resource_type()}"
        + (" (the body of a write)" if resource else ""),
        "properties": properties,
        "additionalProperties": False,
        **({"required": required} if required else {}),
    }


def body_name(resource_type: str) -> str:
    """The component of a write's body of ``resource_type``."""
    return f"{resource_type}Write"


def _is_resource(model: Any) -> bool:
    return any(base.__name__ == "DomainResource" for base in model.__mro__)


def _typed(
    annotation: Any, extra: dict[str, Any], out: dict[str, dict[str, Any]], stack: list[str]
) -> dict[str, Any]:
    many = _is_list(annotation)
    leaf = _leaf(annotation)
    schema = _primitive(leaf)
    if schema is not None:
        codes = extra.get("enum_values")
        if codes:  # a required binding
            schema = {"type": "string", "enum": [str(c) for c in codes]}
    else:
        schema = _complex(leaf, out, stack)
    if many:
        return {"type": "array", "minItems": 1, "items": schema}
    return schema


def _element(
    annotation: Any, out: dict[str, dict[str, Any]], stack: list[str], *, within: bool
) -> dict[str, Any]:
    """A primitive's ``_element``: its id and extensions (an array of them, or of null,
    for a repeating primitive); an object, within a data type."""
    ref = _loose("Element") if within else _ref("Element", out, stack)
    if _is_list(annotation):
        return {"type": "array", "items": {"anyOf": [ref, {"type": "null"}]}}
    return ref


def _complex(leaf: Any, out: dict[str, dict[str, Any]], stack: list[str]) -> dict[str, Any]:
    name = getattr(leaf, "__name__", "")
    name = name[:-4] if name.endswith("Type") else name
    return _ref(name, out, stack)


def _ref(name: str, out: dict[str, dict[str, Any]], stack: list[str]) -> dict[str, Any]:
    if name not in DETAILED or name in stack:
        return _loose(name)
    _component(name, out, stack)
    return {"$ref": _SCHEMAS + name}


def _loose(name: str) -> dict[str, Any]:
    what = "a resource" if name == "Resource" else f"an R4 {name}"
    return {"type": "object", "description": f"{what}: checked by the service"}


def _primitive(leaf: Any) -> dict[str, Any] | None:
    if leaf is bool:
        return dict(_PRIMITIVES["boolean"])
    if typing.get_args(leaf) and typing.get_args(leaf)[0] is uuid.UUID:
        return dict(_PRIMITIVES["uuid"])
    for meta in getattr(leaf, "__metadata__", ()):
        kind = getattr(meta, "__visit_name__", None)
        if kind in _PRIMITIVES:
            return dict(_PRIMITIVES[kind])
    return None


def _leaf(annotation: Any) -> Any:
    """The one type an element holds, through Optional and List (Annotated kept)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _leaf(kinds[0])
    if origin is list:
        return _leaf(typing.get_args(annotation)[0])
    return annotation


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation) if a is not type(None))
    return origin is list
