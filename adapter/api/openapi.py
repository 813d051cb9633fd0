"""The facade's OpenAPI document: served at ``/openapi.json`` (:mod:`adapter.api.docs`)
and, for the embedded default, committed in ``openapi/openapi.json``.

FastAPI's document of the routes is completed here with what the routes themselves cannot
declare: what every answer is shaped like (an OperationOutcome for every error but the
token endpoint's OAuth errors), every status a route can answer, with the headers that
come with some of them, the resource types as an enum, and the SMART token as the
security scheme. The statuses follow from where a request goes:

- every path, through the request guard (:mod:`adapter.api.guard`): 400 (a Host this
  server does not answer for), 405 (``Allow`` lists the path's methods:
  :mod:`adapter.api.routes`), 414, 431, 500;
- a body: 408 (it did not arrive in time) and 413 (too large); 415 for a FHIR route's;
- ``/fhir/{resource_type}...``: a token (401, 403, 429), an unknown type or id (404), a
  format (406), and the sources behind them (502, 503, 504);
- ``/fhir/ConceptMap...`` (the code tables, no source behind them): a token, a format, and
  404 for an unknown id;
- ``/fhir/Group...`` (one Group per source): a token, a format, 404 for an unknown id, and
  503 when the request's time runs out (a source that fails only leaves out a quantity);
- ``/fhir/SubscriptionTopic/{name}``, ``/fhir/Basic/{name}`` (the topics): a token, a
  format, 404 for an unknown name;
- ``/fhir/Patient.../$everything``: as ``/fhir/{resource_type}...``;
- the writes' and the token endpoint's own, as their routes declare them.

A client generated from this document, or a fuzzer, then finds no answer it was not told
of (``tests/integration/test_api_fuzz.py``).
"""

from __future__ import annotations

from typing import Any

from adapter.api.bodies import body_name, write_schemas

__all__ = ["complete", "document"]

FHIR_JSON = "application/fhir+json"
JSON = "application/json"
_SCHEMAS = "#/components/schemas/"

_WHY = {
    400: "a bad parameter, cursor or body, named in the issue's expression; or a Host header "
    "this server does not answer for",
    401: "no bearer token, or one that was refused (WWW-Authenticate says why)",
    403: "the token's scopes do not allow this interaction",
    404: "unknown resource type or id",
    405: "a method this path does not take, or an interaction no source offers for the type",
    406: "a format other than JSON was asked for",
    408: "the request body did not arrive whole within [server] body_seconds",
    413: "the body is larger than this route takes (1 MiB at most)",
    414: "the URL is over 8 KiB",
    415: "the body is not of the media type this route takes",
    422: "the resource is not valid, or not what the source can hold",
    429: "this client's requests per minute are spent (Retry-After)",
    431: "the request headers are over 16 KiB",
    500: "an unexpected failure (it quotes nothing)",
    502: "a source failed or answered wrongly",
    503: "a source is unavailable or rate limiting (Retry-After when known)",
    504: "a source did not answer in time",
}
# The one search parameter every type takes with the same meaning; the others, per type,
# are the CapabilityStatement's to list.
_COUNT = {
    "name": "_count",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 0, "maximum": 999999},
    "description": "matches per page; above [server] max_count it is capped (the self "
    "link says so), 0 gives the total alone",
}
_EVERYWHERE = (400, 405, 414, 431, 500)
_WITH_BODY = (408, 413)
_WITH_TOKEN = (401, 403, 429)
_FHIR = (404, 406, 502, 503, 504)
_HEADERS: dict[int, dict[str, str]] = {
    401: {"WWW-Authenticate": "the Bearer challenge, with error and error_description"},
    405: {"Allow": "the methods this path takes"},
    429: {"Retry-After": "seconds until the client's next window"},
    503: {"Retry-After": "seconds to wait, when known"},
    504: {"Retry-After": "seconds to wait"},
}
_REQUIRED_HEADERS = {(401, "WWW-Authenticate"), (405, "Allow"), (429, "Retry-After")}
# The bodies the write routes take (adapter.api.writes): either JSON media type.
_WRITE_PATHS = frozenset({"/fhir/{resource_type}", "/fhir/{resource_type}/{fhir_id}"})
_SUBSCRIPTION_WRITES = {
    "post": ("/fhir/Subscription",),
    "put": ("/fhir/Subscription/{subscription_id}",),
}


