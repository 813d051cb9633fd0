"""``fhir-adapter sandbox nyra --url ... --appointment ... --status ...``: a change made at
a running Nyra sandbox through the vendor's own API, as the hospital's front desk makes
it; the service then reads the appointment as changed."""

from __future__ import annotations

import httpx
from serving import on_a_port

from adapter.cli import main
from adapter.sandbox import NyraSandbox
from mappings import encode_id


def test_the_front_desk_cancels_an_appointment_at_the_vendor(capsys):
    sandbox = NyraSandbox(seed=7, patients=200)  # as `fhir-adapter sandbox nyra` starts it
    booked = next(a for a in sandbox.appointments if a["status"] == "BOOKED")
    fhir_id = encode_id("nyra-sandbox", booked["id"])
    with on_a_port(sandbox.app, access_log=False, lifespan="off") as base:
        code = main(["sandbox", "nyra", "--url", base, "--appointment", fhir_id,
                     "--status", "CANCELLED"])  # fmt: skip
        assert code == 0
        assert capsys.readouterr().out == f"appointment {booked['id']}: CANCELLED (at the vendor)\n"
        grant = sandbox.api_keys()[0]
        read = httpx.get(
            f"{base}/appointments/{booked['id']}",
            headers={
                "x-api-key": grant.key,
                "x-api-secret": grant.secret,
                "authorization": f"Bearer {grant.token}",
            },
            timeout=10,
        )
        assert read.json()["data"]["status"] == "CANCELLED"

        # A status the vendor does not have: its refusal, exit 1.
        code = main(["sandbox", "nyra", "--url", base, "--appointment", booked["id"],
                     "--status", "GONE"])  # fmt: skip
        assert code == 1
        assert capsys.readouterr().err.startswith("the sandbox refused (400)")


def test_the_front_desk_needs_all_three(capsys):
    assert main(["sandbox", "nyra", "--url", "http://127.0.0.1:1"]) == 2
    assert capsys.readouterr().err == "the front desk needs --url, --appointment and --status\n"
