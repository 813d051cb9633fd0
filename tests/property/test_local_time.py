"""Wall-clock times in a source's zone, across daylight-saving gaps and folds."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import strategies as gen
from hypothesis import given
from hypothesis import strategies as st

from mappings import NonexistentLocalTime, UnrepresentableLocalTime
from mappings.common.time import instant_to_local, local_to_instant

naive = st.datetimes(datetime(1980, 1, 1), datetime(2100, 1, 1))


def exists(local: datetime, tz: ZoneInfo) -> bool:
    aware = local.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == local


@given(naive, gen.zone_names)
def test_local_time_is_refused_exactly_in_gaps(local, zone):
    tz = ZoneInfo(zone)
    try:
        moment = local_to_instant(local.date(), local.time(), zone)
    except NonexistentLocalTime:
        assert not exists(local, tz)
        return
    assert exists(local, tz)
    assert moment.astimezone(tz).replace(tzinfo=None) == local
    # In a fold the earlier of the two instants is chosen.
    earlier = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    assert moment.astimezone(UTC) == earlier


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
