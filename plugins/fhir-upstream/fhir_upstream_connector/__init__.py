"""Any FHIR R4 server as a source of the fhir-adapter facade.

Installed beside the facade, it registers the connector ``fhir-upstream`` (entry point
group ``fhir_adapter.connectors``); a source then names it::

    [sources.city-hospital]
    connector = "fhir-upstream"
    base_url = "https://ehr.example.org/fhir"
    auth = {type = "bearer", token = "${CITY_EHR_TOKEN}"}

See docs/connectors.md for the guide to writing a connector, with this one as the example.
"""

from fhir_upstream_connector.connector import SOURCE_KEYS, FhirUpstreamConnector

__all__ = ["SOURCE_KEYS", "FhirUpstreamConnector"]
