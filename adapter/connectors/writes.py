"""Helpers for writes: what a PUT asks to change, and what a new resource may reference."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, tzinfo
from typing import Any, TypeVar

from adapter.connectors.base import (
    WriteNotMade,
    WriteOutcomeUnknown,
    WriteRefusals,
    WriteRefused,
    Written,
)
from adapter.fhir.kept import SERVER_SET
from adapter.fhir.match import actor_references
from adapter.transport import MalformedResponse, VendorError, scope
from mappings import MappingError, decode_id
from mappings.errors import InvalidResource

__all__ = [
    "Ambiguous",
    "actor_of",
    "all_refusals",
    "changed",
    "found_before_sending",
    "look_after_unknown",
    "participants_changed",
    "refuse_future_birth",
    "same_fields",
    "unknown_outcome",
    "unreadable_answer",
    "without_foreign_references",
]

T = TypeVar("T")


def changed(current: dict[str, Any], wanted: dict[str, Any]) -> set[str]:
    """Top-level elements whose value differs (present in one only counts)."""
    keys = (set(current) | set(wanted)) - SERVER_SET
    return {k for k in keys if current.get(k) != wanted.get(k)}


def actor_of(resource: dict[str, Any], kind: str) -> str | None:
    """The reference of the first participant whose actor is a ``kind``."""
    return next(actor_references(resource, kind), None)


def participants_changed(current: dict[str, Any], wanted: dict[str, Any]) -> set[str]:
    """Which kinds of participant (Patient, Practitioner, Location) the PUT changes."""
    return {
        kind
        for kind in ("Patient", "Practitioner", "Location")
        if actor_of(current, kind) != actor_of(wanted, kind)
    }


def _ours(reference: Any, source: str) -> bool:
    ref = (reference or {}).get("reference") if isinstance(reference, dict) else None
    if not isinstance(ref, str) or "/" not in ref:
        return False
    try:
        return decode_id(ref.rsplit("/", 1)[1]).source == source
    except MappingError:
        return False


def without_foreign_references(patient: dict[str, Any], source: str) -> dict[str, Any]:
    """A new Patient without ``managingOrganization`` / ``generalPractitioner`` references
    to another system: the vendor can hold only its own (a care unit, a branch, a doctor),
    so those are dropped, as mappings/README.md says."""
    out = dict(patient)
    if "managingOrganization" in out and not _ours(out["managingOrganization"], source):
        del out["managingOrganization"]
    if "generalPractitioner" in out:
        kept = [r for r in out["generalPractitioner"] or () if _ours(r, source)]
        if kept:
            out["generalPractitioner"] = kept
        else:
            del out["generalPractitioner"]
    return out


_MAX_REFUSALS = 20


def all_refusals(
    resource: dict[str, Any],
    to_vendor: Callable[[dict[str, Any]], T],
    *checks: Callable[[dict[str, Any]], None],
) -> T:
    """``to_vendor(resource)``, the record for the vendor; or every element the vendor
    cannot take, not only the first (:class:`WriteRefusals`): each check's refusals, and
    each the mapping makes, the mapping tried again without the element it refused."""
    refusals: list[Exception] = []
    for check in checks:
        try:
            check(resource)
        except WriteRefusals as exc:
            refusals.extend(exc.refusals)
        except (InvalidResource, WriteRefused) as exc:
            refusals.append(exc)
    rest = dict(resource)
    record: T | None = None
    for _ in range(_MAX_REFUSALS):
        try:
            record = to_vendor(rest)
            break
        except (InvalidResource, WriteRefused) as exc:
            refusals.append(exc)
            element = exc.expression.split(".")[1].split("[")[0] if "." in exc.expression else ""
            if element not in rest:
                break  # nothing to set aside: the others cannot be looked for
            del rest[element]
    if len(refusals) == 1:
        raise refusals[0]
    if refusals or record is None:
        raise WriteRefusals(refusals)
    return record


def refuse_future_birth(patient: dict[str, Any], zone: tzinfo, vendor: str) -> None:
    """A birth date after today, where the source is: a vendor that derives an age from it
    stores the record, then cannot give it back (Nyra: a negative age), so it is refused
    before the vendor is called."""
    born = patient.get("birthDate")
    if not isinstance(born, str):
        return
    try:
        day = date.fromisoformat(born[:10]) if len(born) >= 10 else date(int(born[:4]), 1, 1)
    except ValueError:
        return  # not a full date: the R4 validation has already judged it
    if day > datetime.now(zone).date():
        raise WriteRefused(
            "Patient.birthDate",
            f"is after today; {vendor} would keep it but could not give the patient back",
        )


async def look_after_unknown(
    source: str,
    failure: Exception,
    look: Callable[[], Awaitable[dict[str, Any] | None]],
    *,
    created: bool = True,
) -> Written:
    """A write ended without a clear answer (a timeout, a lost connection, a 5xx, a
    success whose body cannot be read: ``committed_unknown``), and the vendor may have
    made it all the same: look for it before anyone is told to send again.

    Found: it is the write's answer. Surely absent: :class:`WriteNotMade` (the client may
    send again, with its Idempotency-Key) - unless the vendor had answered success, when
    it was made and must be found. Looking failed or was ambiguous:
    :class:`WriteOutcomeUnknown` (the client must search first)."""
    try:
        with scope.reserved():
            found = await look()
    except Exception:
        raise WriteOutcomeUnknown(source) from None
    if found is not None:
        return Written(found, created)
    if isinstance(failure, MalformedResponse) and (failure.status or 0) < 300:
        raise WriteOutcomeUnknown(source)  # it said success: made, and not found
    raise WriteNotMade(source, getattr(failure, "retry_after", None))


def unreadable_answer(source: str, status: int | None, detail: str) -> MalformedResponse:
    """The error of a write the vendor answered with success but not in the shape its
    contract promises: made, its record not known."""
    broken = MalformedResponse(source, status, detail)
    broken.committed_unknown = True
    return broken


async def found_before_sending(
    source: str, look: Callable[[], Awaitable[dict[str, Any] | None]]
) -> dict[str, Any] | None:
    """An earlier try of this write ended without a clear answer: what it may have made,
    looked up before anything is sent again (None: it was not made). Looking that fails
    is :class:`WriteOutcomeUnknown`: still, nothing may be sent."""
    try:
        with scope.reserved():
            return await look()
    except Exception:
        raise WriteOutcomeUnknown(source) from None


def unknown_outcome(error: Exception) -> bool:
    """Whether ``error`` ended a write that the vendor may have carried out."""
    return isinstance(error, VendorError) and error.committed_unknown


def same_fields(sent: dict[str, Any], record: Any, keys: tuple[str, ...]) -> bool:
    """Does a vendor record hold what a create sent, in every one of ``keys`` it sent?"""
    if not isinstance(record, dict):
        return False
    return all(record.get(k) == sent[k] for k in keys if sent.get(k) not in (None, ""))


class Ambiguous(Exception):
    """More than one record could be the one a timed-out create made."""
