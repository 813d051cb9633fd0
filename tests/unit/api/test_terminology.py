"""The code tables over HTTP: ConceptMap search, read and $translate, in process.

Every answer is checked against the R4B models (Bundle, ConceptMap, Parameters,
OperationOutcome, CapabilityStatement); every error is an OperationOutcome naming the
parameter at fault.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.conceptmap import ConceptMap
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.parameters import Parameters
from harness import FAST

from adapter.api.guard import interaction_of, route_of
from adapter.app import create_app
from adapter.auth.clients import load_clients
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import Settings
from mappings import leyr, nyra

pytestmark = pytest.mark.anyio

NS = "https://fhir-adapter.dev/fhir"
NYRA_GENDER = f"{NS}/CodeSystem/nyra-gender"
LEYR_STATUS = f"{NS}/CodeSystem/leyr-appointment-status"
NYRA_STATUS = f"{NS}/CodeSystem/nyra-appointment-status"
GENDER = "http://hl7.org/fhir/administrative-gender"
APPOINTMENT_STATUS = "http://hl7.org/fhir/appointmentstatus"
ALL_IDS = [
    "leyrgender",
    "leyrappointmentstatus",
    "nyragender",
    "nyrapatientstatus",
    "nyraappointmentstatus",
    "nyraappointmenttype",
]
FHIR_JSON = {"content-type": "application/fhir+json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
STRICT = {"prefer": "handling=strict"}
SECRET = "terminology-client-secret-0123456789"


def _app(clients: dict[str, Any] | None = None):
    sandboxes = {
        "leyr-a": LeyrSandbox(seed=4, patients=5),
        "nyra-b": NyraSandbox(seed=4, patients=5, limits=FAST),
    }
    sources = {
        "leyr-a": {"connector": "leyr", "emr": "webdoc", **sandboxes["leyr-a"].defaults()},
        "nyra-b": {"connector": "nyra", **sandboxes["nyra-b"].defaults()},
    }
    settings = Settings(
        sources=sources,
        clients=load_clients(clients or {}, list(sources)),
        open_access=not clients,
        cursor_key=b"c" * 32,
        token_key=b"t" * 32,
    )
    return create_app(settings, transports={n: s.transport() for n, s in sandboxes.items()})


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fhir.test")


@pytest.fixture
async def http():
    async with _client(_app()) as c:
        yield c


def ids(bundle: dict) -> list[str]:
    Bundle.model_validate(bundle)
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def link(bundle: dict, relation: str) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


def outcome(response: httpx.Response, status: int, *expression: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    OperationOutcome.model_validate(body)
    if expression:
        assert body["issue"][0]["expression"] == list(expression), body
    return body


def parameters(response: httpx.Response) -> dict:
    """A $translate answer: 200, a valid Parameters, result and message always there."""
    assert response.status_code == 200, response.text
    body = response.json()
    Parameters.model_validate(body)
    names = [p["name"] for p in body["parameter"]]
    assert names[:2] == ["result", "message"] and set(names[2:]) <= {"match"}
    assert body["parameter"][1]["valueString"]
    return body


def result(body: dict) -> bool:
    return body["parameter"][0]["valueBoolean"]


def message(body: dict) -> str:
    return body["parameter"][1]["valueString"]


def matches(body: dict) -> list[dict[str, Any]]:
    """Each match as {equivalence, system, code, source}."""
    out = []
    for p in body["parameter"][2:]:
        parts = {part["name"]: part for part in p["part"]}
        coding = parts["concept"]["valueCoding"]
        out.append(
            {
                "equivalence": parts["equivalence"]["valueCode"],
                "system": coding.get("system"),
                "code": coding["code"],
                "source": parts["source"]["valueUri"],
            }
        )
    return out


def body_of(*params: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(params)}


# -- search -----------------------------------------------------------------------------------


async def test_a_search_without_parameters_gives_every_table(http):
    r = await http.get("/fhir/ConceptMap")
    assert r.status_code == 200
    bundle = r.json()
    assert ids(bundle) == ALL_IDS
    assert bundle["total"] == 6
    assert bundle["entry"][0]["fullUrl"] == "http://fhir.test/fhir/ConceptMap/leyrgender"
    assert bundle["entry"][0]["search"] == {"mode": "match"}
    assert link(bundle, "self") == "http://fhir.test/fhir/ConceptMap?_count=20"
    assert link(bundle, "next") is None


@pytest.mark.parametrize(
    "query,expected",
    [
        ({"_id": "nyragender"}, ["nyragender"]),
        ({"_id": "nyragender,leyrgender"}, ["leyrgender", "nyragender"]),
        ({"_id": "nothing"}, []),
        ({"url": f"{NS}/ConceptMap/LeyrGender"}, ["leyrgender"]),
        ({"url": f"{NS}/ConceptMap/LeyrGend"}, []),  # a uri is matched whole
        ({"name": "nyra"}, [i for i in ALL_IDS if i.startswith("nyra")]),
        ({"name": "NYRAG"}, ["nyragender"]),
        ({"name": "Nÿrá"}, [i for i in ALL_IDS if i.startswith("nyra")]),
        ({"name": "gender"}, []),  # a prefix, not a part
        ({"name:contains": "gender"}, ["leyrgender", "nyragender"]),
        (
            {"name:contains": "APPOINTMENT"},
            ["leyrappointmentstatus", "nyraappointmentstatus", "nyraappointmenttype"],
        ),
        ({"name:exact": "NyraGender"}, ["nyragender"]),
        ({"name:exact": "nyragender"}, []),
        ({"status": "active"}, ALL_IDS),
        ({"status": "http://hl7.org/fhir/publication-status|active"}, ALL_IDS),
        ({"status": "draft"}, []),
        ({"source": NYRA_GENDER}, ["nyragender"]),
        ({"source-uri": LEYR_STATUS}, ["leyrappointmentstatus"]),
        ({"target": GENDER}, ["leyrgender", "nyragender"]),
        ({"target-uri": APPOINTMENT_STATUS}, ["leyrappointmentstatus", "nyraappointmentstatus"]),
        ({"source-system": NYRA_STATUS}, ["nyraappointmentstatus"]),
        (
            {"target-system": "http://terminology.hl7.org/CodeSystem/v2-0276"},
            ["nyraappointmenttype"],
        ),
        ({"target-system": APPOINTMENT_STATUS, "name": "nyra"}, ["nyraappointmentstatus"]),
        ({"target-system": GENDER, "source-system": LEYR_STATUS}, []),
    ],
)
async def test_search_by_each_parameter(http, query, expected):
    r = await http.get("/fhir/ConceptMap", params=query)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert ids(bundle) == expected
    assert bundle["total"] == len(expected)
    # The self link says what was honoured.
    self_query = dict(parse_qsl(urlsplit(link(bundle, "self")).query))
    assert self_query == {**query, "_count": "20"}


async def test_a_post_search_takes_a_form(http):
    r = await http.post("/fhir/ConceptMap/_search", content="name=leyr", headers=FORM)
    assert ids(r.json()) == ["leyrgender", "leyrappointmentstatus"]
    both = await http.post(
        "/fhir/ConceptMap/_search?name=leyr", content="_id=leyrgender", headers=FORM
    )
    assert ids(both.json()) == ["leyrgender"]
    wrong = await http.post("/fhir/ConceptMap/_search", json={"name": "leyr"})
    outcome(wrong, 415)


async def test_pages_follow_their_links_both_ways(http):
    first = (await http.get("/fhir/ConceptMap", params={"_count": "4"})).json()
    assert ids(first) == ALL_IDS[:4] and first["total"] == 6
    assert link(first, "previous") is None
    assert dict(parse_qsl(urlsplit(link(first, "self")).query)) == {"_count": "4"}
    second = (await http.get(link(first, "next"))).json()
    assert ids(second) == ALL_IDS[4:] and second["total"] == 6
    assert link(second, "next") is None
    back = (await http.get(link(second, "previous"))).json()
    assert ids(back) == ALL_IDS[:4]
    again = (await http.get(link(second, "self"))).json()
    assert ids(again) == ALL_IDS[4:]


async def test_a_cursor_keeps_the_search_it_was_made_for(http):
    first = (await http.get("/fhir/ConceptMap", params={"name": "nyra", "_count": "1"})).json()
    seen = ids(first)
    url = link(first, "next")
    while url:
        page = (await http.get(url)).json()
        seen += ids(page)
        url = link(page, "next")
    assert seen == [i for i in ALL_IDS if i.startswith("nyra")]


async def test_a_cursor_not_ours_or_of_another_search_is_refused(http):
    outcome(await http.get("/fhir/ConceptMap", params={"_cursor": "abc.def"}), 400, "_cursor")
    patients = (await http.get("/fhir/Patient", params={"_count": "1"})).json()
    other = dict(parse_qsl(urlsplit(link(patients, "next")).query))["_cursor"]
    outcome(await http.get("/fhir/ConceptMap", params={"_cursor": other}), 400, "_cursor")
    maps = (await http.get("/fhir/ConceptMap", params={"_count": "1"})).json()
    ours = dict(parse_qsl(urlsplit(link(maps, "next")).query))["_cursor"]
    r = await http.get("/fhir/Patient", params={"_cursor": ours})
    outcome(r, 400, "_cursor")


async def test_summary_count_and_total(http):
    counted = (await http.get("/fhir/ConceptMap", params={"_summary": "count"})).json()
    assert ids(counted) == [] and counted["total"] == 6
    zero = (await http.get("/fhir/ConceptMap", params={"_count": "0", "name": "leyr"})).json()
    assert ids(zero) == [] and zero["total"] == 2
    untold = (await http.get("/fhir/ConceptMap", params={"_total": "none"})).json()
    assert "total" not in untold and len(ids(untold)) == 6


async def test_unknown_parameters_are_ignored_unless_strict(http):
    r = await http.get("/fhir/ConceptMap", params={"publisher": "x", "name": "leyrg"})
    bundle = r.json()
    assert ids(bundle) == ["leyrgender"]
    assert "publisher" not in link(bundle, "self")
    strict = await http.get("/fhir/ConceptMap", params={"publisher": "x"}, headers=STRICT)
    outcome(strict, 400, "publisher")
    include = await http.get("/fhir/ConceptMap", params={"_include": "x"}, headers=STRICT)
    outcome(include, 400, "_include")


@pytest.mark.parametrize(
    "query,named",
    [
        ({"name:below": "x"}, "name:below"),
        ({"status:text": "active"}, "status:text"),
        ({"url:above": "x"}, "url:above"),
        ({"_count": "many"}, "_count"),
        ({"_count": "-1"}, "_count"),
        ({"_total": "all"}, "_total"),
        ({"name": "a,"}, "name"),
        ({"name": "x" * 1001}, "name"),
    ],
)
async def test_a_bad_search_is_a_400_naming_the_parameter(http, query, named):
    outcome(await http.get("/fhir/ConceptMap", params=query), 400, named)


# -- read, methods, formats -------------------------------------------------------------------


async def test_read_gives_the_table_and_404_an_unknown_id(http):
    r = await http.get("/fhir/ConceptMap/nyragender")
    assert r.status_code == 200
    ConceptMap.model_validate(r.json())
    assert r.json() == next(t for t in nyra.TABLES if t.name == "NyraGender").concept_map()
    body = outcome(await http.get("/fhir/ConceptMap/nothing"), 404)
    assert body["issue"][0]["code"] == "not-found"


async def test_methods_the_tables_do_not_take_are_405(http):
    assert (await http.head("/fhir/ConceptMap")).status_code == 200
    assert (await http.head("/fhir/ConceptMap/leyrgender")).status_code == 200
    for method, path in [
        ("POST", "/fhir/ConceptMap"),
        ("PUT", "/fhir/ConceptMap/leyrgender"),
        ("DELETE", "/fhir/ConceptMap/leyrgender"),
    ]:
        r = await http.request(method, path, json={"resourceType": "ConceptMap"})
        outcome(r, 405)
        assert r.headers["allow"] == "GET, HEAD"
    r = await http.request("PUT", "/fhir/ConceptMap/$translate")
    outcome(r, 405)
    assert r.headers["allow"] == "GET, HEAD, POST"


async def test_formats_as_elsewhere(http):
    plain = await http.get("/fhir/ConceptMap/leyrgender", headers={"accept": "application/json"})
    assert plain.headers["content-type"].startswith("application/json")
    pretty = await http.get(
        "/fhir/ConceptMap/$translate?code=MALE&url=" + f"{NS}/ConceptMap/NyraGender&_pretty=true"
    )
    assert pretty.text.startswith('{\n  "resourceType"')
    outcome(await http.get("/fhir/ConceptMap", params={"_format": "xml"}), 406, "_format")
    r = await http.post(
        "/fhir/ConceptMap/$translate?_format=xml",
        json=body_of({"name": "code", "valueCode": "MALE"}),
        headers=FHIR_JSON,
    )
    outcome(r, 406)


# -- $translate -------------------------------------------------------------------------------


async def test_translate_get_a_vendor_code(http):
    r = await http.get(
        "/fhir/ConceptMap/$translate", params={"code": "MALE", "system": NYRA_GENDER}
    )
    body = parameters(r)
    assert result(body) is True
    assert matches(body) == [
        {
            "equivalence": "equal",
            "system": GENDER,
            "code": "male",
            "source": f"{NS}/ConceptMap/NyraGender",
        }
    ]
    assert "MALE" in message(body) and "male" in message(body)


@pytest.mark.parametrize(
    "path,query",
    [
        ("/fhir/ConceptMap/$translate", {"coding": f"{NYRA_GENDER}|MALE"}),
        ("/fhir/ConceptMap/$translate", {"code": "MALE", "url": f"{NS}/ConceptMap/NyraGender"}),
        ("/fhir/ConceptMap/nyragender/$translate", {"code": "MALE"}),
        ("/fhir/ConceptMap/nyragender/$translate", {"coding": "MALE"}),
        (
            "/fhir/ConceptMap/$translate",
            {"code": "MALE", "system": NYRA_GENDER, "targetsystem": GENDER, "target": GENDER},
        ),
        ("/fhir/ConceptMap/$translate", {"code": "MALE", "source": NYRA_GENDER}),
        ("/fhir/ConceptMap/$translate", {"code": "MALE", "system": NYRA_GENDER, "version": "1"}),
    ],
)
async def test_translate_get_in_each_form(http, path, query):
    body = parameters(await http.get(path, params=query))
    assert result(body) is True
    assert [(m["code"], m["equivalence"]) for m in matches(body)] == [("male", "equal")]


async def test_translate_post_a_parameters_body(http):
    r = await http.post(
        "/fhir/ConceptMap/$translate",
        json=body_of(
            {"name": "code", "valueCode": "MALE"},
            {"name": "system", "valueUri": NYRA_GENDER},
        ),
        headers=FHIR_JSON,
    )
    body = parameters(r)
    assert result(body) is True
    assert [(m["code"], m["equivalence"]) for m in matches(body)] == [("male", "equal")]
    coding = await http.post(
        "/fhir/ConceptMap/nyragender/$translate",
        json=body_of({"name": "coding", "valueCoding": {"system": NYRA_GENDER, "code": "FEMALE"}}),
        headers={"content-type": "application/json"},
    )
    assert [m["code"] for m in matches(parameters(coding))] == ["female"]


async def test_translate_reverse_goes_from_fhir_back_to_vendor_codes(http):
    r = await http.get(
        "/fhir/ConceptMap/$translate",
        params={
            "code": "male",
            "system": GENDER,
            "reverse": "true",
            "url": f"{NS}/ConceptMap/NyraGender",
        },
    )
    body = parameters(r)
    assert result(body) is True
    assert matches(body) == [
        {
            "equivalence": "equal",
            "system": NYRA_GENDER,
            "code": "MALE",
            "source": f"{NS}/ConceptMap/NyraGender",
        }
    ]
    # Every map into administrative-gender, each vendor's code.
    both = parameters(
        await http.post(
            "/fhir/ConceptMap/$translate",
            json=body_of(
                {"name": "code", "valueCode": "male"},
                {"name": "system", "valueUri": GENDER},
                {"name": "reverse", "valueBoolean": True},
            ),
            headers=FHIR_JSON,
        )
    )
    assert {(m["system"], m["code"]) for m in matches(both)} == {
        (f"{NS}/CodeSystem/leyr-gender", "male"),
        (NYRA_GENDER, "MALE"),
    }


async def test_reverse_lists_the_preferred_vendor_code_first_and_turns_the_equivalence(http):
    body = parameters(
        await http.get(
            "/fhir/ConceptMap/nyraappointmentstatus/$translate",
            params={"code": "booked", "reverse": "true"},
        )
    )
    assert [(m["code"], m["equivalence"]) for m in matches(body)] == [
        ("BOOKED", "equivalent"),
        ("CONFIRMED", "narrower"),  # booked is wider than CONFIRMED
    ]
    forward = parameters(
        await http.get(
            "/fhir/ConceptMap/nyraappointmentstatus/$translate", params={"code": "CONFIRMED"}
        )
    )
    assert [(m["code"], m["equivalence"]) for m in matches(forward)] == [("booked", "wider")]


async def test_translate_an_inexact_status(http):
    body = parameters(
        await http.get(
            "/fhir/ConceptMap/$translate",
            params={"code": "awaiting_confirmation", "system": LEYR_STATUS},
        )
    )
    assert result(body) is True
    assert matches(body) == [
        {
            "equivalence": "inexact",
            "system": APPOINTMENT_STATUS,
            "code": "pending",
            "source": f"{NS}/ConceptMap/LeyrAppointmentStatus",
        }
    ]


@pytest.mark.parametrize(
    "query,says",
    [
        ({"code": "UNKNOWN", "system": NYRA_GENDER}, "No mapping of code 'UNKNOWN'"),
        ({"code": "MALE", "system": "urn:nowhere"}, "no ConceptMap here maps from 'urn:nowhere'"),
        ({"code": "MALE", "system": NYRA_GENDER, "targetsystem": "urn:x"}, "into 'urn:x'"),
        ({"code": "MALE", "system": NYRA_GENDER, "target": "urn:vs"}, "to the value set 'urn:vs'"),
        ({"code": "MALE", "url": f"{NS}/ConceptMap/LeyrGender"}, "No mapping"),
        ({"code": "male", "system": GENDER}, "no ConceptMap here maps from"),  # not reversed
    ],
)
async def test_nothing_found_is_result_false_with_a_message(http, query, says):
    body = parameters(await http.get("/fhir/ConceptMap/$translate", params=query))
    assert result(body) is False
    assert matches(body) == []
    assert says in message(body), message(body)


async def test_a_codeable_concept_translates_each_coding(http):
    body = parameters(
        await http.post(
            "/fhir/ConceptMap/$translate",
            json=body_of(
                {
                    "name": "codeableConcept",
                    "valueCodeableConcept": {
                        "coding": [
                            {"system": NYRA_STATUS, "code": "NO_SHOW"},
                            {"system": LEYR_STATUS, "code": "no_show"},
                            {"system": LEYR_STATUS, "code": "lost"},
                        ]
                    },
                }
            ),
            headers=FHIR_JSON,
        )
    )
    assert result(body) is True
    # The same concept from two maps: a match each, for each says where it comes from.
    assert [(m["code"], m["source"].rsplit("/", 1)[1]) for m in matches(body)] == [
        ("noshow", "NyraAppointmentStatus"),
        ("noshow", "LeyrAppointmentStatus"),
    ]
    assert "'lost'" in message(body)


async def test_a_concept_map_given_inline(http):
    given = {
        "resourceType": "ConceptMap",
        "url": "urn:example:map",
        "status": "draft",
        "group": [
            {
                "source": "urn:a",
                "target": "urn:b",
                "element": [
                    {
                        "code": "1",
                        "target": [{"code": "one", "display": "One", "equivalence": "equivalent"}],
                    },
                    {"code": "2", "target": [{"equivalence": "unmatched"}]},
                    {"code": "3", "target": [{"code": "x", "equivalence": "disjoint"}]},
                ],
            }
        ],
    }
    one = parameters(
        await http.post(
            "/fhir/ConceptMap/$translate",
            json=body_of(
                {"name": "conceptMap", "resource": given}, {"name": "code", "valueCode": "1"}
            ),
            headers=FHIR_JSON,
        )
    )
    assert result(one) is True
    concept = one["parameter"][2]["part"][1]["valueCoding"]
    assert concept == {"system": "urn:b", "code": "one", "display": "One"}
    for code in ("2", "3"):
        none = parameters(
            await http.post(
                "/fhir/ConceptMap/$translate",
                json=body_of(
                    {"name": "conceptMap", "resource": given}, {"name": "code", "valueCode": code}
                ),
                headers=FHIR_JSON,
            )
        )
        assert result(none) is False, code
        assert len(none["parameter"]) == 3  # the match is told, but it is no translation
        assert "No equivalent" in message(none)


@pytest.mark.parametrize(
    "query,named",
    [
        ({}, "code"),
        ({"system": NYRA_GENDER}, "code"),
        ({"code": "male"}, "system"),  # several maps could take it
        ({"code": "MALE", "url": "urn:no-such-map"}, "url"),
        ({"code": "MALE", "system": NYRA_GENDER, "reverse": "yes"}, "reverse"),
        ({"code": "MALE", "system": NYRA_GENDER, "reverse": ""}, "reverse"),
        ({"coding": f"{NYRA_GENDER}|"}, "coding"),
        ({"coding": "male"}, "coding"),
        ({"code": "MALE", "coding": f"{NYRA_GENDER}|MALE"}, "coding"),
        ({"coding": f"{NYRA_GENDER}|MALE", "system": NYRA_GENDER}, "system"),
        ({"code": "MALE", "version": "1"}, "version"),
        ({"code": "MALE", "codeableConcept": "x"}, "codeableConcept"),
        ({"code": "MALE", "conceptMap": "x"}, "conceptMap"),
    ],
)
async def test_bad_get_translate_is_a_400_naming_the_parameter(http, query, named):
    outcome(await http.get("/fhir/ConceptMap/$translate", params=query), 400, named)


async def test_a_parameter_given_twice_is_refused(http):
    r = await http.get("/fhir/ConceptMap/$translate?code=MALE&code=FEMALE&system=" + NYRA_GENDER)
    outcome(r, 400, "code")


async def test_unknown_translate_parameters_are_ignored_unless_strict(http):
    query = {"code": "MALE", "system": NYRA_GENDER, "dependency": "x"}
    assert result(parameters(await http.get("/fhir/ConceptMap/$translate", params=query)))
    r = await http.get("/fhir/ConceptMap/$translate", params=query, headers=STRICT)
    outcome(r, 400, "dependency")


async def test_instance_translate_of_an_unknown_map_is_404(http):
    outcome(await http.get("/fhir/ConceptMap/nothing/$translate", params={"code": "x"}), 404)
    r = await http.post(
        "/fhir/ConceptMap/nothing/$translate",
        json=body_of({"name": "code", "valueCode": "x"}),
        headers=FHIR_JSON,
    )
    outcome(r, 404)
    other = await http.get(
        "/fhir/ConceptMap/nyragender/$translate",
        params={"code": "MALE", "url": f"{NS}/ConceptMap/LeyrGender"},
    )
    outcome(other, 400, "url")


@pytest.mark.parametrize(
    "body,named",
    [
        (
            body_of(
                {"name": "code", "valueCode": "MALE"}, {"name": "reverse", "valueBoolean": "true"}
            ),
            "reverse",
        ),
        (
            body_of(
                {"name": "code", "valueCode": "MALE"}, {"name": "reverse", "valueString": "true"}
            ),
            "reverse",
        ),
        (body_of({"name": "code", "valueInteger": 1}), "code"),
        (body_of({"name": "code", "valueCode": ""}), "code"),
        (
            body_of({"name": "code", "valueCode": "MALE"}, {"name": "code", "valueCode": "X"}),
            "code",
        ),
        (body_of({"name": "coding", "valueCoding": {"system": NYRA_GENDER}}), "coding"),
        (body_of({"name": "coding", "valueCoding": "MALE"}), "coding"),
        (
            body_of({"name": "codeableConcept", "valueCodeableConcept": {"coding": []}}),
            "codeableConcept",
        ),
        (
            body_of({"name": "code", "valueCode": "MALE"}, {"name": "url", "valueUri": "urn:none"}),
            "url",
        ),
        (body_of({"name": "code", "valueCode": "male"}), "system"),
        (body_of({"name": "coding", "valueCoding": {"code": "male"}}), "coding"),
        (
            body_of(
                {"name": "code", "valueCode": "1"},
                {"name": "conceptMap", "resource": {"resourceType": "ValueSet"}},
            ),
            "conceptMap",
        ),
        (
            body_of(
                {"name": "code", "valueCode": "1"},
                {
                    "name": "conceptMap",
                    "resource": {
                        "resourceType": "ConceptMap",
                        "group": [{"element": [{"code": "1", "target": [{"code": "x"}]}]}],
                    },
                },
            ),
            "conceptMap",
        ),
        (
            body_of(
                {"name": "code", "valueCode": "1"},
                {"name": "url", "valueUri": f"{NS}/ConceptMap/NyraGender"},
                {"name": "conceptMap", "resource": {"resourceType": "ConceptMap"}},
            ),
            "conceptMap",
        ),
        ({"resourceType": "Patient"}, "Parameters"),
        ({"resourceType": "Parameters", "parameter": {}}, "Parameters.parameter"),
        (body_of({"valueCode": "x"}), "Parameters.parameter[0]"),
        ([], "Parameters"),
    ],
)
async def test_bad_post_translate_is_a_400_naming_the_parameter(http, body, named):
    r = await http.post("/fhir/ConceptMap/$translate", json=body, headers=FHIR_JSON)
    outcome(r, 400, named)


async def test_a_body_that_is_not_json_or_not_fhir_json(http):
    r = await http.post("/fhir/ConceptMap/$translate", content=b"{not json", headers=FHIR_JSON)
    outcome(r, 400, "Parameters")
    r = await http.post("/fhir/ConceptMap/$translate", content=b"code=MALE", headers=FORM)
    outcome(r, 415)


@pytest.mark.parametrize(
    "table,row",
    [(t, row) for t in (*leyr.TABLES, *nyra.TABLES) for row in t.rows],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "name", None) or v[0],
)
async def test_every_row_translates_both_ways_over_http(http, table, row):
    vendor, fhir, equivalence = row
    forward = parameters(
        await http.get(
            "/fhir/ConceptMap/$translate", params={"code": vendor, "system": table.vendor_system}
        )
    )
    assert {"equivalence": equivalence, "system": table.fhir_system, "code": fhir} in [
        {k: m[k] for k in ("equivalence", "system", "code")} for m in matches(forward)
    ]
    back = parameters(
        await http.get(
            f"/fhir/ConceptMap/{table.name.lower()}/$translate",
            params={"code": fhir, "system": table.fhir_system, "reverse": "true"},
        )
    )
    assert matches(back)[0]["code"] == table.from_fhir(fhir)
    assert vendor in [m["code"] for m in matches(back)]


# -- the CapabilityStatement -------------------------------------------------------------------


async def test_the_capability_statement_lists_what_works(http):
    statement = (await http.get("/fhir/metadata")).json()
    CapabilityStatement.model_validate(statement)
    entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "ConceptMap")
    assert [i["code"] for i in entry["interaction"]] == ["read", "search-type"]
    assert entry["operation"] == [
        {
            "name": "translate",
            "definition": "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate",
        }
    ]
    params = {p["name"]: p for p in entry["searchParam"]}
    assert params["url"]["definition"] == "http://hl7.org/fhir/SearchParameter/ConceptMap-url"
    assert params["name"]["type"] == "string"
    assert params["source-system"]["type"] == "uri"
    # Every parameter listed is one a search takes (strict: none refused).
    for name in params:
        r = await http.get("/fhir/ConceptMap", params={name: "x"}, headers=STRICT)
        assert r.status_code == 200, (name, r.text)


# -- access -------------------------------------------------------------------------------------


def test_the_guard_reads_translate_as_a_read_of_concept_map():
    assert interaction_of("GET", "/fhir/ConceptMap/$translate") == ("read", "ConceptMap")
    assert interaction_of("POST", "/fhir/ConceptMap/$translate") == ("read", "ConceptMap")
    assert interaction_of("POST", "/fhir/ConceptMap/x/$translate") == ("read", "ConceptMap")
    assert interaction_of("GET", "/fhir/ConceptMap") == ("search", "ConceptMap")
    assert interaction_of("POST", "/fhir/ConceptMap/_search") == ("search", "ConceptMap")
    assert interaction_of("DELETE", "/fhir/ConceptMap/$translate") == ("delete", "ConceptMap")
    assert route_of("/fhir/ConceptMap/$translate") == "/fhir/{type}/$translate"
    assert route_of("/fhir/ConceptMap/nyragender/$translate") == "/fhir/{type}/{id}/$translate"


async def _token(c: httpx.AsyncClient, name: str) -> dict[str, str]:
    r = await c.post("/auth/token", data={"grant_type": "client_credentials"}, auth=(name, SECRET))
    assert r.status_code == 200, r.text
    return {"authorization": f"Bearer {r.json()['access_token']}"}


REQUESTS = {
    "search": ("GET", "/fhir/ConceptMap", None),
    "search by POST": ("POST", "/fhir/ConceptMap/_search", None),
    "read": ("GET", "/fhir/ConceptMap/nyragender", None),
    "translate": ("GET", "/fhir/ConceptMap/$translate?code=MALE&system=" + NYRA_GENDER, None),
    "translate by POST": (
        "POST",
        "/fhir/ConceptMap/nyragender/$translate",
        body_of({"name": "code", "valueCode": "MALE"}),
    ),
}


@pytest.mark.parametrize(
    "scopes,allowed",
    [
        (["system/ConceptMap.rs"], set(REQUESTS)),
        (["system/ConceptMap.read"], set(REQUESTS)),
        (["system/*.rs"], set(REQUESTS)),
        (["system/ConceptMap.r"], {"read", "translate", "translate by POST"}),
        (["system/ConceptMap.s"], {"search", "search by POST"}),
        (["system/Patient.rs"], set()),
        (["system/ConceptMap.cud"], set()),
    ],
)
async def test_scopes_decide_who_reads_the_tables(scopes, allowed):
    app = _app({"c": {"secret": SECRET, "scopes": scopes}})
    async with _client(app) as c:
        token = await _token(c, "c")
        for what, (method, path, body) in REQUESTS.items():
            headers = dict(token)
            if method == "POST":
                headers |= FHIR_JSON if body is not None else FORM
            r = await c.request(method, path, json=body, headers=headers)
            if what in allowed:
                assert r.status_code == 200, (what, r.text)
            else:
                outcome(r, 403)
                assert "insufficient_scope" in r.headers["www-authenticate"]
        outcome(await c.get("/fhir/ConceptMap"), 401)
