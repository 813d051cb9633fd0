"""What a mapping knows about the source a record came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mappings.common.ids import SourceIds
from mappings.common.time import zone

__all__ = ["LeyrContext", "NyraContext", "SourceContext"]


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
class LeyrContext(SourceContext):
    """A Leyr EHR source. Ids are scoped by care unit, which each record carries."""


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
