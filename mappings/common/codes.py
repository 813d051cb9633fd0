"""Code tables as data: vendor codes <-> FHIR codes, each servable as an R4 ConceptMap.

A table lists rows ``(vendor code, FHIR code, equivalence)``. Several vendor codes may map
to one FHIR code; going back, the first row for a FHIR code wins (the table lists the
preferred vendor code first). Equivalences are R4's ConceptMap codes
(https://hl7.org/fhir/R4/valueset-concept-map-equivalence.html), read as "the FHIR code is
<equivalence> to the vendor code".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mappings.common.fhir import NAMESPACE

__all__ = ["CodeTable"]


@dataclass(frozen=True)
class CodeTable:
    name: str
    title: str
    evidence: str
    vendor_system: str
    fhir_system: str
    rows: tuple[tuple[str, str, str], ...]
    _forward: dict[str, str] = field(init=False, repr=False, compare=False)
    _backward: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        forward: dict[str, str] = {}
        backward: dict[str, str] = {}
        for vendor, fhir, _ in self.rows:
            if vendor in forward:
                raise ValueError(f"{self.name}: vendor code {vendor!r} listed twice")
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
                        {"code": vendor, "target": [{"code": fhir, "equivalence": equivalence}]}
                        for vendor, fhir, equivalence in self.rows
                    ],
                }
            ],
        }