def document(app: Any) -> dict[str, Any]:
    """The OpenAPI document of ``app`` (a FastAPI app as :func:`adapter.app.create_app`
    makes it): FastAPI's description of its routes, completed."""
    from fastapi.openapi.utils import get_openapi

    base = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    declared = app.state.facade.declared
    types = sorted(declared.types)
    writes = {
        "post": [t for t in types if declared.writable(t, "create")],
        "put": [t for t in types if declared.writable(t, "update")],
    }
    return complete(base, types, writes)


def complete(
    document: dict[str, Any], types: list[str], writes: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """FastAPI's ``document`` with every answer described (see the module's docstring);
    ``types``: the resource types served; ``writes``: those some source creates
    (``post``) and updates (``put``), whose bodies are described by their own schemas
    (:mod:`adapter.api.bodies`), as a Subscription's are."""
    writes = writes or {"post": [], "put": []}
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(_schemas(types))
    schemas.update(write_schemas({*writes["post"], *writes["put"], "Subscription"}))
    components["securitySchemes"] = {
        "smart": {
            "type": "oauth2",
            "description": "SMART Backend Services: a client credentials token from "
            "/auth/token (client_secret_basic, client_secret_post or private_key_jwt)",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": "/auth/token",
                    "scopes": {
                        "system/*.cruds": "create, read, update, delete and search every type",
                        "system/*.rs": "read and search every type",
                        "system/Patient.rs": "read and search Patients (one type, likewise)",
                        "system/ConceptMap.rs": "read, search and $translate the code tables",
                        "system/Group.rs": "read and search the Groups (one per source)",
                    },
                }
            },
        }
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if path in _WRITE_PATHS and method in writes:
                _write_body(operation, writes[method])
            elif path in _SUBSCRIPTION_WRITES.get(method, ()):
                _write_body(operation, ["Subscription"])
            _complete_operation(path, method, operation, types)
    return document


def _write_body(operation: dict[str, Any], written: list[str]) -> None:
    """A write's body: one of the resources of ``written``, told apart by its
    resourceType. The path's ``resource_type`` names those types only (another is a
    405)."""
    refs = {t: _SCHEMAS + body_name(t) for t in written}
    schema: dict[str, Any] = {
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "resourceType", "mapping": refs},
    }
    if len(written) == 1:
        schema = {"$ref": refs[written[0]]}
    operation["requestBody"] = {
        "required": True,
        "description": "the resource, of the path's type (a resourceType of another is a 400)"
        if len(written) > 1
        else f"the {written[0]}",
        "content": {FHIR_JSON: {"schema": schema}, JSON: {"schema": schema}},
    }
    operation["parameters"] = [
        {
            **parameter,
            "schema": {"type": "string", "enum": written},
            "description": "a resource type some source can write so (another is a 405)",
        }
        if parameter.get("name") == "resource_type"
        else parameter
        for parameter in operation.get("parameters", [])
    ]


