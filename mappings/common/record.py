"""Reading vendor records field by field, with typed errors and a note of what was used.

Every value a mapping expresses in a standard FHIR element is marked *used*; whatever is
left (fields this project does not know, and known fields whose value FHIR cannot carry,
such as an empty string or an empty list) is kept verbatim by :func:`leftovers` so that
vendor -> FHIR -> vendor loses nothing.
"""

from __future__ import annotations

import re
from typing import Any, Literal, overload

from mappings.errors import InvalidVendorRecord

__all__ = ["VendorRecord", "is_code"]

# https://hl7.org/fhir/R4/datatypes.html#code
_FHIR_CODE = re.compile(r"[^\s]+(\s[^\s]+)*")


def is_code(value: str) -> bool:
    """Whether ``value`` is a valid FHIR ``code`` (no leading, trailing or double spaces)."""
    return _FHIR_CODE.fullmatch(value) is not None


class VendorRecord:
    """A vendor JSON object under a field path (``""`` for the record itself)."""

    __slots__ = ("data", "prefix", "used", "vendor")

    def __init__(self, vendor: str, data: Any, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise InvalidVendorRecord(vendor, prefix.rstrip(".") or "$", "expected a JSON object")
        self.vendor = vendor
        self.data: dict[str, Any] = data
        self.prefix = prefix
        self.used: set[str] = set()

    def error(self, key: str, reason: str) -> InvalidVendorRecord:
        return InvalidVendorRecord(self.vendor, f"{self.prefix}{key}", reason)

    @overload
    def text(self, key: str, *, required: Literal[True]) -> str: ...

    @overload
    def text(self, key: str, *, required: bool = False) -> str | None: ...

    def text(self, key: str, *, required: bool = False) -> str | None:
        """A non-blank string, or ``None`` when absent, null or blank (an error instead when
        ``required``: a required text is always a ``str``)."""
        value = self.data.get(key)
        if type(value) is str and value and not value.isspace():
            self.used.add(key)
            return value
        if value is not None and type(value) is not str:
            raise self.error(key, f"expected a string, got {type(value).__name__}")
        if required:
            raise self.error(key, "missing required field")
        return None

    def loose_text(self, key: str) -> str | None:
        """A non-blank string, or ``None``: any other value (blank, or of another type) is
        not an error but left for :meth:`leftovers`. For the directory records, where one
        odd field is no reason to refuse the whole practitioner or care unit."""
        value = self.data.get(key)
        if type(value) is str and value and not value.isspace():
            self.used.add(key)
            return value
        return None

    def positive_int(self, key: str) -> int | None:
        """A positive integer (not a boolean), or ``None``: any other value is left for
        :meth:`leftovers`."""
        value = self.data.get(key)
        if type(value) is int and value > 0:
            self.used.add(key)
            return value
        return None

    def code(self, key: str) -> str | None:
        """A string usable as a FHIR ``code``; any other string is left for :meth:`leftovers`."""
        value = self.data.get(key)
        if type(value) is str and _FHIR_CODE.fullmatch(value):
            self.used.add(key)
            return value
        if value is not None and type(value) is not str:
            raise self.error(key, f"expected a string, got {type(value).__name__}")
        return None

    def text_list(self, key: str) -> list[str]:
        """The non-blank strings of a list; the list is *used* only if none was blank."""
        value = self.data.get(key)
        if value is None:
            return []
        if type(value) is list and len(value) == 1:
            item = value[0]
            if type(item) is str and item and not item.isspace():
                self.used.add(key)
                return value.copy()
        if type(value) is not list:
            raise self.error(key, f"expected a list, got {type(value).__name__}")
        out: list[str] = []
        for i, item in enumerate(value):
            if type(item) is not str:
                raise self.error(f"{key}[{i}]", f"expected a string, got {type(item).__name__}")
            if item and not item.isspace():
                out.append(item)
        if out and len(out) == len(value):
            self.used.add(key)
        return out

    def integer(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if type(value) is not int:
            raise self.error(key, f"expected an integer, got {type(value).__name__}")
        self.used.add(key)
        return value

    def child(self, key: str) -> VendorRecord | None:
        """A nested object (``None`` when absent, null or empty)."""
        value = self.data.get(key)
        if value is None or value == {}:
            return None
        child = VendorRecord(self.vendor, value, f"{self.prefix}{key}.")
        self.used.add(key)
        return child

    def leftovers(self) -> dict[str, Any]:
        """Fields not expressed in a standard element, exactly as the vendor sent them."""
        used = self.used
        if len(used) == len(self.data):  # used only ever holds keys of data
            return {}
        return {k: v for k, v in self.data.items() if k not in used}
