"""Versions: the digest, the If-Match forms, the CapabilityStatement, the client key."""

from __future__ import annotations

import pytest

from adapter.auth.clients import load_clients
from adapter.fhir.outcome import FhirError
from adapter.fhir.versions import etag_of, parse_if_match, require_version, with_version

RESOURCE = {"resourceType": "Patient", "id": "p1", "gender": "female", "meta": {"source": "s"}}


def test_the_version_is_the_content_without_meta_and_key_order():
    versioned = with_version(RESOURCE)
    version = versioned["meta"]["versionId"]
    assert len(version) == 16 and "versionId" not in RESOURCE["meta"]
    reordered = {"gender": "female", "id": "p1", "resourceType": "Patient"}
    assert with_version(reordered)["meta"]["versionId"] == version
    dated = {**RESOURCE, "meta": {"lastUpdated": "2026-01-01T00:00:00Z"}}
    assert with_version(dated)["meta"]["versionId"] == version
    assert with_version({**RESOURCE, "gender": "male"})["meta"]["versionId"] != version
    assert etag_of(versioned) == f'W/"{version}"'


@pytest.mark.parametrize("header", ['W/"abc"', '"abc"', "abc", ' W/"abc" '])
def test_if_match_forms(header):
    assert parse_if_match(header) == "abc"


@pytest.mark.parametrize("header", ["*", '"a", "b"', '""', "W/"])
def test_if_match_that_names_no_one_version_is_400(header):
    with pytest.raises(FhirError) as caught:
        parse_if_match(header)
    assert caught.value.status == 400


def test_a_mismatch_is_412():
    version = with_version(RESOURCE)["meta"]["versionId"]
    require_version(RESOURCE, version)
    with pytest.raises(FhirError) as caught:
        require_version(RESOURCE, "0" * 16)
    assert caught.value.status == 412


def test_require_if_match_is_a_strict_boolean_client_key():
    table = {"secret": "s" * 16, "scopes": ["system/*.rs"]}
    assert not load_clients({"a": table}, ["x"])["a"].require_if_match
    assert load_clients({"a": {**table, "require_if_match": True}}, ["x"])["a"].require_if_match
    with pytest.raises(ValueError, match="require_if_match"):
        load_clients({"a": {**table, "require_if_match": "yes"}}, ["x"])
