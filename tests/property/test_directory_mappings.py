"""Properties of the directory mappings (Practitioner, Device, Schedule, Location,
Organization, HealthcareService) over generated vendor records, and of the names a Leyr
directory lends to appointments and patients."""

from __future__ import annotations

import copy
from typing import Any

import strategies as gen
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given, reject
from hypothesis import strategies as st

from mappings import (
    GlobalId,
    IdTooLong,
    InvalidVendorRecord,
    LeyrContext,
    LeyrDirectory,
    NyraContext,
    decode_id,
    leyr,
    nyra,
)

# Elements that hold a person's, a device's or a place's name (HumanName parts, Device
# names, Location/Organization/HealthcareService names, Reference and Coding displays).
NAME_KEYS = frozenset({"text", "family", "given", "prefix", "suffix", "name", "display"})

# Values a vendor may send for a name: real ones, blank ones and wrongly typed ones.
names = st.one_of(gen.words, gen.words, st.sampled_from([None, "", "  "]), gen.json_values)
hsa_ids = st.from_regex(r"SE[0-9]{10}-[A-Z][0-9]{12}", fullmatch=True)
resource_ids = st.one_of(gen.vendor_ids, hsa_ids.map(lambda h: f"hsa_id:{h}"))
LEYR_RESOURCE_FIELDS = frozenset({"id", "name", "type", "hsa_id", "care_unit_id"})
LEYR_SERVICE_FIELDS = frozenset({"id", "name", "duration_minutes", "care_unit_id"})
NYRA_AVAILABILITY_FIELDS = frozenset(
    {"doctor_id", "slot_duration_minutes", "consultation_fee", "weekly"}
)


def with_unknown(known: frozenset[str]):
    return lambda record: gen.unknown_fields(known).map(lambda extra: {**extra, **record})


leyr_resources = st.fixed_dictionaries(
    {"id": resource_ids, "care_unit_id": gen.care_units},
    optional={
        "name": names,
        "type": st.one_of(st.sampled_from(["practitioner", "equipment"]), gen.json_values),
        "hsa_id": st.one_of(hsa_ids, gen.words, gen.json_values),
    },
).flatmap(with_unknown(LEYR_RESOURCE_FIELDS))
leyr_care_units = st.fixed_dictionaries({"id": gen.care_units}, optional={"name": names}).flatmap(
    with_unknown(frozenset({"id", "name"}))
)
leyr_services = st.fixed_dictionaries(
    {"id": gen.vendor_ids, "care_unit_id": gen.care_units},
    optional={
        "name": names,
        "duration_minutes": st.one_of(st.integers(-5, 600), gen.json_values),
    },
).flatmap(with_unknown(LEYR_SERVICE_FIELDS))
nyra_doctors = st.fixed_dictionaries({"id": gen.vendor_ids}, optional={"name": names}).flatmap(
    with_unknown(frozenset({"id", "name"}))
)
weekly = st.dictionaries(
    st.sampled_from(["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY"]),
    st.lists(
        st.fixed_dictionaries(
            {"start": st.from_regex(r"[01][0-9]:[0-5]0", fullmatch=True)},
            optional={"end": st.from_regex(r"[12][0-9]:[0-5]0", fullmatch=True)},
        ),
        max_size=2,
    ),
    max_size=3,
)
nyra_availabilities = st.fixed_dictionaries(
    {"doctor_id": gen.vendor_ids},
    optional={
        "slot_duration_minutes": st.one_of(st.integers(-5, 120), gen.json_values),
        "consultation_fee": st.one_of(st.integers(0, 5000), gen.json_values),
        "weekly": weekly,
    },
).flatmap(with_unknown(NYRA_AVAILABILITY_FIELDS))
branch_ids = gen.vendor_ids.filter(lambda b: b != nyra.HOSPITAL)


def mapped(to_fhir, record, ctx, *args):
    """``to_fhir(record, ctx)``, skipping the generated ids that cannot fit a FHIR id."""
    snapshot = copy.deepcopy(record)
    try:
        resource = to_fhir(record, ctx, *args)
    except InvalidVendorRecord as exc:
        if isinstance(exc.__cause__, IdTooLong):
            reject()
        raise
    assert record == snapshot, "the mapping must not change its input"
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def name_strings(value: Any, key: str | None = None) -> list[str]:
    """Every string under a name-holding key, at any depth (extensions left out: they
    keep the vendor's own fields verbatim)."""
    if isinstance(value, str):
        return [value] if key in NAME_KEYS else []
    if isinstance(value, list):
        return [s for item in value for s in name_strings(item, key)]
    if isinstance(value, dict):
        return [
            s
            for k, item in value.items()
            if k != "extension"
            for s in name_strings(item, k if k in NAME_KEYS else key)
        ]
    return []


