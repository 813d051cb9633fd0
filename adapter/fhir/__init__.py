"""FHIR-side machinery with no vendor knowledge: search requests, matching, dates."""

from adapter.fhir.search import DATE_PREFIXES, SearchParam, SearchRequest, UnsupportedParameter

__all__ = ["DATE_PREFIXES", "SearchParam", "SearchRequest", "UnsupportedParameter"]
