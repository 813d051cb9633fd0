"""``compose.yaml``: a file Compose reads (the Compose Specification's schema, as ``make
lint`` checks it), whose configuration ``serve`` takes with two workers on every
interface, with the sandboxes' own credentials; and the image checks its health on
``/healthz``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from adapter.cli import _network_checks, _origin_checks
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_compose", ROOT / "deploy/check_compose.py")
assert spec is not None and spec.loader is not None
check_compose = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_compose)

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_yaml_meets_the_compose_specification():
    assert check_compose.problems(ROOT / "compose.yaml") == []


def test_a_mistake_is_named_by_the_schema(tmp_path):
    wrong = tmp_path / "compose.yaml"
    wrong.write_text("services:\n  web:\n    image: x\n    portz: ['8080:8080']\n")
    [problem] = check_compose.problems(wrong)
    assert problem == "compose.yaml: services/web: 'portz' does not match any of the regexes: '^x-'"
    assert check_compose.main([str(wrong)]) == 1


def test_the_service_two_workers_redis_and_both_sandboxes_each_its_own():
    services = COMPOSE["services"]
    assert set(services) == {"fhir-adapter", "nyra-sandbox", "leyr-sandbox", "redis"}
    assert services["fhir-adapter"]["command"] == ["--workers", "2"]
    for vendor in ("nyra", "leyr"):
        assert services[f"{vendor}-sandbox"]["entrypoint"][:3] == [
            "fhir-adapter",
            "sandbox",
            vendor,
        ]


def test_serve_takes_its_configuration_with_two_workers_on_every_interface():
    environment = dict(COMPOSE["services"]["fhir-adapter"]["environment"])
    environment["DEMO_CLIENT_SECRET"] = "a-demo-secret-for-this-test-0123"
    settings = load_settings(ROOT / "deploy/compose.toml", environment)
    _network_checks(settings, 2)
    _origin_checks(settings, "0.0.0.0")
    assert settings.redis_url == "redis://redis:6379/0"
    # The credentials are the ones the sandboxes make from their seed.
    nyra = NyraSandbox(seed=7).api_keys()[0]
    assert settings.sources["nyra-sandbox"]["keys"] == [
        {"key": nyra.key, "secret": nyra.secret, "token": nyra.token}
    ]
    leyr = LeyrSandbox(seed=7).defaults()
    source = settings.sources["leyr-sandbox"]
    assert (source["client_id"], source["client_secret"]) == (
        leyr["client_id"],
        leyr["client_secret"],
    )


def test_the_image_checks_its_health_on_healthz():
    dockerfile = (ROOT / "Dockerfile").read_text()
    check = dockerfile[dockerfile.index("\nHEALTHCHECK ") :].split("\n\n")[0]
    command = check.strip().replace("\\\n", " ").splitlines()[0]
    assert "http://127.0.0.1:8080/healthz" in command