def real_name(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def assert_only_names_of(resource: dict, *given: str | None) -> None:
    """The resource names nothing but the given names (or words of them)."""
    allowed = {n for n in given if n is not None}
    allowed |= {w for n in allowed for w in n.split()}
    for text in name_strings(resource):
        assert text in allowed, "a name the record did not hold"


def references(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return own + [r for item in value.values() for r in references(item)]
    if isinstance(value, list):
        return [r for item in value for r in references(item)]
    return []


# -- Leyr -------------------------------------------------------------------------------


@given(leyr_resources, gen.source_names)
def test_leyr_resources_validate_name_only_themselves_and_decode(record, source):
    ctx = LeyrContext(source, "Europe/Stockholm")
    resource = mapped(leyr.to_fhir_resource, record, ctx)
    schedule = mapped(leyr.to_fhir_schedule, record, ctx)
    kind = "Device" if record.get("type") == "equipment" else "Practitioner"
    assert resource["resourceType"] == kind
    name = real_name(record.get("name"))
    assert_only_names_of(resource, name)
    assert_only_names_of(schedule, name)
    if name is None:
        assert "name" not in resource and "deviceName" not in resource
    elif kind == "Practitioner":
        assert resource["name"][0]["text"] == name
    else:
        assert resource["deviceName"] == [{"name": name, "type": "user-friendly-name"}]
    expected = GlobalId(source, record["id"], record["care_unit_id"])
    assert decode_id(resource["id"]) == expected
    assert schedule["id"] == resource["id"]
    assert schedule["actor"][0]["reference"] == f"{kind}/{resource['id']}"
    assert resource["identifier"][0]["value"] == record["id"]
    for ref in references(resource):
        gid = decode_id(ref.partition("/")[2])
        assert (gid.source, gid.vendor_id, gid.scope) == (source, record["care_unit_id"], None)


@given(leyr_care_units, gen.source_names)
def test_leyr_care_units_validate_and_decode(record, source):
    ctx = LeyrContext(source, "Europe/Stockholm")
    for to_fhir in (leyr.to_fhir_location, leyr.to_fhir_organization):
        resource = mapped(to_fhir, record, ctx)
        assert_only_names_of(resource, real_name(record.get("name")))
        assert decode_id(resource["id"]) == GlobalId(source, record["id"])
        # The very id Leyr patients and appointments reference for the care unit.
        assert resource["id"] == ctx.id(record["id"])
    location = leyr.to_fhir_location(record, ctx)
    assert location["managingOrganization"]["reference"] == f"Organization/{location['id']}"


@given(leyr_services, gen.source_names, st.data())
def test_leyr_services_validate_name_only_themselves_and_decode(record, source, data):
    ctx = LeyrContext(source, "Europe/Stockholm")
    unit_name = data.draw(st.none() | gen.words)
    if unit_name is not None:
        ctx = LeyrContext(source, ctx.timezone, LeyrDirectory({record["care_unit_id"]: unit_name}))
    service = mapped(leyr.to_fhir_healthcare_service, record, ctx)
    assert_only_names_of(service, real_name(record.get("name")), unit_name)
    assert service["providedBy"].get("display") == unit_name
    assert decode_id(service["id"]) == GlobalId(source, record["id"], record["care_unit_id"])
    duration = record.get("duration_minutes")
    lengths = [e for e in service.get("extension", ()) if e["url"].endswith("/duration")]
    if type(duration) is int and duration > 0:
        assert lengths[0]["valueDuration"]["value"] == duration
    else:
        assert lengths == []


@given(st.sampled_from(["id", "care_unit_id"]), leyr_resources, leyr_services, st.data())
def test_leyr_records_without_an_identity_are_refused_by_name(key, resource, service, data):
    ctx = LeyrContext("leyr-demo", "Europe/Stockholm")
    for record, to_fhir in (
        (resource, leyr.to_fhir_resource),
        (resource, leyr.to_fhir_schedule),
        (service, leyr.to_fhir_healthcare_service),
    ):
        record = dict(record)
        wrong = data.draw(st.sampled_from([None, "", 17, ["x"]]))
        if wrong is None:
            del record[key]
        else:
            record[key] = wrong
        try:
            to_fhir(record, ctx)
        except InvalidVendorRecord as exc:
            assert exc.path == key
            for text in (v for v in record.values() if isinstance(v, str) and len(v) >= 4):
                assert text not in str(exc)
        else:
            raise AssertionError(f"a record with {key} = {wrong!r} was accepted")


@given(
    st.lists(st.one_of(leyr_care_units, gen.json_values), max_size=4),
    st.lists(st.one_of(leyr_resources, gen.json_values), max_size=4),
    st.lists(st.one_of(leyr_services, gen.json_values), max_size=4),
)
def test_leyr_directory_from_any_records_keeps_only_given_names(units, resources, services):
    directory = LeyrDirectory.from_records(units, resources, services)

    def named(records, key):
        return {
            (key(r), r["name"])
            for r in records
            if isinstance(r, dict) and real_name(r.get("name")) and key(r) is not None
        }

    def scoped(r):
        ok = all(real_name(r.get(k)) for k in ("id", "care_unit_id"))
        return (r["care_unit_id"], r["id"]) if ok else None

    assert set(directory.care_units.items()) <= named(units, lambda u: real_name(u.get("id")))
    assert set(directory.resources.items()) <= named(resources, scoped)
    assert set(directory.services.items()) <= named(services, scoped)
    equipment = {scoped(r) for r in resources if leyr.is_equipment(r) and scoped(r) is not None}
    assert directory.devices == equipment


@st.composite
def directories_for(draw, record: dict) -> LeyrDirectory:
    """A directory that may name the appointment's care unit, resource and service, may
    call its resource equipment, and knows other care units' things of the same ids."""
    cu = record["care_unit_id"]
    other = draw(gen.care_units.filter(lambda c: c != cu))
    care_units, resources, devices, services = {}, {}, set(), {}
    if draw(st.booleans()):
        care_units[cu] = draw(gen.words)
    if draw(st.booleans()):
        care_units[other] = draw(gen.words)
    for key, table in (("resource_id", resources), ("healthcare_service_id", services)):
        if key in record:
            for unit in (cu, other):
                if draw(st.booleans()):
                    table[(unit, record[key])] = draw(gen.words)
                if key == "resource_id" and draw(st.booleans()):
                    devices.add((unit, record[key]))
    return LeyrDirectory(care_units, resources, frozenset(devices), services)


@given(gen.leyr_appointments(), gen.source_names, st.data())
def test_leyr_appointment_round_trip_with_any_directory(record, source, data):
    directory = data.draw(directories_for(record))
    ctx = LeyrContext(source, "Europe/Stockholm", directory)
    resource = mapped(leyr.to_fhir_appointment, record, ctx)
    # vendor -> FHIR -> vendor is the identity; FHIR -> vendor -> FHIR is stable
    assert leyr.from_fhir_appointment(resource, ctx) == record
    assert leyr.to_fhir_appointment(leyr.from_fhir_appointment(resource, ctx), ctx) == resource
    cu = record["care_unit_id"]
    by_kind = {
        m["actor"]["reference"].partition("/")[0]: m["actor"] for m in resource["participant"]
    }
    assert by_kind["Location"].get("display") == directory.care_units.get(cu)
    if "resource_id" in record:
        key = (cu, record["resource_id"])
        kind = "Device" if key in directory.devices else "Practitioner"
        other = "Practitioner" if kind == "Device" else "Device"
        assert kind in by_kind and other not in by_kind
        assert by_kind[kind].get("display") == directory.resources.get(key)
    if "serviceType" in resource:
        coding = resource["serviceType"][0]["coding"][0]
        assert coding.get("display") == directory.services.get((cu, coding["code"]))
    # An empty directory adds nothing; names change displays (and kinds) only.
    plain = leyr.to_fhir_appointment(record, LeyrContext(source, "Europe/Stockholm"))
    assert strip_displays(resource) == strip_displays(plain)


def strip_displays(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: strip_displays(v.replace("Device/", "Practitioner/", 1) if k == "reference" else v)
            for k, v in value.items()
            if k != "display"
        }
    if isinstance(value, list):
        return [strip_displays(v) for v in value]
    return value


@given(gen.leyr_patients(), gen.source_names, st.none() | gen.words)
def test_leyr_patient_round_trip_with_a_named_care_unit(record, source, unit_name):
    directory = LeyrDirectory({record["care_unit_id"]: unit_name} if unit_name else {})
    ctx = LeyrContext(source, "Europe/Stockholm", directory)
    resource = mapped(leyr.to_fhir_patient, record, ctx)
    assert leyr.from_fhir_patient(resource, ctx) == record
    assert resource["managingOrganization"].get("display") == unit_name


# -- Nyra -------------------------------------------------------------------------------


@given(nyra_doctors, gen.source_names)
def test_nyra_practitioners_validate_name_only_themselves_and_decode(doctor, source):
    ctx = NyraContext(source, "Asia/Kolkata")
    practitioner = mapped(nyra.to_fhir_practitioner, doctor, ctx)
    name = real_name(doctor.get("name"))
    assert_only_names_of(practitioner, name)
    assert ("name" in practitioner) == (name is not None)
    assert decode_id(practitioner["id"]) == GlobalId(source, doctor["id"])


@given(nyra_availabilities, gen.source_names, st.none() | names)
def test_nyra_schedules_validate_name_only_the_doctor_and_decode(availability, source, name):
    ctx = NyraContext(source, "Asia/Kolkata")
    schedule = mapped(nyra.to_fhir_schedule, availability, ctx, name)
    assert_only_names_of(schedule, real_name(name))
    doctor = availability["doctor_id"]
    assert decode_id(schedule["id"]) == GlobalId(source, doctor)
    assert schedule["id"] == ctx.id(doctor)  # the doctor's Practitioner has the same id
    assert schedule["actor"][0]["reference"] == f"Practitioner/{ctx.id(doctor)}"
    assert "planningHorizon" not in schedule
    slot = nyra.slot_minutes_of(availability)
    lengths = [e for e in schedule.get("extension", ()) if e["url"].endswith("/slot-length")]
    assert [e["valueDuration"]["value"] for e in lengths] == ([] if slot is None else [slot])


@given(gen.json_values | st.dictionaries(st.just("slot_duration_minutes"), gen.json_values))
def test_nyra_slot_minutes_of_is_a_positive_int_or_none(answer):
    slot = nyra.slot_minutes_of(answer)
    value = answer.get("slot_duration_minutes") if isinstance(answer, dict) else None
    if type(value) is int and value > 0:
        assert slot == value
    else:
        assert slot is None


@given(branch_ids, gen.source_names)
def test_nyra_branches_validate_name_nothing_and_belong_to_the_hospital(branch, source):
    ctx = NyraContext(source, "Asia/Kolkata")
    location = mapped(nyra.to_fhir_location, branch, ctx)
    organization = mapped(nyra.to_fhir_organization, branch, ctx)
    hospital = mapped(nyra.to_fhir_organization, None, ctx)
    for resource in (location, organization, hospital):
        assert name_strings(resource) == [], "Nyra gives no names: none may appear"
    assert decode_id(location["id"]) == GlobalId(source, branch) == decode_id(organization["id"])
    assert decode_id(hospital["id"]) == GlobalId(source, nyra.HOSPITAL)
    assert hospital["id"] == nyra.hospital_id(ctx) != organization["id"]
    assert organization["partOf"]["reference"] == f"Organization/{hospital['id']}"
    assert location["managingOrganization"]["reference"] == f"Organization/{organization['id']}"


@given(st.one_of(st.integers(), st.just(""), st.just("  "), st.just(nyra.HOSPITAL)))
def test_nyra_branch_ids_that_name_no_branch_are_refused_by_name(branch):
    ctx = NyraContext("nyra-demo", "Asia/Kolkata")
    for to_fhir in (nyra.to_fhir_location, nyra.to_fhir_organization):
        try:
            to_fhir(branch, ctx)
        except InvalidVendorRecord as exc:
            assert exc.path == "branch_id"
        else:
            raise AssertionError("an id that names no branch was accepted")


@given(nyra_doctors, nyra_availabilities, st.sampled_from([None, "", 17]))
def test_nyra_records_without_an_id_are_refused_by_name(doctor, availability, wrong):
    ctx = NyraContext("nyra-demo", "Asia/Kolkata")
    for record, key, to_fhir in (
        (doctor, "id", nyra.to_fhir_practitioner),
        (availability, "doctor_id", nyra.to_fhir_schedule),
    ):
        record = {k: v for k, v in record.items() if k != key}
        if wrong is not None:
            record[key] = wrong
        try:
            to_fhir(record, ctx)
        except InvalidVendorRecord as exc:
            assert exc.path == key
        else:
            raise AssertionError(f"a record without {key} was accepted")