def _complete_operation(
    path: str, method: str, operation: dict[str, Any], types: list[str]
) -> None:
    # Patient/$everything (adapter.api.everything) answers as any read of a source does.
    fhir = path.startswith("/fhir/{resource_type}") or path.endswith("/$everything")
    tables = path.startswith("/fhir/ConceptMap")  # adapter.api.terminology
    export = "$export" in path  # adapter.api.export: no source is asked while answering
    groups = path.startswith("/fhir/Group") and not export  # adapter.api.groups
    # The topics at their canonical URLs, and as Basic (adapter.api.topics)
    topics = path.startswith(("/fhir/SubscriptionTopic/", "/fhir/Basic"))
    subscriptions = path.startswith("/fhir/Subscription") and not topics
    for parameter in operation.get("parameters", []):
        if parameter.get("name") == "resource_type" and "enum" not in parameter["schema"]:
            parameter["schema"] = {"type": "string", "enum": types}
            parameter["description"] = "a resource type the CapabilityStatement lists"
    if path == "/fhir/{resource_type}" and method == "get":
        operation["parameters"].append(_COUNT)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    # FastAPI's own 422 (its validation body) is never sent: every error is an
    # OperationOutcome. A 422 a route declares itself stays.
    validation = responses.get("422", {}).get("content", {}).get(JSON, {}).get("schema", {})
    if "HTTPValidationError" in validation.get("$ref", ""):
        responses.pop("422")
    statuses = set(_EVERYWHERE)
    if "requestBody" in operation:
        statuses |= set(_WITH_BODY)
        operation["requestBody"].setdefault("required", True)
        if fhir or tables or path.endswith("/_search"):  # a form body, or another type
            statuses.add(415)
    if fhir:
        statuses |= set(_WITH_TOKEN) | set(_FHIR)
        operation["security"] = [{"smart": []}]
    elif tables:
        statuses |= set(_WITH_TOKEN) | {406} | ({404} if "{fhir_id}" in path else set())
        operation["security"] = [{"smart": []}]
    elif export:
        statuses |= set(_WITH_TOKEN) | {404, 406}
        operation["security"] = [{"smart": []}]
    elif groups:
        statuses |= set(_WITH_TOKEN) | {406, 503} | ({404} if "{group_id}" in path else set())
        operation["security"] = [{"smart": []}]
    elif topics:  # the service's own data: no source is asked
        statuses |= set(_WITH_TOKEN) | {406} | ({404} if "{name}" in path else set())
        operation["security"] = [{"smart": []}]
    elif subscriptions:  # kept by the service itself: no source is asked
        statuses |= set(_WITH_TOKEN) | {406}
        statuses |= {404} if "{subscription_id}" in path else set()
        writes = method in ("post", "put") and not path.endswith("/_search")
        statuses |= {422, *_WITH_BODY} if writes else set()
        statuses |= {409} if method == "put" else set()  # a delivery holds it
        operation["security"] = [{"smart": []}]
    elif path == "/fhir/metadata":
        statuses.add(406)
    elif path == "/auth/token":
        # 404: under open access no tokens are given; 429: too many failed requests for
        # the client or from the address (adapter.api.auth.LoginThrottle)
        statuses |= {401, 404, 429}
    declared = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
    if not fhir:  # the FHIR router's defaults name vendor failures no such route meets
        for status in declared - statuses:
            del responses[str(status)]
        declared &= statuses
    for status in sorted(statuses | declared):
        responses[str(status)] = _error(path, status, responses.get(str(status)))
    for code, response in responses.items():
        if code.isdigit() and int(code) < 400:
            if export:
                _export_success(path, code, response)
            else:
                response["content"] = _success(path, method)


def _export_success(path: str, code: str, response: dict[str, Any]) -> None:
    """A 2xx of bulk data export: kick-off and cancel have no body, the status is the
    manifest (or, 202, the progress), a file is NDJSON."""
    response.pop("content", None)
    header = {"required": True, "schema": {"type": "string"}}
    if path.startswith("/fhir/$export-file/"):
        text = {"schema": {"type": "string", "description": "one resource a line"}}
        response["content"] = {"application/fhir+ndjson": text}
    elif path.startswith("/fhir/$export-poll/") and code == "200":
        response["content"] = {JSON: {"schema": {"$ref": _SCHEMAS + "ExportManifest"}}}
    elif path.startswith("/fhir/$export-poll/") and response.get("description", "").startswith(
        "still"
    ):
        response["headers"] = {
            "X-Progress": {"description": "what is written so far", **header},
            "Retry-After": {"description": "seconds before asking again", **header},
        }
    elif path.endswith("/$export"):
        response["headers"] = {
            "Content-Location": {"description": "the job's status URL", **header}
        }


