"""The memo of mapped answers: each distinct answer mapped once, and an export's pages not
remembered at all (they are read once, and would push out what interactive reads share)."""

from __future__ import annotations

from adapter.connectors.memo import BYTES_PER_BODY_BYTE, MappedMemo, unremembered


def test_an_answer_is_mapped_once_and_an_unremembered_one_every_time():
    memo = MappedMemo(1 << 20)
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


def test_the_memo_holds_at_most_its_bytes_letting_the_least_recent_go():
    """Filled past its cap: the bytes held stay within it, the least recently used answer
    goes first, and what it counts is said (entries, bytes, hits, misses, evictions)."""
    body = b"x" * 1000
    weight = 256 + len("call-0") + len(body) * BYTES_PER_BODY_BYTE
    memo = MappedMemo(3 * weight, "src")
    for i in range(3):
        memo.get_or_map(f"call-{i}", body, lambda b: [b])
    assert (len(memo), memo.held_bytes, memo.evictions) == (3, 3 * weight, 0)
    memo.get_or_map("call-0", body, lambda b: [b])  # used again: the most recent now
    for i in range(3, 10):
        memo.get_or_map(f"call-{i}", body, lambda b: [b])
        assert memo.held_bytes <= 3 * weight
    assert (len(memo), memo.held_bytes, memo.evictions) == (3, 3 * weight, 7)
    assert memo.peek("call-0", body) is None and memo.peek("call-9", body) == [body]
    assert (memo.hits, memo.misses) == (1, 10)


def test_an_answer_larger_than_the_memo_is_mapped_and_not_kept():
    memo = MappedMemo(1000)
    built: list[bytes] = []
    for _ in range(2):
        memo.get_or_map("call", b"y" * 100, lambda b: built.append(b) or [b])
    assert (len(built), len(memo), memo.held_bytes) == (2, 0, 0)


def test_a_memo_of_zero_bytes_is_off():
    memo = MappedMemo(0)
    built: list[bytes] = []
    for _ in range(2):
        memo.get_or_map("call", b"z", lambda b: built.append(b) or [b])
    assert (len(built), len(memo)) == (2, 0)
