"""fhir-adapter: the FHIR R4 facade service (all I/O lives here)."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["package_version"]


def package_version() -> str:
    """The version of fhir-adapter as installed (``0+unknown`` when run from a source tree
    that never was)."""
    try:
        return version("fhir-adapter")
    except PackageNotFoundError:
        return "0+unknown"
