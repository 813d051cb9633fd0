"""The memo of mapped answers: each distinct answer mapped once, and an export's pages not
remembered at all (they are read once, and would push out what interactive reads share)."""

from __future__ import annotations

from adapter.connectors.memo import MappedMemo, unremembered


def test_an_answer_is_mapped_once_and_an_unremembered_one_every_time():
    memo = MappedMemo(max_resources=100)
    built: list[bytes] = []

    def build(body: bytes) -> list[bytes]:
        built.append(body)
        return [body]

    assert memo.get_or_map("call", b"a", build) == [b"a"]
    assert memo.get_or_map("call", b"a", build) == [b"a"]
    assert built == [b"a"]  # the second was remembered
    with unremembered():
        assert memo.peek("call", b"a") is None  # not even looked up
        memo.get_or_map("call", b"b", build)
        memo.get_or_map("call", b"b", build)
    assert built == [b"a", b"b", b"b"]
    assert memo.peek("call", b"b") is None  # nothing kept from within
    assert memo.peek("call", b"a") == [b"a"]  # what was kept before stays
