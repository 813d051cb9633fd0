"""What the facade's conformance suite needs to run this connector: its harness.

Found through the entry point group ``fhir_adapter.harnesses`` under the connector's own
name; the suite builds the upstream with ``make(seed, patients)``, configures a source
with ``upstream.defaults()`` and reaches it through ``upstream.transport()``.

Two upstreams, chosen by the environment variable ``FHIR_UPSTREAM_OVER``:

- unset (or ``sandbox``): the in-process FHIR server of :mod:`.sandbox`, with a static
  bearer token;
- ``facade``: a fhir-adapter facade over that server (a hospital's facade), which the
  connector enters with SMART Backend Services (an ES384 client assertion at its
  ``/auth/token``), as a regional facade would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import httpx
import orjson

from fhir_upstream_connector.sandbox import FhirSandbox

__all__ = ["HARNESS", "FacadeUpstream", "UpstreamHarness"]

_HOSPITAL = "http://hospital.test"


def _spoiled(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "auth": {"type": "bearer", "token": "not-the-secret"}}


@cache
def _client_key() -> tuple[str, dict[str, Any]]:
    """An ES384 key made once per process: (private PEM, public JWK)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    private = ec.generate_private_key(ec.SECP384R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    jwk = orjson.loads(ECAlgorithm.to_jwk(private.public_key()))
    return pem, {**jwk, "kid": "regional", "alg": "ES384"}


class FacadeUpstream:
    """A hospital's facade (one source: the sandbox server) as the upstream."""

    def __init__(self, seed: int, patients: int) -> None:
        from adapter.app import create_app
        from adapter.auth.clients import load_clients
        from adapter.settings import Settings

        self.server = FhirSandbox(seed=seed, patients=patients)
        self.private_key, jwk = _client_key()
        clients = load_clients(
            {"regional": {"jwks": {"keys": [jwk]}, "scopes": ["system/*.cruds"]}}, ["ehr"]
        )
        settings = Settings(
            sources={"ehr": {"connector": "fhir-upstream", **self.server.defaults()}},
            clients=clients,
            cursor_key=b"h" * 32,
            token_key=b"k" * 32,
            max_vendor_calls=200,
        )
        self.app = create_app(settings, transports={"ehr": self.server.transport()})

    @property
    def appointments(self) -> list[dict[str, Any]]:
        return self.server.appointments

    def defaults(self) -> dict[str, Any]:
        return {
            "base_url": f"{_HOSPITAL}/fhir",
            "timezone": "UTC",
            "auth": {
                "type": "smart",
                "client_id": "regional",
                "private_key": self.private_key,
                "algorithm": "ES384",
                "key_id": "regional",
                "token_url": f"{_HOSPITAL}/auth/token",
                "scope": "system/*.cruds",
            },
        }

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.app)


@dataclass(frozen=True)
class UpstreamHarness:
    name: str = "fhir-upstream"
    # A bearer token has no per-resource permissions: those cases do not apply.
    without_permission: Any = None
    read_permission: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def make(seed: int, patients: int) -> FhirSandbox | FacadeUpstream:
        if os.environ.get("FHIR_UPSTREAM_OVER", "sandbox") == "facade":
            return FacadeUpstream(seed, patients)
        return FhirSandbox(seed=seed, patients=patients)

    @staticmethod
    def spoil_credentials(config: dict[str, Any]) -> dict[str, Any]:
        return _spoiled(config)


HARNESS = UpstreamHarness()
