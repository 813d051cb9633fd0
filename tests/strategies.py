"""Hypothesis strategies for vendor records, FHIR ids and times: one module for all tests.

National numbers are computed here independently of ``mappings`` (Luhn, mod 11), so the
tests do not check the code against itself.
"""

from __future__ import annotations

import functools
import string
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import strategies as st

LEYR_GENDERS = ("male", "female", "other", "unknown")
LEYR_STATUSES = ("booked", "awaiting_confirmation", "completed", "cancelled", "no_show")
NYRA_GENDERS = ("MALE", "FEMALE", "OTHER")
NYRA_STATUSES = ("BOOKED", "CONFIRMED", "COMPLETED", "NO_SHOW", "CANCELLED")
NYRA_TYPES = ("CONSULTATION", "FOLLOW_UP", "CHECKUP", "EMERGENCY")

# Zones whose offsets since 1980 are whole minutes (every one in use today).
ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))
MODERN = (datetime(1980, 1, 1), datetime(2100, 1, 1))

source_names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,15}", fullmatch=True)
zone_names = st.sampled_from(ZONES)

# Free text as vendors send it: any Unicode, not blank (blank values are tested apart).
words = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=24).filter(
    lambda s: not s.isspace()
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
# Vendor ids: UUIDs, plain tokens, and a few with characters the id codec must escape.
vendor_ids = st.one_of(
    st.uuids().map(str),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,19}", fullmatch=True),
    st.text(
        alphabet=string.ascii_letters + string.digits + "_:.-/ éø", min_size=1, max_size=8
    ).filter(lambda s: not s.isspace()),
)
care_units = st.one_of(
    st.sampled_from(["L0_1", "L0_2", "10"]), st.from_regex(r"[A-Za-z0-9_]{1,6}", fullmatch=True)
)


def unknown_fields(known: frozenset[str]) -> st.SearchStrategy[dict]:
    """Fields a vendor may add tomorrow."""
    keys = st.text(string.ascii_lowercase + "_", min_size=1, max_size=10).filter(
        lambda k: k not in known
    )
    return st.dictionaries(keys, json_values, max_size=3)


def blank_or(value: st.SearchStrategy) -> st.SearchStrategy:
    """A value, or one of the empty forms a vendor may send instead of leaving a field out."""
    return st.one_of(value, value, value, st.sampled_from([None, "", " "]))


def luhn_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


@st.composite
def personnummer(draw, samordning: bool = False) -> str:
    born = draw(st.dates(date(1900, 1, 1), date(2025, 12, 31)))
    day = born.day + (60 if samordning else 0)
    body = f"{born:%y%m}{day:02d}{draw(st.integers(0, 999)):03d}"
    return f"{born.year // 100}{body}{luhn_digit(body)}"


@st.composite
def fodselsnummer(draw, d_number: bool = False) -> str:
    born = draw(st.dates(date(1900, 1, 1), date(2039, 12, 31)))
    day = born.day + (40 if d_number else 0)
    base = f"{day:02d}{born:%m%y}{draw(st.integers(0, 999)):03d}"
    k1 = 11 - sum(int(c) * w for c, w in zip(base, (3, 7, 6, 1, 8, 9, 4, 5, 2), strict=True)) % 11
    k1 = 0 if k1 == 11 else k1
    if k1 == 10:
        return draw(st.nothing())
    k2 = (
        11
        - sum(
            int(c) * w for c, w in zip(base + str(k1), (5, 4, 3, 2, 7, 6, 5, 4, 3, 2), strict=True)
        )
        % 11
    )
    k2 = 0 if k2 == 11 else k2
    if 10 in (k1, k2):
        return draw(st.nothing())
    return f"{base}{k1}{k2}"


external_ids = st.one_of(
    personnummer(),
    personnummer(samordning=True),
    personnummer().map(lambda p: p[:-1] + str((int(p[-1]) + 1) % 10)),  # bad check digit
    personnummer().map(lambda p: f"se_personal_number:{p}"),
    fodselsnummer(),
    fodselsnummer(d_number=True),
    fodselsnummer().map(lambda p: f"no_personal_number:{p}"),
    st.from_regex(r"[0-9]{10}", fullmatch=True).map(lambda n: f"nhs_number:{n}"),
    words,
)

LEYR_PATIENT_FIELDS = frozenset(
    {
        "id",
        "emr_id",
        "care_unit_id",
        "first_name",
        "last_name",
        "external_id",
        "phones",
        "emails",
        "birth_date",
        "gender",
        "address",
    }
)
LEYR_APPOINTMENT_FIELDS = frozenset(
    {
        "id",
        "status",
        "care_unit_id",
        "start",
        "end",
        "comment",
        "patient_id",
        "resource_id",
        "healthcare_service_id",
    }
)
NYRA_PATIENT_FIELDS = frozenset(
    {
        "id",
        "name",
        "phone",
        "age",
        "gender",
        "date_of_birth",
        "email",
        "address",
        "status",
        "branch_id",
        "doctor_id",
        "created_at",
        "updated_at",
    }
)
NYRA_APPOINTMENT_FIELDS = frozenset(
    {
        "id",
        "patient_id",
        "patient_name",
        "doctor_id",
        "doctor_name",
        "appointment_time",
        "status",
        "branch_id",
        "type",
        "notes",
        "created_at",
        "updated_at",
    }
)

