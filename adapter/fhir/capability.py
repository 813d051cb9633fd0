"""The CapabilityStatement, generated from what the configured sources declare.

Nothing is advertised that no source can do; a search parameter that only some sources
take says which in its documentation (a search using it leaves the others out, with an
OperationOutcome entry saying so).
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from adapter.fhir.declared import Declared
from adapter.fhir.match import KINDS

__all__ = ["capability_statement"]

_SP = "http://hl7.org/fhir/SearchParameter/"
# Each parameter's definition in the R4 specification.
_DEFINITIONS = {
    ("Patient", "_id"): "Resource-id",
    ("Patient", "identifier"): "Patient-identifier",
    ("Patient", "name"): "Patient-name",
    ("Patient", "family"): "individual-family",
    ("Patient", "given"): "individual-given",
    ("Patient", "birthdate"): "individual-birthdate",
    ("Patient", "gender"): "individual-gender",
    ("Patient", "phone"): "individual-phone",
    ("Patient", "email"): "individual-email",
    ("Patient", "telecom"): "individual-telecom",
    ("Patient", "active"): "Patient-active",
    ("Appointment", "_id"): "Resource-id",
    ("Appointment", "patient"): "Appointment-patient",
    ("Appointment", "practitioner"): "Appointment-practitioner",
    ("Appointment", "actor"): "Appointment-actor",
    ("Appointment", "date"): "Appointment-date",
    ("Appointment", "status"): "Appointment-status",
    ("Appointment", "service-type"): "Appointment-service-type",
    ("Slot", "start"): "Slot-start",
    ("Slot", "status"): "Slot-status",
    ("Slot", "service-type"): "Slot-service-type",
}


def _version() -> str:
    try:
        return version("fhir-adapter")
    except PackageNotFoundError:
        return "0+unknown"


def capability_statement(
    declared: Declared, base: str, max_count: int, token_url: str | None = None
) -> dict[str, Any]:
    resources = []
    every = set(declared.sources)
    for resource_type in declared.types:
        params = []
        for name, sources in sorted(declared.supported_params(resource_type).items()):
            kind = KINDS.get(resource_type, {}).get(name)
            if kind is None:
                continue  # declared by a connector, but not a parameter this server parses
            entry: dict[str, Any] = {"name": name, "type": kind[0]}
            definition = _DEFINITIONS.get((resource_type, name))
            if definition:
                entry["definition"] = _SP + definition
            if sources != every & set(declared.serving(resource_type)):
                entry["documentation"] = "Not every source takes it: the others are left out."
            params.append(entry)
        params.append(
            {
                "name": "_source",
                "type": "uri",
                "definition": _SP + "Resource-source",
                "documentation": "The source(s) to ask, by name (meta.source of what they hold)",
            }
        )
        interactions = declared.interactions(resource_type)
        resource: dict[str, Any] = {
            "type": resource_type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
            "interaction": [{"code": code} for code in sorted(interactions)],
            "versioning": "no-version",
            "readHistory": False,
            "updateCreate": False,
            "conditionalCreate": "create" in interactions,
            "searchParam": params,
        }
        includes = sorted(declared.includes(resource_type))
        if includes:
            resource["searchInclude"] = includes
        resources.append(resource)
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": (
            f"Search pages hold at most {max_count} matches (_count); paging links "
            "carry signed cursors. _summary=count and _total are supported. "
            "Unknown parameters are ignored unless the request says "
            "Prefer: handling=strict."
        ),
        "resource": resources,
    }
    if token_url is not None:
        rest["security"] = {
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ]
                }
            ],
            "description": "OAuth2 client credentials (SMART Backend Services); system/ scopes.",
            "extension": [
                {
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": token_url}],
                }
            ],
        }
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "publisher": "fhir-adapter",
        "kind": "instance",
        "software": {"name": "fhir-adapter", "version": _version()},
        "implementation": {
            "description": "FHIR R4 facade over vendor healthcare APIs",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json", "application/json"],
        "rest": [rest],
    }
