"""Code tables as data: vendor codes <-> FHIR codes, each servable as an R4 ConceptMap.

A table lists rows ``(vendor code, FHIR code, equivalence)``. Several vendor codes may map
to one FHIR code; going back, the first row for a FHIR code wins (the table lists the
preferred vendor code first). Equivalences are R4's ConceptMap codes
(https://hl7.org/fhir/R4/valueset-concept-map-equivalence.html), read as "the FHIR code is
<equivalence> to the vendor code". A row that is ``narrower`` or ``inexact`` says how in
``comments`` (vendor code -> text): R4 requires it of the ConceptMap (invariant cmd-1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mappings.common.fhir import NAMESPACE

__all__ = ["CodeTable"]

# Equivalences whose ConceptMap target must say how in a comment (R4's cmd-1).
_SAY_HOW = frozenset({"narrower", "inexact"})


@dataclass(frozen=True)
class CodeTable:
    name: str
    title: str
    evidence: str
    vendor_system: str
    fhir_system: str
    rows: tuple[tuple[str, str, str], ...]
    comments: Mapping[str, str] = field(default_factory=dict)
    _forward: dict[str, str] = field(init=False, repr=False, compare=False)
    _backward: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        forward: dict[str, str] = {}
        backward: dict[str, str] = {}
        for vendor, fhir, equivalence in self.rows:
            if vendor in forward:
                raise ValueError(f"{self.name}: vendor code {vendor!r} listed twice")
            if equivalence in _SAY_HOW and not self.comments.get(vendor):
                raise ValueError(f"{self.name}: {vendor!r} is {equivalence}: say how in comments")
            forward[vendor] = fhir
            backward.setdefault(fhir, vendor)
        object.__setattr__(self, "_forward", forward)
        object.__setattr__(self, "_backward", backward)

    @property
    def vendor_codes(self) -> tuple[str, ...]:
        return tuple(self._forward)

    def to_fhir(self, code: str) -> str | None:
        return self._forward.get(code)

    def from_fhir(self, code: str) -> str | None:
        return self._backward.get(code)

    def concept_map(self) -> dict[str, Any]:
        """This table as an R4 ConceptMap resource (https://hl7.org/fhir/R4/conceptmap.html)."""
        return {
            "resourceType": "ConceptMap",
            "id": self.name.lower(),
            "url": f"{NAMESPACE}/ConceptMap/{self.name}",
            "name": self.name,
            "title": self.title,
            "status": "active",
            "description": f"Source: {self.evidence}",
            "sourceUri": self.vendor_system,
            "targetUri": self.fhir_system,
            "group": [
                {
                    "source": self.vendor_system,
                    "target": self.fhir_system,
                    "element": [
                        {"code": vendor, "target": [self._target(vendor, fhir, equivalence)]}
                        for vendor, fhir, equivalence in self.rows
                    ],
                }
            ],
        }

    def _target(self, vendor: str, fhir: str, equivalence: str) -> dict[str, Any]:
        target = {"code": fhir, "equivalence": equivalence}
        comment = self.comments.get(vendor)
        if comment:
            target["comment"] = comment
        return target
