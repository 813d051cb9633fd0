"""A small FHIR R4 server, in-process: the upstream this connector is tested against.

It holds Patients loaded from public samples (Synthea's, then the R4 specification's
examples), and a generated practice around them (Organizations, Locations, Practitioners,
their Schedules and Slots, and Appointments), all seeded. It answers as a FHIR server
does: ``GET /metadata`` (a CapabilityStatement declaring the few search parameters it
takes), read, search with ``next`` links over a snapshot of the matches, create
(conditional with ``If-None-Exist``), update with versions (``ETag``, ``If-Match``, 412
on a stale version), and every error as an OperationOutcome. Access takes a static
bearer token, or one issued by its token endpoint to a SMART Backend Services client
(``private_key_jwt``, RS384 or ES384), or nothing.

Its search is its own, written from the R4 search page apart from the facade's matcher:
what the connector pushes down is held to what it matches afterwards.
"""

from __future__ import annotations

import itertools
import json
import random
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import jwt

__all__ = ["DEFAULT_SAMPLES", "SEARCH_PARAMS", "FhirSandbox"]

DEFAULT_SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "fhir-samples"
BASE_URL = "http://fhir-upstream.sandbox/fhir"

# What this server searches by (and declares): deliberately fewer than the facade offers,
# so that a connector must match the rest itself.
SEARCH_PARAMS: dict[str, dict[str, str]] = {
    "Patient": {
        "_id": "token",
        "family": "string",
        "given": "string",
        "gender": "token",
        "birthdate": "date",
        "identifier": "token",
    },
    "Appointment": {
        "_id": "token",
        "patient": "reference",
        "practitioner": "reference",
        "status": "token",
        "date": "date",
    },
    "Slot": {"_id": "token", "schedule": "reference", "start": "date", "status": "token"},
    "Schedule": {"_id": "token", "actor": "reference"},
    "Practitioner": {"_id": "token", "family": "string"},
    "Location": {"_id": "token", "organization": "reference"},
    "Organization": {"_id": "token"},
}
_PATHS: dict[tuple[str, str], Callable[[dict[str, Any]], list[Any]]] = {
    ("Patient", "family"): lambda r: [n.get("family") for n in r.get("name") or ()],
    ("Patient", "given"): lambda r: [g for n in r.get("name") or () for g in n.get("given") or ()],
    ("Practitioner", "family"): lambda r: [n.get("family") for n in r.get("name") or ()],
    ("Patient", "gender"): lambda r: [r.get("gender")],
    ("Patient", "birthdate"): lambda r: [r.get("birthDate")],
    ("Patient", "identifier"): lambda r: list(r.get("identifier") or ()),
    ("Appointment", "patient"): lambda r: _actors(r, "Patient"),
    ("Appointment", "practitioner"): lambda r: _actors(r, "Practitioner"),
    ("Appointment", "status"): lambda r: [r.get("status")],
    ("Appointment", "date"): lambda r: [r.get("start")],
    ("Slot", "schedule"): lambda r: [(r.get("schedule") or {}).get("reference")],
    ("Slot", "start"): lambda r: [r.get("start")],
    ("Slot", "status"): lambda r: [r.get("status")],
    ("Schedule", "actor"): lambda r: [a.get("reference") for a in r.get("actor") or ()],
    ("Location", "organization"): lambda r: [
        (r.get("managingOrganization") or {}).get("reference")
    ],
}
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_SNAPSHOTS = 256  # search snapshots kept for paging; the oldest goes first


def _actors(r: dict[str, Any], kind: str) -> list[str]:
    out = []
    for p in r.get("participant") or ():
        ref = (p.get("actor") or {}).get("reference")
        if isinstance(ref, str) and ref.startswith(kind + "/"):
            out.append(ref)
    return out


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _range(text: str) -> tuple[datetime, datetime]:
    """The instants a date, dateTime or instant covers: [start, end)."""
    if len(text) == 4:
        start = datetime(int(text), 1, 1, tzinfo=UTC)
        return start, start.replace(year=start.year + 1)
    if len(text) == 7:
        start = datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
        nxt = start.replace(year=start.year + 1, month=1) if start.month == 12 else None
        return start, nxt or start.replace(month=start.month + 1)
    if len(text) == 10:
        start = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return start, start + timedelta(days=1)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment, moment + timedelta(microseconds=1)


