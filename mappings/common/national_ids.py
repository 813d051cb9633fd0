"""Nordic and UK national identifiers: which Identifier.system a value may claim.

A value claims a national system only when its form and check digits are right; one that
fails (a personnummer with a bad Luhn digit, say) is still kept by the caller, under a
source-local system, so nothing is lost but nothing false is asserted either.

Systems: ``../shared/vendors/leyr.md`` ("Identifier systems for Nordic ids"), from
Sweden's, Norway's and NHS England's published OIDs and URIs.
"""

from __future__ import annotations

import re

__all__ = [
    "HSA_ID",
    "NATIONAL_SYSTEMS",
    "NHS_NUMBER",
    "NO_D_NUMBER",
    "NO_FODSELSNUMMER",
    "SE_PERSONNUMMER",
    "SE_SAMORDNINGSNUMMER",
    "luhn_valid",
    "national_system",
]

SE_PERSONNUMMER = "urn:oid:1.2.752.129.2.1.3.1"
SE_SAMORDNINGSNUMMER = "urn:oid:1.2.752.129.2.1.3.3"
NO_FODSELSNUMMER = "urn:oid:2.16.578.1.12.4.1.4.1"
NO_D_NUMBER = "urn:oid:2.16.578.1.12.4.1.4.2"
DK_CPR = "urn:oid:1.2.208.176.1.2"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
HSA_ID = "urn:oid:1.2.752.129.2.1.4.1"

NATIONAL_SYSTEMS = frozenset(
    {SE_PERSONNUMMER, SE_SAMORDNINGSNUMMER, NO_FODSELSNUMMER, NO_D_NUMBER, DK_CPR, NHS_NUMBER}
)

# YYYYMMDD[-+]NNNN or YYMMDD[-+]NNNN; the separator is optional in the 12-digit form.
_SE = re.compile(r"(\d{2})?(\d{2})(\d{2})(\d{2})[-+]?(\d{4})")
_NO = re.compile(r"\d{11}")
_NHS = re.compile(r"\d{3} ?\d{3} ?\d{4}")
_HSA = re.compile(r"SE\d{10}-[A-Za-z0-9]+")


# Luhn doubles every second digit from the right, less 9 when over 9: as a digit mapping.
_DOUBLED = str.maketrans("0123456789", "0246813579")


def luhn_valid(digits: str) -> bool:
    """Luhn check over a string of digits (the last one is the check digit)."""
    # Summing the ASCII bytes and taking off 48 ("0") per digit is the digit sum.
    raw = (digits[-1::-2] + digits[-2::-2].translate(_DOUBLED)).encode("ascii")
    return (sum(raw) - 48 * len(raw)) % 10 == 0


_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _real_date(year: int, month: int, day: int) -> bool:
    if not (1 <= month <= 12 and 1 <= day <= _MONTH_DAYS[month]):
        return False
    return month != 2 or day < 29 or (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0))


def _swedish(value: str, *, require_century: bool) -> str | None:
    if len(value) == 12 and value.isdigit():  # the common YYYYMMDDNNNN form
        century, yy, mm, dd, tail = value[:2], value[2:4], value[4:6], value[6:8], value[8:]
    else:
        m = _SE.fullmatch(value)
        if not m or (require_century and m.group(1) is None):
            return None
        century, yy, mm, dd, tail = m.groups()
    if not luhn_valid(yy + mm + dd + tail):
        return None
    # Without a century, any century gives the same day-of-month rules but Feb 29.
    year = int(century + yy) if century else 2000 + int(yy)
    day = int(dd)
    if _real_date(year, int(mm), day):
        return SE_PERSONNUMMER
    if day > 60 and _real_date(year, int(mm), day - 60):
        return SE_SAMORDNINGSNUMMER
    return None


def _mod11(digits: str, weights: tuple[int, ...]) -> int | None:
    rest = 11 - sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11
    if rest == 11:
        return 0
    return None if rest == 10 else rest


def _norwegian(value: str) -> str | None:
    if not _NO.fullmatch(value):
        return None
    k1 = _mod11(value[:9], (3, 7, 6, 1, 8, 9, 4, 5, 2))
    k2 = _mod11(value[:10], (5, 4, 3, 2, 7, 6, 5, 4, 3, 2))
    if k1 is None or k2 is None or (k1, k2) != (int(value[9]), int(value[10])):
        return None
    d_number = value[0] in "4567"
    day = int(value[:2]) - (40 if d_number else 0)
    # The century is in the individual number; any leap year checks the day and month.
    if not _real_date(2000, int(value[2:4]), day):
        return None
    return NO_D_NUMBER if d_number else NO_FODSELSNUMMER


def _nhs(value: str) -> str | None:
    if not _NHS.fullmatch(value):
        return None
    digits = value.replace(" ", "")
    check = _mod11(digits[:9], (10, 9, 8, 7, 6, 5, 4, 3, 2))
    return NHS_NUMBER if check is not None and check == int(digits[9]) else None


def national_system(value: str, id_type: str | None = None) -> str | None:
    """The national Identifier.system ``value`` validly belongs to, or ``None``.

    ``id_type`` is Leyr's typed-id prefix when the value came with one. Without it, only
    forms that cannot be mistaken for another country's are recognised: 12-digit Swedish
    numbers and 11-digit Norwegian ones. A bare 10-digit number could be a short Swedish
    personnummer, a Danish CPR or an NHS number, so it claims nothing.
    """
    if id_type == "se_personal_number":
        return _swedish(value, require_century=False)
    if id_type == "no_personal_number":
        return _norwegian(value)
    if id_type == "nhs_number":
        return _nhs(value)
    if id_type == "hsa_id":
        return HSA_ID if _HSA.fullmatch(value) else None
    if id_type is not None:
        return None
    return _swedish(value, require_century=True) or _norwegian(value)