birth_dates = st.dates(date(1900, 1, 1), date(2026, 12, 31)).map(date.isoformat)


@st.composite
def _with_unknown(draw, record: dict, known: frozenset[str]) -> dict:
    return {**draw(unknown_fields(known)), **record}


@st.composite
def leyr_patients(draw) -> dict:
    address = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "line": st.lists(words, min_size=1, max_size=3),
                "postal_code": words,
                "city": words,
                "country": st.sampled_from(["SE", "NO", "DK", "GB"]),
                "floor": json_values,  # a sub-field nobody documented
            },
        )
    )
    record = draw(
        st.fixed_dictionaries(
            {"id": vendor_ids, "care_unit_id": care_units},
            optional={
                "emr_id": blank_or(st.from_regex(r"[0-9]{1,8}", fullmatch=True)),
                "first_name": blank_or(words),
                "last_name": blank_or(words),
                "external_id": blank_or(external_ids),
                "phones": st.lists(st.from_regex(r"\+?[0-9 ]{6,14}", fullmatch=True), max_size=3),
                "emails": st.lists(st.emails(), max_size=2),
                "birth_date": blank_or(birth_dates),
                "gender": st.sampled_from(LEYR_GENDERS),
                "address": st.just(address),
            },
        )
    )
    return draw(_with_unknown(record, LEYR_PATIENT_FIELDS))


@functools.cache
def transitions(zone_name: str, year: int) -> tuple[datetime, ...]:
    """The instants (UTC, naive) in ``year`` at which the zone's offset changes: found by
    looking at each day's offset, then halving the day that changed down to the minute."""
    tz = ZoneInfo(zone_name)

    def offset(moment: datetime) -> timedelta | None:
        return moment.replace(tzinfo=UTC).astimezone(tz).utcoffset()

    found = []
    day = datetime(year, 1, 1)
    while day.year == year:
        after = day + timedelta(days=1)
        if offset(day) != offset(after):
            low, high = day, after
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if offset(middle) == offset(low) else (low, middle)
            found.append(high.replace(second=0, microsecond=0))
        day = after
    return tuple(found)


@st.composite
def near_transitions(draw, zone_name: str) -> datetime:
    """A naive wall-clock time in the zone within two hours of one of its offset changes
    (so in a skipped or repeated hour about as often as not), or any time when the zone
    never changes in the year drawn."""
    year = draw(st.integers(1990, 2060))
    changes = transitions(zone_name, year)
    if not changes:
        return draw(st.datetimes(datetime(year, 1, 1), datetime(year, 12, 31)))
    change = draw(st.sampled_from(changes)).replace(tzinfo=UTC).astimezone(ZoneInfo(zone_name))
    wall = change.replace(tzinfo=None)
    return wall + timedelta(minutes=draw(st.integers(-120, 120)))


def local_times(zone_name: str) -> st.SearchStrategy[datetime]:
    """Naive wall-clock times in the zone: half of them near its daylight-saving changes."""
    return st.one_of(st.datetimes(*MODERN), near_transitions(zone_name))


# Zones drawn with their times, weighted to those that change their clocks.
zones_with_times = zone_names.flatmap(lambda z: st.tuples(st.just(z), local_times(z)))


def aware_times(zone_name: str) -> st.SearchStrategy[datetime]:
    """Real (not imaginary) wall-clock times in a zone, folds included: half of them
    near its daylight-saving changes, either side of a repeated hour."""
    tz = ZoneInfo(zone_name)

    def real(t: datetime) -> bool:
        return t.astimezone(UTC).astimezone(tz).replace(fold=t.fold) == t

    near = st.tuples(near_transitions(zone_name), st.sampled_from((0, 1))).map(
        lambda p: p[0].replace(tzinfo=tz, fold=p[1])
    )
    anywhere = st.datetimes(*MODERN, timezones=st.just(tz), allow_imaginary=False)
    return st.one_of(anywhere, near.filter(real)).filter(lambda t: t.utcoffset().seconds % 60 == 0)