def _date_ok(prefix: str, value: str, held: str) -> bool:
    lo, hi = _range(held)
    slo, shi = _range(value)
    if prefix == "ge":
        return hi > slo
    if prefix == "le":
        return lo < shi
    if prefix == "gt":
        return hi > shi
    if prefix == "lt":
        return lo < slo
    if prefix == "ne":
        return not (lo >= slo and hi <= shi)
    return lo >= slo and hi <= shi


def _one_ok(kind: str, modifier: str, value: str, held: Any) -> bool:
    if held is None:
        return False
    if kind == "string":
        text, wanted = _fold(str(held)), _fold(value)
        if modifier == "exact":
            return str(held) == value
        return wanted in text if modifier == "contains" else text.startswith(wanted)
    if kind == "token":
        if isinstance(held, dict):  # an Identifier
            system, _, code = value.rpartition("|")
            return held.get("value") == code and (not system or held.get("system") == system)
        return str(held).lower() == value.rpartition("|")[2].lower()
    if kind == "reference":
        return bool(held == value or str(held).endswith("/" + value))
    prefix = value[:2] if value[:2] in _PREFIXES else "eq"
    return _date_ok(prefix, value[2:] if value[:2] in _PREFIXES else value, str(held))


def _outcome(
    status: int, code: str, text: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return httpx.Response(
        status, json=body, headers={"content-type": "application/fhir+json", **(headers or {})}
    )


class FhirSandbox:
    """The server's state; :meth:`transport` serves it to an httpx client in-process.

    ``auth``: ``"bearer"`` (the static ``token``), ``"smart"`` (tokens from
    ``{base}/token`` to ``client_id``, whose assertions ``public_key`` verifies) or
    ``"none"``. ``clock`` (seconds) decides token expiry and ``lastUpdated``."""

    def __init__(
        self,
        *,
        seed: int = 0,
        patients: int = 40,
        samples: Path = DEFAULT_SAMPLES,
        today: date | None = None,
        auth: str = "bearer",
        token: str = "sandbox-token",
        client_id: str = "facade",
        public_key: Any = None,
        token_seconds: int = 300,
        base_url: str = BASE_URL,
        page_size: int = 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rng = random.Random(seed)
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.static_token = token
        self.client_id = client_id
        self.public_key = public_key
        self.token_seconds = token_seconds
        self.page_size = page_size
        self.clock = clock
        self.tokens: dict[str, float] = {}  # issued token -> when it expires
        self.assertions: set[str] = set()  # jti of every client assertion taken
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request
        self.queries: list[str] = []  # the query string of every search
        self.if_match_seen: list[str] = []  # the If-Match of every update
        self.lose_answers = 0  # writes whose answer is lost after they are made
        self.failures = 0  # requests answered 503 from now on (each takes one)
        self.store: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in SEARCH_PARAMS}
        self._snapshots: dict[str, tuple[str, list[str]]] = {}
        self._load(samples, patients, today or date.today())

    # -- data -------------------------------------------------------------------------

    def _put(self, resource: dict[str, Any]) -> None:
        meta = {k: v for k, v in (resource.get("meta") or {}).items() if k != "versionId"}
        meta["versionId"] = "1"
        meta.setdefault("lastUpdated", "2026-01-01T00:00:00Z")
        resource = {**resource, "meta": meta}
        self.store[resource["resourceType"]][resource["id"]] = resource

    def _load(self, samples: Path, patients: int, today: date) -> None:
        if not samples.is_dir():
            raise FileNotFoundError(f"no FHIR samples at {samples}")
        files = sorted((samples / "synthea-r4" / "patient").glob("*.json"))
        files += sorted((samples / "hl7-r4-spec" / "patient-from-bundles").glob("*.json"))
        # The specification's example Bundles name their Organization "1".
        self._put({"resourceType": "Organization", "id": "1", "name": "Example Hospital"})
        self._put(
            {
                "resourceType": "Organization",
                "id": "clinic",
                "name": "Example Clinic",
                "partOf": {"reference": "Organization/1"},
            }
        )
        for i, name in enumerate(("North wing", "South wing", "Clinic rooms")):
            self._put(
                {
                    "resourceType": "Location",
                    "id": f"loc-{i + 1}",
                    "name": name,
                    "managingOrganization": {
                        "reference": "Organization/" + ("1", "clinic")[i // 2]
                    },
                }
            )
        families = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Iyer", "Novak")
        for i, family in enumerate(families):
            self._put(
                {
                    "resourceType": "Practitioner",
                    "id": f"pr-{i + 1}",
                    "identifier": [{"system": "urn:example:staff", "value": f"S{100 + i}"}],
                    "name": [{"family": family, "given": [("Ada", "Ben", "Chloe")[i % 3]]}],
                }
            )
            self._put(
                {
                    "resourceType": "Schedule",
                    "id": f"sch-{i + 1}",
                    "active": True,
                    "actor": [
                        {"reference": f"Practitioner/pr-{i + 1}"},
                        {"reference": f"Location/loc-{i % 3 + 1}"},
                    ],
                }
            )
        for path in files[:patients]:
            patient = json.loads(path.read_text())
            patient.pop("text", None)
            patient["managingOrganization"] = {"reference": "Organization/1"}
            self._put(patient)
        if len(self.store["Patient"]) < patients:
            raise ValueError(f"the samples hold {len(self.store['Patient'])} patients")
        self._slots(today)
        self._appointments(today)

    def _slots(self, today: date) -> None:
        for i in range(1, 7):
            for offset in range(-7, 22):
                day = today + timedelta(days=offset)
                if day.weekday() >= 5:
                    continue
                for minute in range(0, 120, 30):
                    start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(
                        hours=9, minutes=minute
                    )
                    self._put(
                        {
                            "resourceType": "Slot",
                            "id": f"sl-{i}-{start:%Y%m%d%H%M}",
                            "schedule": {"reference": f"Schedule/sch-{i}"},
                            "status": self.rng.choice(("free", "free", "busy")),
                            "start": start.isoformat().replace("+00:00", "Z"),
                            "end": (start + timedelta(minutes=30))
                            .isoformat()
                            .replace("+00:00", "Z"),
                        }
                    )

    def _appointments(self, today: date) -> None:
        patients = sorted(self.store["Patient"])
        statuses = ("booked", "booked", "fulfilled", "cancelled", "noshow", "proposed")
        for n in range(len(patients) * 3 // 2):
            patient = self.rng.choice(patients)
            doctor = self.rng.randrange(1, 7)
            day = today + timedelta(days=self.rng.randrange(-40, 40))
            start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(
                hours=self.rng.randrange(8, 17), minutes=self.rng.choice((0, 15, 30, 45))
            )
            self._put(
                {
                    "resourceType": "Appointment",
                    "id": f"ap-{n + 1}",
                    "status": self.rng.choice(statuses),
                    "start": start.isoformat().replace("+00:00", "Z"),
                    "end": (start + timedelta(minutes=15)).isoformat().replace("+00:00", "Z"),
                    "participant": [
                        {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
                        {"actor": {"reference": f"Practitioner/pr-{doctor}"}, "status": "accepted"},
                        {
                            "actor": {"reference": f"Location/loc-{doctor % 3 + 1}"},
                            "status": "accepted",
                        },
                    ],
                }
            )

    @property
    def appointments(self) -> list[dict[str, Any]]:
        return list(self.store["Appointment"].values())

    def defaults(self) -> dict[str, Any]:
        """The source configuration that reaches this server (with its own credentials
        when they are static)."""
        auth: dict[str, Any] = {"type": self.auth}
        if self.auth == "bearer":
            auth["token"] = self.static_token
        return {"base_url": self.base_url, "timezone": "UTC", "auth": auth}

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.MockTransport(self.handle)

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (as a server restart might do)."""
        self.tokens.clear()

    # -- HTTP -------------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        base_path = httpx.URL(self.base_url).path.rstrip("/")
        if not path.startswith(base_path + "/"):
            return _outcome(404, "not-found", "not a path of this server")
        parts = [p for p in path[len(base_path) :].split("/") if p]
        self.calls.append((request.method, "/".join(parts)))
        if parts == ["token"] and request.method == "POST":
            return self._token(request)
        if parts == ["metadata"]:
            return httpx.Response(200, json=self.capability_statement())
        if self.failures:
            self.failures -= 1
            return _outcome(503, "transient", "the server is busy", {"retry-after": "1"})
        refused = self._refused(request)
        if refused is not None:
            return refused
        if not parts or parts[0] not in self.store:
            return _outcome(404, "not-supported", "resource type not served")
        kind = parts[0]
        if request.method == "GET" and len(parts) == 1:
            self.queries.append(request.url.query.decode())
            return self._search(kind, request.url)
        if request.method == "GET" and len(parts) == 2:
            found = self.store[kind].get(parts[1])
            if found is None:
                return _outcome(404, "not-found", f"{kind}/{parts[1]} is not known")
            return self._answer(200, found)
        if request.method in ("POST", "PUT"):
            if request.method == "POST" and len(parts) == 1:
                answer = self._create(kind, request)
            elif request.method == "PUT" and len(parts) == 2:
                self.if_match_seen.append(request.headers.get("if-match", ""))
                answer = self._update(kind, parts[1], request)
            else:
                return _outcome(405, "not-supported", "interaction not supported")
            if self.lose_answers and answer.is_success:
                self.lose_answers -= 1
                raise httpx.ReadError("the connection dropped after the write was made")
            return answer
        return _outcome(405, "not-supported", "interaction not supported")

    def _answer(self, status: int, resource: dict[str, Any]) -> httpx.Response:
        headers = {
            "content-type": "application/fhir+json",
            "etag": f'W/"{resource["meta"]["versionId"]}"',
            "location": f"{self.base_url}/{resource['resourceType']}/{resource['id']}"
            f"/_history/{resource['meta']['versionId']}",
        }
        return httpx.Response(status, json=resource, headers=headers)

    def capability_statement(self) -> dict[str, Any]:
        security: dict[str, Any] = {"cors": False}
        if self.auth == "smart":
            security["extension"] = [
                {
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": f"{self.base_url}/token"}],
                }
            ]
        writes = {"Patient": ("create",), "Appointment": ("create", "update")}
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-01-01",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "security": security,
                    "resource": [
                        {
                            "type": kind,
                            "versioning": "versioned",
                            "conditionalCreate": kind == "Patient",
                            "interaction": [
                                {"code": c} for c in ("read", "search-type", *writes.get(kind, ()))
                            ],
                            "searchParam": [
                                {"name": name, "type": t} for name, t in params.items()
                            ],
                        }
                        for kind, params in SEARCH_PARAMS.items()
                    ],
                }
            ],
        }

    def _refused(self, request: httpx.Request) -> httpx.Response | None:
        if self.auth == "none":
            return None
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        if self.auth == "bearer" and token == self.static_token:
            return None
        expires = self.tokens.get(token)
        if self.auth == "smart" and expires is not None and expires > self.clock():
            return None
        return _outcome(401, "login", "a valid bearer token is required")

    def _token(self, request: httpx.Request) -> httpx.Response:
        """SMART Backend Services: a client assertion signed with the client's key."""
        form = dict(parse_qsl(request.content.decode()))
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return httpx.Response(400, json={"error": "invalid_request"})
        try:
            claims = jwt.decode(
                form.get("client_assertion", ""),
                self.public_key,
                algorithms=["RS384", "ES384"],
                audience=f"{self.base_url}/token",
                issuer=self.client_id,
                # Expiry is judged by this server's clock (injected in tests), below.
                options={
                    "require": ["exp", "jti", "sub"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            return httpx.Response(401, json={"error": "invalid_client"})
        if (
            claims["sub"] != self.client_id
            or claims["jti"] in self.assertions
            or not isinstance(claims["exp"], int)
            or claims["exp"] <= self.clock()
            or claims["exp"] > self.clock() + 300
        ):
            return httpx.Response(401, json={"error": "invalid_client"})
        self.assertions.add(claims["jti"])
        token = uuid.UUID(int=self.rng.getrandbits(128)).hex
        self.tokens[token] = self.clock() + self.token_seconds
        return httpx.Response(
            200,
            json={
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.token_seconds,
                "scope": form.get("scope", ""),
            },
        )

    def _search(self, kind: str, url: httpx.URL) -> httpx.Response:
        query = list(url.params.multi_items())
        plain = dict(query)
        try:
            count = min(int(plain.get("_count", self.page_size)), 100)
            offset = int(plain.get("_offset", "0"))
        except ValueError:
            return _outcome(400, "invalid", "_count and _offset are numbers")
        snapshot = plain.get("_page")
        if snapshot is not None:
            if snapshot not in self._snapshots:
                return _outcome(410, "not-found", "the search has expired")
            _, ids = self._snapshots[snapshot]
        else:
            criteria: list[tuple[str, str, str]] = []
            for name, value in query:
                if name in ("_count", "_offset"):
                    continue
                base, _, modifier = name.partition(":")
                if base not in SEARCH_PARAMS[kind]:
                    return _outcome(400, "not-supported", f"unknown search parameter {base}")
                criteria.append((base, modifier, value))
            ids = [
                i
                for i, r in self.store[kind].items()
                if all(self._matches(kind, r, c) for c in criteria)
            ]
            snapshot = uuid.UUID(int=self.rng.getrandbits(128)).hex
            self._snapshots[snapshot] = (kind, ids)
            while len(self._snapshots) > _SNAPSHOTS:
                del self._snapshots[next(iter(self._snapshots))]
        page = ids[offset : offset + count]
        links = [{"relation": "self", "url": str(url)}]
        if offset + count < len(ids):
            params = urlencode({"_page": snapshot, "_offset": offset + count, "_count": count})
            links.append({"relation": "next", "url": f"{self.base_url}/{kind}?{params}"})
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(ids),
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{self.base_url}/{kind}/{i}",
                    "resource": self.store[kind][i],
                    "search": {"mode": "match"},
                }
                for i in page
                if i in self.store[kind]
            ],
        }
        return httpx.Response(200, json=bundle, headers={"content-type": "application/fhir+json"})

    def _matches(self, kind: str, r: dict[str, Any], criterion: tuple[str, str, str]) -> bool:
        name, modifier, value = criterion
        if name == "_id":
            return r["id"] in value.split(",")
        held: Iterable[Any] = _PATHS[kind, name](r)
        values = value.split(",")
        return any(
            _one_ok(SEARCH_PARAMS[kind][name], modifier, v, h)
            for v, h in itertools.product(values, held)
        )

    def _body(self, request: httpx.Request, kind: str) -> dict[str, Any] | httpx.Response:
        try:
            body = json.loads(request.content)
        except ValueError:
            return _outcome(400, "structure", "the body is not JSON")
        if not isinstance(body, dict) or body.get("resourceType") != kind:
            return _outcome(400, "invalid", f"the body is not a {kind}")
        return body

    def _stamp(self, resource: dict[str, Any], version: int) -> dict[str, Any]:
        moment = datetime.fromtimestamp(self.clock(), UTC).isoformat().replace("+00:00", "Z")
        return {**resource, "meta": {"versionId": str(version), "lastUpdated": moment}}

    def _create(self, kind: str, request: httpx.Request) -> httpx.Response:
        body = self._body(request, kind)
        if isinstance(body, httpx.Response):
            return body
        condition = request.headers.get("if-none-exist")
        if condition:
            url = httpx.URL(f"{self.base_url}/{kind}?{condition}")
            found = self._search(kind, url)
            if found.status_code != 200:
                return found
            entries = found.json()["entry"]
            if len(entries) > 1:
                return _outcome(412, "duplicate", "the condition matches several resources")
            if entries:
                return self._answer(200, entries[0]["resource"])
        made = self._stamp({**body, "id": uuid.UUID(int=self.rng.getrandbits(128)).hex}, 1)
        self.store[kind][made["id"]] = made
        return self._answer(201, made)

    def _update(self, kind: str, fhir_id: str, request: httpx.Request) -> httpx.Response:
        body = self._body(request, kind)
        if isinstance(body, httpx.Response):
            return body
        current = self.store[kind].get(fhir_id)
        if current is None:
            return _outcome(404, "not-found", f"{kind}/{fhir_id} is not known")
        if body.get("id") != fhir_id:
            return _outcome(400, "invalid", "the body's id is not the one in the URL")
        version = int(current["meta"]["versionId"])
        wanted = request.headers.get("if-match")
        if wanted is not None and wanted.strip().removeprefix("W/").strip('"') != str(version):
            return _outcome(412, "conflict", "the version named in If-Match is not current")
        made = self._stamp(body, version + 1)
        self.store[kind][fhir_id] = made
        return self._answer(200, made)
