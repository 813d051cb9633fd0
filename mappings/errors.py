"""Errors raised by the mappings.

    MappingError (ValueError)
    ├── InvalidVendorRecord     a vendor record that cannot be mapped; ``path`` names the field
    ├── InvalidResource         a FHIR resource that cannot be mapped; ``expression`` is FHIRPath
    ├── IdError                 the global id codec
    │   ├── IdTooLong           the encoded id would exceed FHIR's 64 characters
    │   └── MalformedId         not an id this codec produced (or not canonical)
    └── LocalTimeError          a vendor local time that names no single instant
        ├── NonexistentLocalTime    it falls in a DST gap
        └── UnrepresentableLocalTime  an instant the vendor's local time cannot express

Messages never carry patient data: they name the field and the rule that was broken, and
show a value only when it is a code from a closed vendor vocabulary (a status, a gender).
"""

from __future__ import annotations

__all__ = [
    "IdError",
    "IdTooLong",
    "InvalidResource",
    "InvalidVendorRecord",
    "LocalTimeError",
    "MalformedId",
    "MappingError",
    "NonexistentLocalTime",
    "UnrepresentableLocalTime",
]


class MappingError(ValueError):
    """Base of every error the mappings raise."""


class InvalidVendorRecord(MappingError):
    """A vendor record is missing a field, has a wrong type or an unknown code."""

    def __init__(self, vendor: str, path: str, reason: str) -> None:
        self.vendor = vendor
        self.path = path
        self.reason = reason
        super().__init__(f"{vendor} record field {path!r}: {reason}")


class InvalidResource(MappingError):
    """A FHIR resource cannot be expressed in the vendor's terms."""

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"{expression}: {reason}")


class IdError(MappingError):
    """The global id codec refused an id."""


class IdTooLong(IdError):
    def __init__(self, length: int) -> None:
        self.length = length
        super().__init__(
            f"encoded id would be {length} characters; FHIR ids hold at most 64 "
            "(use a shorter source name)"
        )


class MalformedId(IdError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"not a valid fhir-adapter id: {reason}")


class LocalTimeError(MappingError):
    """A wall-clock time in a source's zone that does not name exactly one instant."""


class NonexistentLocalTime(LocalTimeError):
    def __init__(self, zone: str) -> None:
        self.zone = zone
        super().__init__(f"local time does not exist in {zone} (daylight-saving gap)")


class UnrepresentableLocalTime(LocalTimeError):
    def __init__(self, zone: str) -> None:
        self.zone = zone
        super().__init__(
            f"instant is the second occurrence of a repeated local time in {zone} "
            "(daylight-saving fold); the vendor's local time would name the first"
        )
