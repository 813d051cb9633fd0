"""Wall-clock times in a source's zone, across daylight-saving gaps and folds."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import strategies as gen
from hypothesis import find, given
from hypothesis import strategies as st

from mappings import NonexistentLocalTime, UnrepresentableLocalTime
from mappings.common.time import instant_to_local, local_to_instant


def instants_of(local: datetime, tz: ZoneInfo) -> list[datetime]:
    """Every UTC instant whose wall clock in ``tz`` reads ``local`` (none in a gap, two in
    a fold), found from the zone's offsets alone: an instant ``local - offset`` for each
    offset in force around it, kept when the offset in force then is that one."""
    out = []
    for hours in (-30, 0, 30):  # the offsets in force a day either side, and at it
        near = (local + timedelta(hours=hours)).replace(tzinfo=UTC)
        offset = near.astimezone(tz).utcoffset()
        candidate = (local - offset).replace(tzinfo=UTC)
        if candidate.astimezone(tz).utcoffset() == offset and candidate not in out:
            out.append(candidate)
    return sorted(out)


def exists(local: datetime, tz: ZoneInfo) -> bool:
    return bool(instants_of(local, tz))


def test_the_times_drawn_land_in_gaps_and_folds():
    """The strategy reaches skipped and repeated hours: what the properties need."""
    tz = "Europe/Stockholm"
    gap = find(gen.local_times(tz), lambda t: not instants_of(t, ZoneInfo(tz)))
    fold = find(gen.local_times(tz), lambda t: len(instants_of(t, ZoneInfo(tz))) == 2)
    # spring forward in March; back in autumn (September until 1995, October since)
    assert gap.month == 3 and fold.month in (9, 10)


@given(gen.zones_with_times)
def test_local_time_is_refused_exactly_in_gaps(zoned):
    zone, local = zoned
    tz = ZoneInfo(zone)
    try:
        moment = local_to_instant(local.date(), local.time(), zone)
    except NonexistentLocalTime:
        assert not exists(local, tz)
        return
    assert exists(local, tz)
    assert moment.astimezone(tz).replace(tzinfo=None) == local
    # In a fold the earlier of the two instants is chosen.
    assert moment.astimezone(UTC) == instants_of(local, tz)[0]


@given(
    st.datetimes(datetime(1980, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)), gen.zone_names
)
def test_instant_to_local_round_trips_unless_second_occurrence(moment, zone):
    try:
        local = instant_to_local(moment, zone)
    except UnrepresentableLocalTime:
        earlier = local_to_instant(*_split(moment.astimezone(ZoneInfo(zone))), zone)
        assert earlier < moment  # the wall time names an earlier instant too
        return
    assert local == moment
    assert local_to_instant(local.date(), local.time(), zone) == moment


def _split(local):
    return local.date(), local.time()


def test_stockholm_transitions():
    zone = "Europe/Stockholm"
    gap = datetime(2024, 3, 31, 2, 30)
    with pytest.raises(NonexistentLocalTime):
        local_to_instant(gap.date(), gap.time(), zone)
    fold = datetime(2024, 10, 27, 2, 30)
    first = local_to_instant(fold.date(), fold.time(), zone)
    assert first.isoformat() == "2024-10-27T02:30:00+02:00"
    second = first.astimezone(UTC) + timedelta(hours=1)
    with pytest.raises(UnrepresentableLocalTime):
        instant_to_local(second, zone)
