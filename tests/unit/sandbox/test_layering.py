"""The simulators stand apart from the facade: adapter.sandbox imports no other part of
adapter, so a vendor simulator never borrows the code it is there to test."""

from __future__ import annotations

import ast
from pathlib import Path

import adapter.sandbox

ROOT = Path(adapter.sandbox.__file__).parent


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module or "")
    return names


def test_sandbox_imports_nothing_else_of_adapter():
    outside = {
        f"{path.relative_to(ROOT.parent.parent)}: {name}"
        for path in ROOT.rglob("*.py")
        for name in _imported(path)
        if (name == "adapter" or name.startswith("adapter."))
        and not (name == "adapter.sandbox" or name.startswith("adapter.sandbox."))
    }
    assert not outside
