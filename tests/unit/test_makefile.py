"""The Makefile's bootstrap, as a newcomer meets it: a Python too old is refused in one
clear line before anything is made, and a ``.venv`` made by another Python is made anew
(instead of failing the same way on every run until ``make clean``). ``make -n`` says what
it would do without doing it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def python_saying(folder: Path, version: str) -> Path:
    """A stand-in interpreter that answers the Makefile's version question with
    ``version``."""
    fake = folder / f"python{version}"
    fake.write_text(f"#!/bin/sh\necho {version}\n")
    fake.chmod(0o755)
    return fake


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml", "plugins/fhir-upstream/pyproject.toml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def make(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    return subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def made_venv(clone: Path, python: Path) -> None:
    """A .venv whose interpreter is ``python``, installed for both run and test, and
    newer than pyproject.toml."""
    bin_ = clone / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").symlink_to(python)
    for stamp in (".installed-run", ".installed"):
        (clone / ".venv" / stamp).touch()
    later = (clone / "pyproject.toml").stat().st_mtime + 10
    for stamp in (".installed-run", ".installed"):
        os.utime(clone / ".venv" / stamp, (later, later))


def test_a_python_older_than_3_11_is_refused_in_one_line(clone):
    old = python_saying(clone, "3.10")
    done = make(clone, "run", f"PYTHON={old}")
    assert done.returncode == 2
    assert done.stdout == ""
    assert [re.sub(r"^Makefile:[0-9]+: ", "", line) for line in done.stderr.splitlines()] == [
        f"*** Python 3.11 or later is needed; {old} is Python 3.10. "
        "Install one and name it: make run PYTHON=python3.12.  Stop."
    ]


def test_a_venv_made_by_another_python_is_made_anew(clone):
    made_venv(clone, python_saying(clone, "3.10"))
    done = make(clone, "run", f"PYTHON={sys.executable}")
    assert done.returncode == 0, done.stderr
    commands = done.stdout.splitlines()
    assert "rm -rf .venv" in commands
    assert commands.index("rm -rf .venv") < commands.index(f"{sys.executable} -m venv .venv")


def test_a_venv_made_by_this_python_is_kept(clone):
    made_venv(clone, Path(sys.executable))
    done = make(clone, "run", f"PYTHON={sys.executable}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [".venv/bin/fhir-adapter serve --host 127.0.0.1 --port 8080"]


def test_make_run_installs_what_serving_needs_and_make_test_the_rest(clone):
    done = make(clone, "run", f"PYTHON={sys.executable}")
    installs = [line for line in done.stdout.splitlines() if "pip install" in line]
    assert installs == [
        ".venv/bin/python -m pip install --quiet --disable-pip-version-check --no-compile -e ."
    ]
    done = make(clone, ".venv/.installed", f"PYTHON={sys.executable}")
    installs = [line for line in done.stdout.splitlines() if "pip install" in line]
    assert installs == [
        ".venv/bin/python -m pip install --quiet --disable-pip-version-check --no-compile -e .",
        ".venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'",
        # the connectors kept as their own packages, for the conformance suite
        ".venv/bin/python -m pip install --quiet --disable-pip-version-check "
        "-e plugins/fhir-upstream",
    ]
