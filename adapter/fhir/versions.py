"""Resource versions: ``meta.versionId``, ``ETag`` and ``If-Match``.

The vendors keep no version numbers, so a version is a digest of the resource's content
(everything but ``meta``, as JSON with sorted keys): the same vendor record always maps to
the same content, so an unchanged record keeps its version and any change at the vendor
gives a new one. Search results and reads of the same record carry the same version.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from adapter.fhir.outcome import FhirError

__all__ = ["etag_of", "parse_if_match", "require_version", "version_of", "with_version"]


def version_of(resource: dict[str, Any]) -> str:
    """The version of a resource: 16 hex digits of the digest of its content."""
    content = {k: v for k, v in resource.items() if k != "meta"}
    return hashlib.blake2b(
        orjson.dumps(content, option=orjson.OPT_SORT_KEYS), digest_size=8
    ).hexdigest()


def with_version(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource with ``meta.versionId`` (a new dict; the input is left as it is)."""
    meta = resource.get("meta") or {}
    if meta.get("versionId"):
        return resource
    return {**resource, "meta": {**meta, "versionId": version_of(resource)}}


def etag_of(resource: dict[str, Any]) -> str:
    """The weak ETag of a resource, as FHIR writes it: ``W/"<versionId>"``."""
    version = (resource.get("meta") or {}).get("versionId") or version_of(resource)
    return f'W/"{version}"'


_VERSION = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def parse_if_match(header: str) -> str:
    """The version an ``If-Match`` names, weak (``W/"v"``) or strong (``"v"``); a bare
    version is taken too. 400 for a list or ``*`` (no conditional update is offered)."""
    text = header.strip()
    if text.startswith(("W/", "w/")):
        text = text[2:]
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if not _VERSION.fullmatch(text):  # an R4 id: no list, no *, no control character
        raise FhirError.one(
            400, "invalid", 'If-Match must name one version: W/"<versionId>"', "If-Match"
        )
    return text


def require_version(resource: dict[str, Any], wanted: str) -> None:
    """Nothing if the resource is at version ``wanted``; else 412 naming If-Match."""
    if version_of(resource) != wanted:
        raise FhirError.one(
            412,
            "conflict",
            "If-Match names a version that is no longer current: read the resource again",
        )
