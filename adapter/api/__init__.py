"""The HTTP face: the request guard, the FHIR routes, the token endpoint."""