def _error(path: str, status: int, given: dict[str, Any] | None) -> dict[str, Any]:
    """An error answer: an OperationOutcome, in either JSON media type (the one asked
    for), but for the token endpoint's RFC 6749 errors."""
    # A route's own words, but for 400, which the guard answers too (a Host refused).
    why = (given or {}).get("description", "").removeprefix("OperationOutcome: ")
    if status == 400 or not why or why.startswith("Successful"):
        why = _WHY[status]
    outcome = {"schema": {"$ref": _SCHEMAS + "OperationOutcome"}}
    content: dict[str, Any] = {FHIR_JSON: outcome, JSON: outcome}
    description = f"OperationOutcome: {why}"
    if path == "/auth/token" and status == 429:
        description = "OperationOutcome: too many failed token requests for this client or "
        description += "from this address (Retry-After)"
    elif path == "/auth/token" and status in (400, 401):
        # RFC 6749 errors, but for a Host the guard refused before the route ran.
        either = {"schema": {"oneOf": [{"$ref": _SCHEMAS + "OAuthError"}, outcome["schema"]]}}
        content = {FHIR_JSON: outcome, JSON: either}
        description = (
            "OAuth2 error (invalid_request, unsupported_grant_type, invalid_scope); or an "
            "OperationOutcome for a Host this server does not answer for"
            if status == 400
            else "OAuth2 invalid_client: the client could not be authenticated"
        )
    answer: dict[str, Any] = {"description": description, "content": content}
    headers = _HEADERS.get(status)
    if headers:
        answer["headers"] = {
            name: {
                "description": text,
                # The token endpoint's own 401s follow RFC 6749, some without a challenge.
                "required": (status, name) in _REQUIRED_HEADERS
                and not (status == 401 and path == "/auth/token"),
                "schema": {"type": "string"},
            }
            for name, text in headers.items()
        }
    return answer


def _success(path: str, method: str) -> dict[str, Any]:
    """The content of a 2xx: the FHIR resource it is, in either JSON media type."""
    if path == "/auth/token":
        return {JSON: {"schema": {"$ref": _SCHEMAS + "TokenResponse"}}}
    if path.endswith("/.well-known/smart-configuration"):
        return {JSON: {"schema": {"$ref": _SCHEMAS + "SmartConfiguration"}}}
    if path == "/fhir/metadata":
        name = "CapabilityStatement"
    elif path.endswith(("/_search", "/$everything", "/$status", "/$events")) or (
        path in ("/fhir/{resource_type}", "/fhir/ConceptMap", "/fhir/Group", "/fhir/Subscription")
        and method == "get"
    ):
        name = "Bundle"
    elif path.startswith("/fhir/Group/"):
        name = "Group"
    elif path.startswith(("/fhir/SubscriptionTopic/", "/fhir/Basic/")):
        name = "Resource"  # a Basic: the topic
    elif path.startswith("/fhir/Subscription"):
        name = "Subscription"
    elif path.endswith("/$translate"):
        name = "Parameters"
    elif path.startswith("/fhir/ConceptMap/"):
        name = "ConceptMap"
    elif method in ("post", "put"):
        name = "WriteAnswer"
    else:
        name = "Resource"
    schema = {"$ref": _SCHEMAS + name}
    return {FHIR_JSON: {"schema": schema}, JSON: {"schema": schema}}


