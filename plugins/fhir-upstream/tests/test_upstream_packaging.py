"""The plugin stands apart from the core: its own package, found by the entry point, and
never inside the core's wheel."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

from fhir_upstream_connector import FhirUpstreamConnector
from setuptools import find_packages

from adapter.connectors.registry import available, connector_class

ROOT = Path(__file__).resolve().parents[3]


def test_the_core_wheel_holds_no_plugin():
    """What the core's wheel packs is what its [tool.setuptools.packages.find] finds: the
    core's packages only, nothing from plugins/."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    packed = find_packages(
        where=str(ROOT), include=find["include"], exclude=find.get("exclude", ())
    )
    assert packed, "the core packs nothing?"
    assert {p.split(".")[0] for p in packed} == {"adapter", "mappings"}
    assert not any(p.startswith(("fhir_upstream_connector", "plugins")) for p in packed)


def test_the_connector_is_registered_by_its_own_package():
    assert "fhir-upstream" in available()
    assert connector_class("fhir-upstream") is FhirUpstreamConnector
    (entry,) = [
        e for e in entry_points(group="fhir_adapter.connectors") if e.name == "fhir-upstream"
    ]
    assert entry.dist is not None and entry.dist.name == "fhir-adapter-fhir-upstream"
    (harness,) = [
        e for e in entry_points(group="fhir_adapter.harnesses") if e.name == "fhir-upstream"
    ]
    assert harness.load().make is not None


def test_the_core_never_imports_the_plugin():
    """The import contract (lint-imports) says so for imports; nothing names it either."""
    for path in [*(ROOT / "adapter").rglob("*.py"), *(ROOT / "mappings").rglob("*.py")]:
        assert "fhir_upstream_connector" not in path.read_text(), path
