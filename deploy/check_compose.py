"""``compose.yaml`` checked against the Compose Specification's JSON schema
(``deploy/compose-spec.json``, from github.com/compose-spec/compose-spec, Apache-2.0):
``make lint`` runs it, so no Docker is needed to know the file is one Compose reads.

    python deploy/check_compose.py [compose.yaml]

Exit 0 when it is valid; else each problem on a line (its place in the file, then what
is wrong) and exit 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "compose-spec.json"


def problems(path: Path) -> list[str]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{path.name}: {'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    ]


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else HERE.parent / "compose.yaml"
    found = problems(path)
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
