"""fhir-adapter: the FHIR R4 facade service (all I/O lives here)."""
