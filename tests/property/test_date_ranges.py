"""FHIR date search semantics: ranges by precision, prefixes by the R4 table."""

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import strategies as gen
from hypothesis import given
from hypothesis import strategies as st

from adapter.fhir.dates import compare, local_window, parse_range

moments = st.datetimes(datetime(1990, 1, 1), datetime(2060, 1, 1), timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=0)
)


def spellings(moment: datetime) -> list[str]:
    """The same moment at every FHIR precision, coarsest first (in UTC)."""
    return [
        f"{moment:%Y}",
        f"{moment:%Y-%m}",
        f"{moment:%Y-%m-%d}",
        f"{moment:%Y-%m-%dT%H:%M}Z",
        f"{moment:%Y-%m-%dT%H:%M:%S}Z",
    ]


@given(moments)
def test_coarser_ranges_contain_finer_ones(moment):
    ranges = [parse_range(s, UTC) for s in spellings(moment)]
    for outer, inner in itertools.pairwise(ranges):
        assert outer[0] <= inner[0] < inner[1] <= outer[1]
    assert ranges[-1] == (moment, moment + timedelta(seconds=1))


@given(moments, moments, st.integers(0, 4))
def test_prefixes_on_an_instant(target_moment, search_moment, precision):
    target = parse_range(f"{target_moment:%Y-%m-%dT%H:%M:%S}Z")
    search = parse_range(spellings(search_moment)[precision], UTC)
    low, high = search
    assert compare("eq", search, target) == (low <= target_moment < high)
    assert compare("ne", search, target) != compare("eq", search, target)
    # on second-aligned instants gt/le and lt/ge are complements
    assert compare("gt", search, target) != compare("le", search, target)
    assert compare("lt", search, target) != compare("ge", search, target)
    assert compare("gt", search, target) == (target_moment >= high)
    assert compare("lt", search, target) == (target_moment < low)
    if compare("sa", search, target):
        assert compare("gt", search, target)
    if compare("eb", search, target):
        assert compare("lt", search, target)


@given(moments, gen.zone_names)
def test_a_local_day_is_the_zones_day(moment, zone):
    tz = ZoneInfo(zone)
    local = moment.astimezone(tz)
    low, high = parse_range(f"{local:%Y-%m-%d}", tz)
    assert low <= moment < high
    assert low.astimezone(tz).hour == 0 or low.astimezone(tz).date() == local.date()


@given(
    moments, moments, gen.zone_names, st.sampled_from(["eq", "ge", "gt", "le", "lt", "sa", "eb"])
)
def test_local_window_holds_every_match(target_moment, search_moment, zone, prefix):
    tz = ZoneInfo(zone)
    value = f"{search_moment.astimezone(tz):%Y-%m-%d}"
    target = (target_moment, target_moment + timedelta(seconds=1))
    first, last = local_window([[(prefix, value)]], tz)
    if compare(prefix, parse_range(value, tz), target):
        day = target_moment.astimezone(tz).date()
        assert first is None or first <= day
        assert last is None or day <= last


prefixes = st.sampled_from(["eq", "ne", "ge", "gt", "le", "lt", "sa", "eb"])


@given(moments, st.lists(st.tuples(prefixes, moments), min_size=1, max_size=3), gen.zone_names)
def test_local_window_holds_every_match_of_ored_prefixes(target_moment, ored, zone):
    """ORed values with prefixes of their own (``date=lt2026-01-01,ge2027-11-01``): the
    window holds every instant one of them finds."""
    tz = ZoneInfo(zone)
    values = [(prefix, f"{moment.astimezone(tz):%Y-%m-%d}") for prefix, moment in ored]
    target = (target_moment, target_moment + timedelta(microseconds=1))  # an instant
    first, last = local_window([values], tz)
    if any(compare(prefix, parse_range(value, tz), target) for prefix, value in values):
        day = target_moment.astimezone(tz).date()
        assert first is None or first <= day
        assert last is None or day <= last
