"""The mappings package stays pure: importable without the service's I/O stack."""

import subprocess
import sys

FORBIDDEN = ("fastapi", "httpx", "adapter", "uvicorn", "starlette")


def test_mappings_import_without_fastapi_httpx_or_adapter():
    code = (
        "import sys\n"
        f"for name in {FORBIDDEN!r}:\n"
        "    sys.modules[name] = None  # any import of it now raises ImportError\n"
        "import mappings, mappings.leyr, mappings.nyra\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{FORBIDDEN!r} and sys.modules[m] is not None)\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
