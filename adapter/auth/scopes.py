"""SMART system scopes (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

v2: ``system/Patient.rs`` (c create, r read, u update, d delete, s search), in that order;
v1 forms are read as v2: ``.read`` = ``rs``, ``.write`` = ``cud``, ``.*`` = ``cruds``. The
resource may be ``*``.
"""

from __future__ import annotations

import re

__all__ = ["INTERACTIONS", "Grant", "allows", "format_scopes", "narrow", "parse_scopes"]

INTERACTIONS = {"create": "c", "read": "r", "update": "u", "delete": "d", "search": "s"}
_SCOPE = re.compile(r"system/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}

Grant = dict[str, set[str]]  # resource type or "*" -> letters of cruds


def parse_scopes(text_or_list: str | list[str]) -> Grant:
    """The grant of a scope string or list; ``ValueError`` naming a malformed scope."""
    items = text_or_list.split() if isinstance(text_or_list, str) else list(text_or_list)
    grant: Grant = {}
    for item in items:
        match = _SCOPE.fullmatch(item)
        if not match or not match.group(2):
            raise ValueError(f"not a SMART system scope: {item}")
        resource, perms = match.group(1), match.group(2)
        grant.setdefault(resource, set()).update(_V1.get(perms, perms))
    return grant


def narrow(asked: Grant, held: Grant) -> Grant:
    """What of ``asked`` the client holds. A wildcard held covers any type asked for; a
    wildcard asked for gets each type held (and the held wildcard), within its letters."""
    out: Grant = {}

    def add(resource: str, perms: set[str]) -> None:
        if perms:
            out.setdefault(resource, set()).update(perms)

    for resource, perms in asked.items():
        if resource == "*":
            for held_resource, held_perms in held.items():
                add(held_resource, perms & held_perms)
        else:
            add(resource, perms & (held.get(resource, set()) | held.get("*", set())))
    return out


def allows(grant: Grant, resource_type: str, interaction: str) -> bool:
    letter = INTERACTIONS[interaction]
    return letter in grant.get(resource_type, set()) or letter in grant.get("*", set())


def format_scopes(grant: Grant) -> str:
    order = "cruds"
    return " ".join(
        f"system/{resource}.{''.join(c for c in order if c in perms)}"
        for resource, perms in sorted(grant.items())
    )