def spell(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


@st.composite
def leyr_appointments(draw) -> dict:
    start = draw(zone_names.flatmap(aware_times))
    end = start.astimezone(UTC) + timedelta(minutes=draw(st.integers(5, 240)))
    times = {"start": spell(start), "end": spell(end.astimezone(start.tzinfo))}
    record = draw(
        st.fixed_dictionaries(
            {
                "id": vendor_ids,
                "care_unit_id": care_units,
                "status": st.sampled_from(LEYR_STATUSES),
            },
            optional={
                "patient_id": vendor_ids,
                "resource_id": st.one_of(
                    vendor_ids,
                    st.from_regex(r"SE[0-9]{10}-E[0-9]{12}", fullmatch=True).map(
                        lambda h: f"hsa_id:{h}"
                    ),
                ),
                "healthcare_service_id": vendor_ids,
                "comment": blank_or(words),
            },
        )
    )
    if draw(st.booleans()):
        record.update(times)
    return draw(_with_unknown(record, LEYR_APPOINTMENT_FIELDS))


def nyra_instants() -> st.SearchStrategy[str]:
    """Nyra's created_at/updated_at spelling: UTC with milliseconds and Z."""
    return st.datetimes(*MODERN).map(
        lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    )


indian_phones = st.from_regex(r"(\+91)?[6-9][0-9]{9}", fullmatch=True)


@st.composite
def nyra_patients(draw) -> dict:
    record = draw(
        st.fixed_dictionaries(
            {"id": vendor_ids},
            optional={
                "name": blank_or(words),
                "phone": blank_or(indian_phones),
                "age": st.integers(0, 120),
                "gender": st.sampled_from(NYRA_GENDERS),
                "date_of_birth": birth_dates,
                "email": blank_or(st.emails()),
                "address": blank_or(words),
                "status": st.sampled_from(("ACTIVE", "INACTIVE")),
                "branch_id": vendor_ids,
                "doctor_id": vendor_ids,
                "created_at": nyra_instants(),
                "updated_at": nyra_instants(),
            },
        )
    )
    return draw(_with_unknown(record, NYRA_PATIENT_FIELDS))


@st.composite
def nyra_appointments(draw, zone_name: str) -> dict:
    record = draw(
        st.fixed_dictionaries(
            {
                "id": vendor_ids,
                "patient_id": vendor_ids,
                "status": st.sampled_from(NYRA_STATUSES),
            },
            optional={
                "patient_name": words,
                "doctor_id": vendor_ids,
                "doctor_name": words,
                "appointment_time": aware_times(zone_name).map(spell),
                "branch_id": vendor_ids,
                "type": st.one_of(
                    st.sampled_from(NYRA_TYPES), st.from_regex(r"[A-Z_]{3,12}", fullmatch=True)
                ),
                "notes": blank_or(words),
                "created_at": nyra_instants(),
                "updated_at": nyra_instants(),
            },
        )
    )
    if "doctor_name" in record and "doctor_id" not in record:
        del record["doctor_name"]  # Nyra names a doctor only beside its id
    return draw(_with_unknown(record, NYRA_APPOINTMENT_FIELDS))


fhir_ids = st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True)


# -- phone numbers: as sources hold them, and as people write them ------------------------


@st.composite
def held_phones(draw) -> tuple[str, str, str, str]:
    """A number as a source holds it: (the source's country, its calling code, the national
    significant number, the value held). Nyra: an Indian mobile, with or without ``+91``;
    Leyr: a Swedish mobile or Stockholm number in E.164."""
    if draw(st.booleans()):
        nsn = draw(st.from_regex(r"[6-9][0-9]{9}", fullmatch=True))
        return "IN", "91", nsn, draw(st.sampled_from((nsn, f"+91{nsn}")))
    nsn = draw(st.from_regex(r"(7[02369][0-9]{7}|8[0-9]{7})", fullmatch=True))
    return "SE", "46", nsn, f"+46{nsn}"


@st.composite
def spelled_phones(draw, calling_code: str, nsn: str) -> str:
    """``nsn`` as someone may write it: with its calling code (after ``+``, after ``00``,
    or after the space an unencoded ``+`` becomes in a query string) or without (with or
    without the trunk prefix 0); its digits grouped by spaces, dashes or dots, the first
    group perhaps in parentheses."""
    prefix = draw(
        st.sampled_from((f"+{calling_code}", f"00{calling_code}", f" {calling_code}", "", "0"))
    )
    cuts = sorted(draw(st.sets(st.integers(1, len(nsn) - 1), max_size=4)))
    groups = [nsn[i:j] for i, j in zip([0, *cuts], [*cuts, len(nsn)], strict=True)]
    if draw(st.booleans()):
        groups[0] = f"({groups[0]})"
    separators = st.sampled_from((" ", "-", ".", ""))
    text = prefix + (draw(separators) if prefix else "")  # a leading space would be a +
    for i, group in enumerate(groups):
        text += (draw(separators) if i else "") + group
    return text


@st.composite
def other_numbers(draw, nsn: str) -> str:
    """A national significant number like ``nsn`` (same length and leading digits) that
    is another number."""
    at = draw(st.integers(2, len(nsn) - 1))
    digit = draw(st.sampled_from([d for d in string.digits if d != nsn[at]]))
    return nsn[:at] + digit + nsn[at + 1 :]
