"""Phone numbers compared as numbers, not as text: the ``phone`` search parameter, and
``telecom`` where a contact point's system is ``phone`` (:mod:`adapter.fhir.match`).

Vendors hold a number as it was given to them (Leyr in E.164, ``+46701234567``; Nyra often
without its country code, ``9812345678``), and clients search with it as they write it
(``+91 98123 45678``, ``0046 70-123 45 67``). Two values match when they denote the same
number, read with ``phonenumbers`` (the Python port of Google's libphonenumber):

- a value with a country code (``+``, or the international call prefix) is read as that
  country's number; one without takes the source's country (``country``, ISO 3166-1
  alpha-2) when the source names it, trunk prefix and all (``098123 45678`` in India);
- a source that names no country: a value written nationally matches an international one
  whose national significant number it is, the country code's digits before it or not
  (``9812345678`` and ``919812345678`` match ``+919812345678``); two national values
  compare on their digits, a trunk prefix ``0`` aside; ``00`` is read as ``+``;
- what cannot be read as a number compares on its digits (a value without any digits: on
  the whole text).

Spaces, dashes, dots and parentheses never matter. A search value is what a query string
made of it: an unencoded ``+`` arrives as a space, so one that begins with a space and a
digit is read with a ``+`` (:func:`search_number`).
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

from adapter.ops.caches import Table

__all__ = ["COUNTRIES", "compact", "same_number", "search_number", "significant_digits"]

#: The countries (ISO 3166-1 alpha-2, upper case) a source may name as its own.
COUNTRIES: frozenset[str] = frozenset(phonenumbers.SUPPORTED_REGIONS)


@dataclass(frozen=True, slots=True)
class _Read:
    """A value as a number: ``country_code`` and its national significant number in
    ``digits``; or written nationally in a country not known (``country_code`` None,
    ``number`` True: its digits); or no number at all (``number`` False: its digits)."""

    country_code: int | None
    digits: str
    number: bool = True


def search_number(value: str) -> str:
    """A searched value, its ``+`` restored: a leading space before a digit is what a
    query string makes of an unencoded ``+``."""
    if value[:1] == " " and value[1:2].isdigit():
        return "+" + value[1:]
    return value


def compact(value: str) -> str:
    """A phone number without its formatting: ``+`` and digits only (``+91 98123-45678``
    is ``+919812345678``, ``+44 (0)20 7946 0000`` is ``+442079460000``: a trunk prefix in
    parentheses after a country code is not dialled), as a vendor that finds numbers by a
    substring must hold them to find them by their digits. What has letters in it, or no
    digits, is no number and is left as it is."""
    text = value.strip()
    if text.startswith("+"):
        text = text.replace("(0)", "")
    if not text or any(c.isalpha() for c in text):
        return value
    digits = phonenumbers.normalize_digits_only(text)
    if not digits:
        return value
    return ("+" if text.startswith("+") else "") + digits


# Numbers already read: the same few recur in every search and every page of records.
_READ: Table[tuple[str, str | None], _Read] = Table(
    "phones", 1 << 20, weight=lambda key, _: 2 * len(key[0]) + 400
)


def _read(value: str, country: str | None) -> _Read:
    key = (value, country)
    found = _READ.get(key)
    if found is None:
        found = _READ.put(key, _parse(value, country))
    return found


def _parse(value: str, country: str | None) -> _Read:
    text = value.strip()
    digits = phonenumbers.normalize_digits_only(text)
    if not digits:
        return _Read(None, "", number=False)
    if country is None and not text.startswith("+"):
        if not digits.startswith("00"):
            return _Read(None, digits)
        text = "+" + digits[2:]  # the international call prefix most countries dial
    try:
        parsed = phonenumbers.parse(text, country)
    except phonenumbers.NumberParseException:
        return _Read(None, digits, number=False)
    if parsed.country_code is None:
        return _Read(None, digits, number=False)
    return _Read(parsed.country_code, phonenumbers.national_significant_number(parsed))


def _without_trunk(digits: str) -> str:
    return digits[1:] if digits.startswith("0") else digits


def _national_is(national: str, number: _Read) -> bool:
    """Is a national value (country not known) this international number?"""
    nsn = number.digits
    return nsn in (national, _without_trunk(national)) or national == f"{number.country_code}{nsn}"


def same_number(held: str, wanted: str, country: str | None = None) -> bool:
    """Do two values denote the same phone number? ``country``: the source's, for values
    written without a country code (the module's docstring gives the rule)."""
    a, b = _read(held, country), _read(wanted, country)
    if not (a.number and b.number):
        if a.digits or b.digits:
            return phonenumbers.normalize_digits_only(held) == phonenumbers.normalize_digits_only(
                wanted
            )
        return held.strip() == wanted.strip()
    if a.country_code is not None and b.country_code is not None:
        return (a.country_code, a.digits) == (b.country_code, b.digits)
    if a.country_code is None and b.country_code is None:
        return _without_trunk(a.digits) == _without_trunk(b.digits)
    national, number = (a, b) if a.country_code is None else (b, a)
    return _national_is(national.digits, number)


def significant_digits(value: str, country: str | None = None) -> str:
    """The digits that name the number a value denotes, as every unformatted way of
    writing it holds them: its national significant number (a value written nationally
    in a country not known: its digits without a trunk prefix; no number: its digits).
    Its last digits are in the number however it is written, with or without a country
    code or prefix."""
    read = _read(search_number(value), country)
    if read.number and read.country_code is None:
        return _without_trunk(read.digits)
    return read.digits
