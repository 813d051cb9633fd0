"""Text as string search compares it (https://hl7.org/fhir/R4/search.html#string).

R4: a string search "is insensitive to casing and included combining characters, like
accents or other diacritical marks. Punctuation and non-significant whitespace (e.g.
repeated space characters) SHOULD also be ignored." So both the value searched for and
the values held are compared as :func:`search_text`: case- and accent-folded, each
punctuation mark (Unicode category P) a word break like a space, and every run of
whitespace one space, none at either end. ``dr lena`` finds "Dr. Lena Nilsson",
``Anna  Nilsson`` finds "Anna Nilsson", ``anna karin`` finds "Anna-Karin"; ``obrien``
does not find "O'Brien" (``o brien`` does): the mark parts the name in two.

Reading punctuation as a break rather than as nothing keeps every word of a folded value
a run of the text as written, which is what a vendor's substring filter can be asked for
(:func:`words`).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

__all__ = ["normalise", "search_text", "words"]


def normalise(text: str) -> str:
    """Case- and accent-folded text (compatibility forms decomposed, combining marks
    dropped): how names are sorted, and the first step of :func:`search_text`."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class _Breaks(dict[int, int]):
    """``str.translate``'s table of punctuation as a space, each character looked up once
    (the table fills as characters are met)."""

    def __missing__(self, code: int) -> int:
        found = 0x20 if unicodedata.category(chr(code)).startswith("P") else code
        self[code] = found
        return found


_BREAKS = _Breaks()


def _spaced(text: str) -> list[str]:
    return text.translate(_BREAKS).split()


@lru_cache(maxsize=16384)
def search_text(text: str) -> str:
    """``text`` as string search compares it (the module's description). Held values
    repeat from search to search, so each is worked out once."""
    return " ".join(_spaced(normalise(text)))


def words(text: str) -> list[str]:
    """The words of ``text`` as written (composed, case and accents kept), between its
    whitespace and punctuation. Where ``text`` finds a value, each of its words is a run
    of that value as written, but for case, accents and compatibility forms."""
    return _spaced(unicodedata.normalize("NFKC", text))
