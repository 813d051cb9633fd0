"""What a mapping knows about the source a record came from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mappings.common.ids import SourceIds
from mappings.common.time import zone

__all__ = ["LeyrContext", "LeyrDirectory", "NyraContext", "SourceContext"]


@dataclass(frozen=True)
class SourceContext:
    """The source's configured name and IANA time zone; binds the id codec to the source."""

    source: str
    timezone: str

    ids: SourceIds = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", SourceIds(self.source))  # checks the name
        zone(self.timezone)  # an unknown zone fails here, not per record

    def id(self, vendor_id: str, scope: str | None = None) -> str:
        """The global FHIR id of a record of this source."""
        return self.ids.encode(vendor_id, scope)

    def ref(self, resource_type: str, vendor_id: str, scope: str | None = None) -> str:
        """A relative reference ``Type/global-id`` to a record of this source."""
        return f"{resource_type}/{self.ids.encode(vendor_id, scope)}"


@dataclass(frozen=True)
class LeyrDirectory:
    """The names a Leyr EHR gives its care units, resources and healthcare services, and
    which of its resources are equipment.

    Records name these only by id; the directory lets a mapping add the name as a
    reference's ``display`` and reference equipment as a ``Device``. Resources and services
    are only unique within their care unit, so they are keyed ``(care unit, id)``. An empty
    directory (the default) adds nothing.
    """

    care_units: Mapping[str, str] = field(default_factory=dict)
    """care unit id -> name"""
    resources: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(care unit id, resource id) -> name"""
    devices: frozenset[tuple[str, str]] = frozenset()
    """(care unit id, resource id) of every resource that is equipment"""
    services: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(care unit id, healthcare service id) -> name"""

    @classmethod
    def from_records(
        cls, care_units: Iterable[Any], resources: Iterable[Any], services: Iterable[Any]
    ) -> LeyrDirectory:
        """The directory of Leyr's own records, as its list routes return them.

        Care units are ``{"id", "name"}``; resources and services carry ``care_unit_id``
        beside their ``id`` and ``name``, and resources a ``type`` (``"equipment"`` makes
        a Device). Records that are not objects, or lack a string id (or care unit), are
        skipped; a missing or blank name is not recorded. Never raises.
        """
        unit_names: dict[str, str] = {}
        for unit in care_units:
            unit_id = _text(unit, "id")
            name = _text(unit, "name")
            if unit_id is not None and name is not None:
                unit_names[unit_id] = name
        resource_names: dict[tuple[str, str], str] = {}
        devices: set[tuple[str, str]] = set()
        for resource in resources:
            key = _scoped_key(resource)
            if key is None:
                continue
            name = _text(resource, "name")
            if name is not None:
                resource_names[key] = name
            if resource.get("type") == "equipment":
                devices.add(key)
        service_names: dict[tuple[str, str], str] = {}
        for service in services:
            key = _scoped_key(service)
            name = _text(service, "name") if key is not None else None
            if key is not None and name is not None:
                service_names[key] = name
        return cls(unit_names, resource_names, frozenset(devices), service_names)


def _text(record: Any, key: str) -> str | None:
    """``record[key]`` when ``record`` is an object and the value a non-blank string."""
    if not isinstance(record, dict):
        return None
    value = record.get(key)
    if type(value) is str and value and not value.isspace():
        return value
    return None


def _scoped_key(record: Any) -> tuple[str, str] | None:
    """``(care_unit_id, id)`` of a resource or service record, or ``None``."""
    vendor_id = _text(record, "id")
    care_unit = _text(record, "care_unit_id")
    if vendor_id is None or care_unit is None:
        return None
    return care_unit, vendor_id


@dataclass(frozen=True)
class LeyrContext(SourceContext):
    """A Leyr EHR source. Ids are scoped by care unit, which each record carries.

    ``directory`` holds the names of the EHR's care units, resources and services (see
    :class:`LeyrDirectory`); it only adds displays and the Device kind, so it takes no part
    in comparing contexts.
    """

    directory: LeyrDirectory = field(default_factory=LeyrDirectory, compare=False)


@dataclass(frozen=True)
class NyraContext(SourceContext):
    """A Nyra hospital. Nyra appointments have no end: it is start + the doctor's slot."""

    slot_minutes: int = 15
    slot_minutes_by_doctor: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.slot_minutes < 1:
            raise ValueError("slot_minutes must be positive")

    def slot_for(self, doctor_id: str | None) -> int:
        if doctor_id is None:
            return self.slot_minutes
        return self.slot_minutes_by_doctor.get(doctor_id, self.slot_minutes)
