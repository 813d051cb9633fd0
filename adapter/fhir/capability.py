"""The CapabilityStatement, generated from what the configured sources declare.

Nothing is advertised that no source can do; a search parameter that only some sources
take says which in its documentation (a search using it leaves the others out, with an
OperationOutcome entry saying so).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from adapter import package_version
from adapter.fhir.bulk import advertise_export
from adapter.fhir.declared import Declared
from adapter.fhir.everything import EVERYTHING_DEFINITION
from adapter.fhir.groups import group_capability
from adapter.fhir.match import KINDS
from adapter.fhir.shaping import sort_keys
from adapter.fhir.terminology import concept_map_capability

__all__ = ["capability_statement"]

_SP = "http://hl7.org/fhir/SearchParameter/"

SUBSCRIPTION_CAPABILITY: dict[str, Any] = {
    "type": "Subscription",
    "profile": "http://hl7.org/fhir/StructureDefinition/Subscription",
    "documentation": (
        "rest-hook channel only; criteria: an Appointment or Patient search this server "
        "accepts (_source included), payload absent (ping only) or application/fhir+json; "
        "or, topic-based (Subscriptions R5 Backport IG 1.1.0), one of the topics listed "
        "here, filters by backport-filter-criteria, payload content empty, id-only or "
        "full-resource, backport-heartbeat-period, backport-timeout and "
        "backport-max-count, a handshake on activation, numbered events, $status and "
        "$events. "
        "Notifications are history Bundles, at least once, in order per resource. Each "
        "client sees only its own Subscriptions (system/Subscription.cruds)."
    ),
    "interaction": [
        {"code": "create"},
        {"code": "delete"},
        {"code": "read"},
        {"code": "search-type"},
        {"code": "update"},
    ],
    "versioning": "no-version",
    "readHistory": False,
    "updateCreate": False,
    "conditionalCreate": False,
    "searchParam": [
        {"name": "_id", "type": "token", "definition": _SP + "Resource-id"},
        {"name": "criteria", "type": "string", "definition": _SP + "Subscription-criteria"},
        {"name": "status", "type": "token", "definition": _SP + "Subscription-status"},
        {"name": "url", "type": "uri", "definition": _SP + "Subscription-url"},
    ],
}
_BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/"

# The topics of topic-based Subscriptions, each as a Basic (R4 has no SubscriptionTopic).
TOPIC_CAPABILITY: dict[str, Any] = {
    "type": "Basic",
    "profile": "http://hl7.org/fhir/StructureDefinition/Basic",
    "documentation": (
        "Only the topics of topic-based Subscriptions: Basic/{name} (and the topic's "
        "canonical URL, {base}/SubscriptionTopic/{name}) answers the topic as a Basic of "
        "code SubscriptionTopic whose extensions carry the R5 SubscriptionTopic's "
        "elements (url, name, title, status, resourceTrigger, canFilterBy, "
        "notificationShape)."
    ),
    "interaction": [{"code": "read"}],
    "versioning": "no-version",
    "readHistory": False,
    "updateCreate": False,
    "conditionalCreate": False,
}


def _subscription_capability(topics: Sequence[str]) -> dict[str, Any]:
    """The Subscription resource, with the topics' canonical URLs as the backport IG
    advertises them, its Subscription profile and its $status and $events operations."""
    if not topics:
        return SUBSCRIPTION_CAPABILITY
    return {
        "extension": [
            {
                "url": _BACKPORT
                + "StructureDefinition/capabilitystatement-subscriptiontopic-canonical",
                "valueCanonical": url,
            }
            for url in topics
        ],
        **SUBSCRIPTION_CAPABILITY,
        "supportedProfile": [_BACKPORT + "StructureDefinition/backport-subscription"],
        "operation": [
            {
                "name": "status",
                "definition": _BACKPORT + "OperationDefinition/backport-subscription-status",
            },
            {
                "name": "events",
                "definition": _BACKPORT + "OperationDefinition/backport-subscription-events",
            },
        ],
    }


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
    ("Slot", "_id"): "Resource-id",
    ("Slot", "schedule"): "Slot-schedule",
    ("Slot", "start"): "Slot-start",
    ("Slot", "status"): "Slot-status",
    ("Slot", "service-type"): "Slot-service-type",
    ("Practitioner", "_id"): "Resource-id",
    ("Practitioner", "name"): "Practitioner-name",
    ("Practitioner", "family"): "individual-family",
    ("Practitioner", "given"): "individual-given",
    ("Practitioner", "identifier"): "Practitioner-identifier",
    ("Device", "_id"): "Resource-id",
    ("Device", "device-name"): "Device-device-name",
    ("Device", "organization"): "Device-organization",
    ("Device", "location"): "Device-location",
    ("Location", "_id"): "Resource-id",
    ("Location", "name"): "Location-name",
    ("Location", "organization"): "Location-organization",
    ("Organization", "_id"): "Resource-id",
    ("Organization", "name"): "Organization-name",
    ("Organization", "partof"): "Organization-partof",
    ("HealthcareService", "_id"): "Resource-id",
    ("HealthcareService", "name"): "HealthcareService-name",
    ("HealthcareService", "organization"): "HealthcareService-organization",
    ("HealthcareService", "location"): "HealthcareService-location",
    ("HealthcareService", "service-type"): "HealthcareService-service-type",
    ("Schedule", "_id"): "Resource-id",
    ("Schedule", "actor"): "Schedule-actor",
}


def capability_statement(
    declared: Declared,
    base: str,
    max_count: int,
    token_url: str | None = None,
    topics: Sequence[str] = (),
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
                "documentation": (
                    "The source(s) to ask, by name (meta.source of what they hold); "
                    "_source:below=x asks every source whose name begins with x"
                ),
            }
        )
        params.append(
            {
                "name": "_lastUpdated",
                "type": "date",
                "definition": _SP + "Resource-lastUpdated",
                "documentation": (
                    "meta.lastUpdated: the vendor's change time, or when this service first "
                    "saw the record's current content"
                ),
            }
        )
        interactions = declared.interactions(resource_type)
        resource: dict[str, Any] = {
            "type": resource_type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
            "interaction": [{"code": code} for code in sorted(interactions)],
            # Every resource carries meta.versionId; an update honours If-Match.
            "versioning": "versioned-update" if "update" in interactions else "versioned",
            "readHistory": False,
            "updateCreate": False,
            "conditionalCreate": "create" in interactions,
            "searchParam": params,
            "documentation": (
                f"_sort takes {', '.join(sorted(sort_keys(resource_type)))} (each page is "
                "sorted; a search of one page is sorted whole). _elements takes the "
                f"top-level elements of {resource_type}."
            ),
        }
        includes = declared.advertised_includes(resource_type)
        if includes:
            resource["searchInclude"] = includes
        revincludes = declared.advertised_revincludes(resource_type)
        if revincludes:
            resource["searchRevInclude"] = revincludes
        if resource_type == "Patient":
            resource["operation"] = [{"name": "everything", "definition": EVERYTHING_DEFINITION}]
        resources.append(resource)
    resources.append(concept_map_capability())  # the code tables, served by the service itself
    resources.append(group_capability())  # one Group per source, made by the service itself
    resources.append(_subscription_capability(topics))  # kept by the service itself
    if topics:  # the topics, read at their canonical URLs or as Basic
        resources.append(TOPIC_CAPABILITY)
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
    advertise_export(rest)  # $export: system level, Patient and Group
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
        "software": {"name": "fhir-adapter", "version": package_version()},
        "implementation": {
            "description": "FHIR R4 facade over vendor healthcare APIs",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json", "application/json"],
        "rest": [rest],
    }
