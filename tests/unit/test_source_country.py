"""A source's ``country``: the country of the phone numbers it holds without a country
code. Optional, checked like every key (a name, never the value), and carried to the
connectors, which match phone searches with it."""

from __future__ import annotations

import pytest
from config_files import ENV, load, problems

from adapter.connectors.config import SourceOptions, source_options
from adapter.connectors.registry import create_connector
from adapter.sandbox import LeyrSandbox, NyraSandbox
from adapter.settings import EMBEDDED_DEFAULT, load_settings

NYRA = """
[server]
open_access = true

[sources.nyra-city]
connector = "nyra"
base_url = "https://server.nyraai.io/api/external"
timezone = "Asia/Kolkata"
keys = [{ key = "${NYRA_KEY}", secret = "${NYRA_SECRET}", token = "${NYRA_TOKEN}" }]
"""


def test_a_country_is_optional_and_carried(tmp_path):
    assert source_options(load(tmp_path, NYRA).sources["nyra-city"]).country is None
    settings = load(tmp_path, NYRA + 'country = "IN"\n')
    assert source_options(settings.sources["nyra-city"]) == SourceOptions(country="IN")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            'country = "in"',
            "[sources.nyra-city] country: not an ISO 3166-1 alpha-2 country code with a "
            "telephone numbering plan (did you mean 'IN'?)",
        ),
        (
            'country = "XX"',
            "[sources.nyra-city] country: not an ISO 3166-1 alpha-2 country code with a "
            "telephone numbering plan",
        ),
        ("country = 91", "[sources.nyra-city] country: expected a string, got an integer"),
        ('contry = "IN"', "[sources.nyra-city]: unknown key 'contry' (did you mean 'country'?)"),
    ],
)
def test_a_wrong_country_is_named(tmp_path, line, problem):
    assert problems(tmp_path, NYRA + line + "\n") == [problem]


def test_a_country_from_the_environment_is_checked_never_quoted(tmp_path):
    text = NYRA + 'country = "${NYRA_COUNTRY}"\n'
    assert (
        source_options(
            load(tmp_path, text, {**ENV, "NYRA_COUNTRY": "IN"}).sources["nyra-city"]
        ).country
        == "IN"
    )
    found = problems(tmp_path, text, {**ENV, "NYRA_COUNTRY": "Zq-secretish"})
    assert found and all("Zq-secretish" not in p and "country" in p for p in found)


def test_the_embedded_sandboxes_name_their_countries():
    sources = EMBEDDED_DEFAULT["sources"]
    assert (sources["leyr-sandbox"]["country"], sources["nyra-sandbox"]["country"]) == ("SE", "IN")
    settings = load_settings(None, {})
    assert source_options(settings.sources["nyra-sandbox"]).country == "IN"


def test_the_connectors_hold_their_country():
    leyr, nyra = LeyrSandbox(seed=1, patients=1), NyraSandbox(seed=1, patients=1)
    sweden = {"connector": "leyr", **leyr.defaults(), "country": "SE"}
    made = [
        create_connector("l", sweden, transport=leyr.transport()),
        create_connector("n", {"connector": "nyra", **nyra.defaults()}, transport=nyra.transport()),
    ]
    assert [getattr(c, "country", "?") for c in made] == ["SE", None]
