"""What may leave the service for a client, checked the same way by the scope x road
matrix and its property: every resource of a readable type and of a source the client
may use."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from mappings import decode_id

__all__ = ["assert_visible", "entries", "secret_of", "source_of", "weekday"]


def secret_of(name: str) -> str:
    return f"{name}-secret-0123456789"


def source_of(resource: dict[str, Any]) -> str:
    """The source a resource came from: the prefix of its id before the first ``.`` (a
    Group's id is its source's name), which its ``meta.source`` must agree with."""
    if resource["resourceType"] == "Group":
        named = resource["id"]
    else:
        try:
            named = decode_id(resource["id"]).source
        except ValueError:
            raise AssertionError(f"{resource['id']} names no source") from None
    claimed = (resource.get("meta") or {}).get("source")
    assert claimed in (None, named), (
        f"{resource['resourceType']}/{resource['id']}: meta.source {claimed} is not its id's"
    )
    return named


def assert_visible(
    body: dict[str, Any], readable_types: frozenset[str] | set[str], sources: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Fail if ``body`` (a resource, or a Bundle: each entry's resource, and the resources
    inside those) holds a resource of a type not in ``readable_types`` or from a source not
    in ``sources``. A searchset's outcome entry (an OperationOutcome) is the answer's own
    word, not a resource that left a source. Returns the resources checked."""
    checked: list[dict[str, Any]] = []

    def visit(resource: dict[str, Any], where: str) -> None:
        kind = resource["resourceType"]
        if kind == "Bundle":
            for i, entry in enumerate(resource.get("entry") or []):
                inner = entry.get("resource")
                if inner is None:
                    continue
                mode = (entry.get("search") or {}).get("mode")
                if mode == "outcome" and inner["resourceType"] == "OperationOutcome":
                    continue
                visit(inner, f"{where}entry[{i}]({mode or 'entry'}) ")
            return
        assert kind in readable_types, (
            f"{where}{kind}/{resource.get('id')} is of a type the token may not read "
            f"(it may read {sorted(readable_types)})"
        )
        source = source_of(resource)
        assert source in sources, (
            f"{where}{kind}/{resource['id']} is from {source}, a source the client may not "
            f"use (it may use {list(sources)})"
        )
        checked.append(resource)
        for contained in resource.get("contained") or []:
            assert contained["resourceType"] in readable_types, (
                f"{where}{kind}/{resource['id']} contains a {contained['resourceType']}, a "
                "type the token may not read"
            )

    visit(body, "")
    return checked


def entries(body: dict[str, Any], *modes: str) -> list[tuple[str, str, str]]:
    """(mode, type, id) of a Bundle's entries in ``modes`` (all but the outcome: none)."""
    wanted = modes or ("match", "include")
    return [
        (e["search"]["mode"], e["resource"]["resourceType"], e["resource"]["id"])
        for e in body.get("entry") or []
        if e["search"]["mode"] in wanted
    ]


def weekday(days_ahead: int) -> date:
    """A weekday ``days_ahead`` days from today or the first after it (the sandboxes'
    calendars are open on weekdays ahead)."""
    day = date.today() + timedelta(days=days_ahead)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day
