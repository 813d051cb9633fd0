"""Phone searches over HTTP against both sandboxes: a number written any usual way finds
the patient however the vendor holds it (Nyra: Indian mobiles with or without +91; Leyr:
Swedish numbers in E.164), and a ``+`` sent unencoded, which a query string reads as a
space, still means ``+``: in the query, in a POST _search form and in ``If-None-Exist``,
where it finds the patient instead of creating a second one.

The sources name their country (``country``) or, in the second run, do not: the numbers
here are found either way."""

from __future__ import annotations

import pytest
from harness import FAST

from adapter.app import create_app
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings
from mappings import decode_id

JSON = {"content-type": "application/fhir+json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


class PhoneWorld:
    """The two sandboxes of the write tests, their sources naming a country or not."""

    def __init__(self, countries: bool) -> None:
        self.leyr = LeyrSandbox(seed=2, patients=12)
        self.nyra = NyraSandbox(seed=2, patients=12, limits=FAST)
        leyr = {"connector": "leyr", **self.leyr.defaults()}
        nyra = {"connector": "nyra", **self.nyra.defaults()}
        if countries:
            leyr["country"], nyra["country"] = "SE", "IN"
        self.app = create_app(
            Settings(
                open_access=True,
                sources={"leyr-w": leyr, "nyra-w": nyra},
                cursor_key=b"p" * 32,
            ),
            transports={"leyr-w": self.leyr.transport(), "nyra-w": self.nyra.transport()},
        )

    def nyra_patient(self, with_country_code: bool) -> dict:
        return next(
            p for p in self.nyra.patients if p["phone"].startswith("+91") is with_country_code
        )


@pytest.fixture(params=[True, False], ids=["country", "no-country"])
def world(request):
    return PhoneWorld(request.param)


def matched(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", ()) if e["search"]["mode"] == "match"]


def phones(resource: dict) -> list[str]:
    return [t["value"] for t in resource.get("telecom", ()) if t["system"] == "phone"]


def spaced(national: str, calling_code: str) -> str:
    """``+91 98123 45678`` (India), ``+46 70-422 08 67`` (Sweden)."""
    if calling_code == "91":
        return f"+91 {national[:5]} {national[5:]}"
    return f"+46 {national[:2]}-{national[2:5]} {national[5:7]} {national[7:]}"


@pytest.mark.parametrize("with_country_code", [False, True], ids=["held-national", "held-e164"])
def test_nyra_patients_are_found_by_any_way_of_writing_their_number(
    world, served, with_country_code
):
    held = world.nyra_patient(with_country_code)
    national = held["phone"].removeprefix("+91")
    queries = [
        # what a client that does not encode sends: its + arrives as a space
        f"phone={spaced(national, '91')}",
        f"phone=+91{national}",
        f"phone={national}",
        f"phone=0{national[:5]}-{national[5:]}",
        f"phone=0091.{national}",
        f"phone=phone|+91{national}",
        f"telecom=({national[:3]}) {national[3:6]}-{national[6:]}",
    ]
    for query in queries:
        found = matched(served.get(f"/Patient?{query}").json())
        assert [phones(r) for r in found] == [[held["phone"]]], query
        assert decode_id(found[0]["id"]).vendor_id == held["id"]
    # encoded as it should be, the + is a +
    found = matched(served.get("/Patient", params={"phone": spaced(national, "91")}).json())
    assert [phones(r) for r in found] == [[held["phone"]]]
    # and another number finds nobody
    other = national[:-1] + ("1" if national[-1] != "1" else "2")
    assert matched(served.get(f"/Patient?phone=+91{other}").json()) == []


def test_a_leyr_patient_is_found_by_its_number_written_the_swedish_way(served):
    held = matched(served.get("/Patient", params={"_source": "leyr-w", "_count": "1"}).json())[0]
    (number,) = phones(held)
    national = number.removeprefix("+46")
    for query in (
        f"phone={spaced(national, '46')}",  # + unencoded: a space
        f"phone=0{national}",
        f"phone=0046 {national}",
        f"phone=phone|{number}",
        f"telecom=0{national[:2]}-{national[2:]}",
    ):
        found = matched(served.get(f"/Patient?{query}").json())
        assert [r["id"] for r in found] == [held["id"]], query


def test_a_post_search_form_reads_an_unencoded_plus(world, served):
    held = world.nyra_patient(with_country_code=False)
    form = f"phone=+91{held['phone']}".encode()
    found = matched(served.post("/Patient/_search", content=form, headers=FORM).json())
    assert [phones(r) for r in found] == [[held["phone"]]]


@pytest.mark.parametrize("with_country_code", [False, True], ids=["held-national", "held-e164"])
def test_if_none_exist_with_an_unencoded_plus_finds_the_patient_it_names(
    world, served, with_country_code
):
    held = world.nyra_patient(with_country_code)
    national = held["phone"].removeprefix("+91")
    body = {
        "resourceType": "Patient",
        "meta": {"source": "nyra-w"},
        "name": [{"text": held["name"]}],
        "telecom": [{"system": "phone", "value": f"+91{national}"}],
    }
    before = len(world.nyra.patients)
    for condition in (f"phone=+91{national}", f"phone=+91 {national[:5]} {national[5:]}"):
        again = served.post("/Patient", json=body, headers={**JSON, "If-None-Exist": condition})
        assert again.status_code == 200, condition
        assert decode_id(again.json()["id"]).vendor_id == held["id"]
    assert len(world.nyra.patients) == before  # no duplicate
    # a number nobody has: created
    other = {**body, "telecom": [{"system": "phone", "value": "+919000000001"}]}
    made = served.post(
        "/Patient", json=other, headers={**JSON, "If-None-Exist": "phone=+919000000001"}
    )
    assert made.status_code == 201
    assert len(world.nyra.patients) == before + 1


def test_a_nyra_patient_created_with_a_formatted_number_is_found_by_any_spelling(world, served):
    body = {
        "resourceType": "Patient",
        "meta": {"source": "nyra-w"},
        "name": [{"text": "Asha Formatted"}],
        "telecom": [{"system": "phone", "value": "+91 90000 12345"}],
    }
    made = served.post("/Patient", json=body, headers=JSON)
    assert made.status_code == 201, made.text
    assert phones(made.json()) == ["+919000012345"]  # held as digits, the same number
    assert "warning" not in made.headers  # nothing was lost
    for query in ("phone=+91 90000 12345", "phone=9000012345", "phone=090000-12345"):
        found = matched(served.get(f"/Patient?{query}").json())
        assert [r["id"] for r in found] == [made.json()["id"]], query
