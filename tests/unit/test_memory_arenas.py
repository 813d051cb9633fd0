"""``serve`` holds the C allocator to a few arenas, unless the operator said otherwise."""

from __future__ import annotations

import os
import platform

from adapter.ops.memory import ARENAS, limit_arenas


def test_an_operators_own_setting_is_left_as_it_is(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert limit_arenas() is False
    assert os.environ["MALLOC_ARENA_MAX"] == "8"


def test_without_one_this_process_and_its_workers_get_two(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    took = limit_arenas()
    assert os.environ["MALLOC_ARENA_MAX"] == str(ARENAS) == "2"  # read by workers at start
    assert took is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
