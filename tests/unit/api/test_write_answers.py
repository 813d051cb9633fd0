"""What a write's answer says: every problem of a body in one OperationOutcome, each
saying whose rule it breaks (FHIR's, or the vendor's), and a warning for each element
the source did not keep, in the OperationOutcome under ``Prefer: return=OperationOutcome``
and as a ``Warning: 299`` header otherwise.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fhir_check import validate
from hypothesis import given
from hypothesis import strategies as st

from adapter.app import create_app
from adapter.fhir.kept import not_kept
from adapter.fhir.validation import fhir_problems
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings

pytestmark = pytest.mark.anyio

LEYR, NYRA = "leyr-w", "nyra-w"
JSON = {"content-type": "application/fhir+json"}


@pytest.fixture
async def http():
    leyr, nyra = LeyrSandbox(seed=2, patients=5), NyraSandbox(seed=2, patients=5)
    sources = {
        LEYR: {"connector": "leyr", "timezone": "Europe/Stockholm", **leyr.defaults()},
        NYRA: {"connector": "nyra", "timezone": "Asia/Kolkata", **nyra.defaults()},
    }
    settings = Settings(open_access=True, sources=sources, cursor_key=b"w" * 32)
    app = create_app(settings, transports={LEYR: leyr.transport(), NYRA: nyra.transport()})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fhir.test"
    ) as client:
        yield client


def patient(source: str, **elements: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "meta": {"source": source},
        "name": [{"family": "Quennell", "given": ["Maja"]}],
        "telecom": [{"system": "phone", "value": "+46701234567"}],
        **elements,
    }


def problems(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    validate(body)
    return {i["expression"][0]: i["diagnostics"] for i in body["issue"] if i.get("expression")}


@pytest.mark.parametrize("source", [LEYR, NYRA])
async def test_every_problem_of_a_body_is_in_one_outcome_and_says_it_is_fhirs_rule(http, source):
    body = patient(source, birthDate="1991-13-45", gender="f", active="yes")
    r = await http.post("/fhir/Patient", json=body, headers=JSON)
    assert r.status_code == 422
    found = problems(r)
    assert set(found) == {"Patient.birthDate", "Patient.gender", "Patient.active"}
    assert all(d.startswith("not valid FHIR R4") for d in found.values())
    assert "male | female | other | unknown" in found["Patient.gender"]
    assert "true or false" in found["Patient.active"]
    assert "1991" not in r.text  # no value of the body is quoted back
    found = (await http.get("/fhir/Patient", params={"family": "Quennell"})).json()
    assert not [e for e in found.get("entry", []) if e["search"]["mode"] == "match"]


async def test_a_valid_value_the_vendor_cannot_hold_is_said_to_be_the_vendors_limit(http):
    # Nyra takes no patient without a phone, and its birth dates are full dates: valid
    # FHIR both, refused together as the vendor's limits.
    body = patient(NYRA, birthDate="1991-04")
    body["telecom"] = [{"system": "email", "value": "maja@example.org"}]
    r = await http.post("/fhir/Patient", json=body, headers=JSON)
    assert r.status_code == 422
    found = problems(r)
    assert set(found) == {"Patient.birthDate", "Patient.telecom"}
    assert all("a limit of the vendor, not of FHIR" in d for d in found.values())
    assert all(d.startswith(f"source {NYRA}:") for d in found.values())


async def test_elements_the_source_did_not_keep_are_warned_of(http):
    body = patient(
        NYRA,
        maritalStatus={"text": "married"},
        telecom=[
            {"system": "phone", "value": "+919811111111"},
            {"system": "phone", "value": "+919822222222"},
        ],
    )
    # the default answer: the resource as stored, a Warning header per element lost
    r = await http.post("/fhir/Patient", json=body, headers=JSON)
    assert r.status_code == 201
    stored = r.json()
    assert "maritalStatus" not in stored and len(stored["telecom"]) == 1
    warnings = r.headers.get_list("warning")
    assert any("Patient.maritalStatus" in w for w in warnings)
    assert any("Patient.telecom[1]" in w for w in warnings)
    assert all(w.startswith('299 fhir-adapter "') for w in warnings)
    read = (await http.get(f"/fhir/Patient/{stored['id']}")).json()
    assert read == stored  # the body is the resource exactly as a read gives it

    # return=OperationOutcome: the same, as warning issues next to the information
    body["name"] = [{"family": "Rao", "given": ["Anil"]}]
    body["telecom"] = [{"system": "phone", "value": "+919833333333"}]
    prefer = {**JSON, "prefer": "return=OperationOutcome"}
    r = await http.post("/fhir/Patient", json=body, headers=prefer)
    assert r.status_code == 201
    outcome = r.json()
    validate(outcome)
    severities = {i["severity"] for i in outcome["issue"]}
    assert severities == {"information", "warning"}
    (lost,) = [i for i in outcome["issue"] if i["severity"] == "warning"]
    assert lost["expression"] == ["Patient.maritalStatus"] and lost["code"] == "not-supported"
    assert NYRA in lost["diagnostics"]


async def test_a_write_that_keeps_everything_warns_of_nothing(http):
    r = await http.post("/fhir/Patient", json=patient(LEYR, gender="female"), headers=JSON)
    assert r.status_code == 201
    assert r.headers.get_list("warning") == []


# -- properties ---------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(["name", "telecom", "gender", "x"]), _json, max_size=4))
def test_what_is_stored_whole_loses_nothing(sent):
    assert not_kept("Patient", sent, sent) == []


@given(st.dictionaries(st.sampled_from(["name", "telecom", "gender", "x"]), _json, max_size=4))
def test_what_is_not_stored_at_all_is_lost_element_by_element(sent):
    lost = not_kept("Patient", sent, {})
    wanted = [k for k, v in sent.items() if v not in (None, [], {})]
    assert lost == [f"Patient.{k}" for k in wanted]


@given(st.sampled_from(["male", "female", "other", "unknown"]), st.booleans())
def test_valid_codes_and_booleans_raise_no_problem(gender, active):
    body = {"resourceType": "Patient", "gender": gender, "active": active}
    assert fhir_problems("Patient", body) == []


@given(
    st.text(min_size=1, max_size=8).filter(
        lambda t: t not in ("male", "female", "other", "unknown")
    )
)
def test_any_other_gender_is_a_problem_naming_the_element(gender):
    (issue,) = fhir_problems("Patient", {"resourceType": "Patient", "gender": gender})
    assert issue.expression == ("Patient.gender",)


async def test_an_idempotent_replay_answers_every_header_the_first_answer_had(http):
    body = patient(
        NYRA,
        maritalStatus={"text": "married"},
        telecom=[
            {"system": "phone", "value": "+919811111111"},
            {"system": "phone", "value": "+919822222222"},
        ],
    )
    headers = {**JSON, "idempotency-key": "replay-keeps-warnings"}
    first = await http.post("/fhir/Patient", json=body, headers=headers)
    assert first.status_code == 201
    assert len(first.headers.get_list("warning")) == 2
    again = await http.post("/fhir/Patient", json=body, headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    # Every header the first answer had, but where this client stands in the vendor's
    # budget and what the answer cost: the replay used none of the budget, and made no call.
    budgeted = ("ratelimit", "ratelimit-policy")
    assert [k for k, _ in first.headers.multi_items() if k in budgeted] == list(budgeted[::-1])
    own = (*budgeted, "server-timing")
    assert sorted((k, v) for k, v in again.headers.multi_items() if k != "server-timing") == sorted(
        [(k, v) for k, v in first.headers.multi_items() if k not in own]
        + [("idempotent-replayed", "true")]
    )
    assert again.headers["server-timing"].startswith(
        'vendor;dur=0.0;desc="0 calls", budget;dur=0.0,'
    )