def _schemas(types: list[str]) -> dict[str, Any]:
    """What the answers hold, as far as a client may rely on it (the full FHIR R4 models
    are https://hl7.org/fhir/R4/)."""
    strings = {"type": "array", "items": {"type": "string"}}
    resource = {
        "type": "object",
        "description": "a FHIR R4 resource of a type the CapabilityStatement lists",
        "required": ["resourceType", "id"],
        "properties": {
            "resourceType": {"type": "string", "enum": types},
            "id": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"},
        },
    }
    outcome = {
        "type": "object",
        "description": "FHIR R4 OperationOutcome: what went wrong, each issue with the "
        "FHIRPath of what it concerns",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"const": "OperationOutcome"},
            "issue": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["severity", "code"],
                    "properties": {
                        "severity": {"enum": ["fatal", "error", "warning", "information"]},
                        "code": {"type": "string"},
                        "diagnostics": {"type": "string"},
                        "expression": strings,
                    },
                },
            },
        },
    }
    return {
        "Resource": resource,
        "OperationOutcome": outcome,
        "ConceptMap": {
            "type": "object",
            "description": "FHIR R4 ConceptMap: one vendor code table",
            "required": ["resourceType", "id", "url", "status"],
            "properties": {
                "resourceType": {"const": "ConceptMap"},
                "id": {"type": "string"},
                "url": {"type": "string"},
                "status": {"type": "string"},
                "group": {"type": "array"},
            },
        },
        "Group": {
            "type": "object",
            "description": "FHIR R4 Group: the patients of one source, named by it (quantity "
            "where the source counts them exactly; no member list)",
            "required": ["resourceType", "id", "type", "actual", "name"],
            "properties": {
                "resourceType": {"const": "Group"},
                "id": {"type": "string", "pattern": "^[a-z0-9\\-]{1,32}$"},
                "type": {"const": "person"},
                "actual": {"const": True},
                "name": {"type": "string"},
                "quantity": {"type": "integer", "minimum": 0},
            },
        },
        "Subscription": {
            "type": "object",
            "description": "FHIR R4 Subscription with a rest-hook channel (its headers are "
            "never echoed)",
            "required": ["resourceType", "id", "status", "criteria", "channel"],
            "properties": {
                "resourceType": {"const": "Subscription"},
                "id": {"type": "string"},
                "status": {"type": "string"},
                "criteria": {"type": "string"},
                "channel": {"type": "object"},
            },
        },
        "Parameters": {
            "type": "object",
            "description": "FHIR R4 Parameters: $translate's result (boolean), message and "
            "one match per concept found (equivalence, concept, source)",
            "required": ["resourceType", "parameter"],
            "properties": {
                "resourceType": {"const": "Parameters"},
                "parameter": {
                    "type": "array",
                    "minItems": 2,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                },
            },
        },
        "WriteAnswer": {
            "description": "the resource as stored, or with Prefer: return=OperationOutcome "
            "an OperationOutcome (return=minimal: no body)",
            "oneOf": [{"$ref": _SCHEMAS + "Resource"}, {"$ref": _SCHEMAS + "OperationOutcome"}],
        },
        "Bundle": {
            "type": "object",
            "description": "FHIR R4 Bundle of type searchset: one page, with its self, next "
            "and previous links",
            "required": ["resourceType", "type", "link"],
            "properties": {
                "resourceType": {"const": "Bundle"},
                "type": {"const": "searchset"},
                "total": {"type": "integer", "minimum": 0},
                "link": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["relation", "url"],
                        "properties": {"relation": {"type": "string"}, "url": {"type": "string"}},
                    },
                },
                "entry": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "fullUrl": {"type": "string"},
                            "resource": {"type": "object"},
                            "search": {
                                "type": "object",
                                "properties": {"mode": {"enum": ["match", "include", "outcome"]}},
                            },
                        },
                    },
                },
            },
        },
        "CapabilityStatement": {
            "type": "object",
            "description": "FHIR R4 CapabilityStatement, generated from the configured sources",
            "required": ["resourceType", "fhirVersion", "rest"],
            "properties": {
                "resourceType": {"const": "CapabilityStatement"},
                "fhirVersion": {"const": "4.0.1"},
                "rest": {"type": "array", "minItems": 1},
            },
        },
        "ExportManifest": {
            "type": "object",
            "description": "Bulk Data manifest: the files of a finished export",
            "required": ["transactionTime", "request", "requiresAccessToken", "output", "error"],
            "properties": {
                "transactionTime": {"type": "string"},
                "request": {"type": "string"},
                "requiresAccessToken": {"type": "boolean"},
                "output": {"type": "array", "items": {"type": "object"}},
                "error": {"type": "array", "items": {"type": "object"}},
            },
        },
        "OAuthError": {
            "type": "object",
            "description": "RFC 6749 error: what kind of problem, never which part of a "
            "credential was wrong",
            "required": ["error"],
            "properties": {
                "error": {
                    "enum": [
                        "invalid_request",
                        "invalid_client",
                        "invalid_grant",
                        "unauthorized_client",
                        "unsupported_grant_type",
                        "invalid_scope",
                    ]
                },
                "error_description": {"type": "string"},
            },
        },
        "TokenResponse": {
            "type": "object",
            "required": ["access_token", "token_type", "expires_in", "scope"],
            "properties": {
                "access_token": {"type": "string"},
                "token_type": {"const": "bearer"},
                "expires_in": {"type": "integer", "minimum": 1},
                "scope": {"type": "string"},
            },
        },
        "SmartConfiguration": {
            "type": "object",
            "required": ["token_endpoint", "grant_types_supported"],
            "properties": {
                "token_endpoint": {"type": "string"},
                "grant_types_supported": strings,
                "token_endpoint_auth_methods_supported": strings,
                "scopes_supported": strings,
                "capabilities": strings,
            },
        },
    }
