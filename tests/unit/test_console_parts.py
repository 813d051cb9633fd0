"""The console's parts on their own: the activity counts (per minute, per client, the
recent errors; summed across workers through Redis), the sessions, the operators'
password hashes, the configuration's redaction and the charts' scale."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from services import REDIS_URL, aforget, namespace, needs_redis

from adapter.auth.operators import check_password, hash_password, load_operators
from adapter.cli import main
from adapter.console.chart import _nice
from adapter.console.sessions import IDLE_SECONDS, MAX_SECONDS, MemorySessions, RedisSessions
from adapter.console.views import REDACTED, _redacted, mask_endpoint
from adapter.ops.activity import ERRORS, MINUTES, Activity

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_activity_counts_per_minute_and_per_client():
    clock = Clock(60 * 1000 + 5)
    counts = Activity(clock)
    counts.vendor_call("nyra-a")
    counts.vendor_call("nyra-a")
    counts.answered("acme", 200, 0.010)
    counts.answered("acme", 429, 0.030)
    counts.answered(None, 401, 0.001)
    counts.token_issued("acme")
    clock.now += 60
    counts.vendor_call("leyr-b")
    figures = counts.local()
    assert figures.minutes == {
        1000: {
            "calls:nyra-a": 2,
            "answers": 3,
            "answer_ms": 41.0,
            "answer_max_ms": 30.0,
        },
        1001: {"calls:leyr-b": 1},
    }
    assert figures.clients == {
        "acme": {"requests": 2, "401": 0, "403": 0, "429": 1, "tokens": 1},
        "-": {"requests": 1, "401": 1, "403": 0, "429": 0, "tokens": 0},
    }


def test_activity_keeps_the_last_hour_and_the_last_errors():
    clock = Clock(0)
    counts = Activity(clock)
    for minute in range(3 * MINUTES):
        clock.now = minute * 60
        counts.vendor_call("s")
    assert sorted(counts.local().minutes) == list(range(2 * MINUTES, 3 * MINUTES))
    for i in range(ERRORS + 50):
        counts.error(503, "transient", "VendorUnavailable", "s", f"search {i}")
    errors = counts.local().errors
    assert len(errors) == ERRORS
    assert errors[0]["where"] == f"search {ERRORS + 49}"
    assert set(errors[0]) == {"at", "status", "code", "kind", "source", "where"}


@needs_redis
async def test_two_workers_counts_are_summed_through_redis():
    prefix = namespace() + "console"
    redis = aioredis.Redis.from_url(REDIS_URL)
    clock = Clock(60 * 2000)
    one, two = Activity(clock, prefix), Activity(clock, prefix)
    try:
        one.vendor_call("nyra-a")
        one.answered("acme", 403, 0.002)
        one.error(502, "processing", "MalformedResponse", "nyra-a", "search of nyra-a")
        two.vendor_call("nyra-a")
        two.token_issued("acme")
        await one.flush(redis)
        seen = await two.shared(redis)
        assert seen.minutes == {
            2000: {"calls:nyra-a": 2.0, "answers": 1.0, "answer_ms": 2.0},
        }
        assert seen.clients == {"acme": {"requests": 1, "401": 0, "403": 1, "429": 0, "tokens": 1}}
        assert [(e["status"], e["kind"]) for e in seen.errors] == [(502, "MalformedResponse")]
        # Flushed counts are not flushed twice.
        again = await one.shared(redis)
        assert again.minutes == seen.minutes and again.clients == seen.clients
    finally:
        await aforget(redis, prefix)
        await redis.aclose()


async def test_memory_sessions_end_when_idle_when_old_and_at_log_out():
    clock = Clock()
    sessions = MemorySessions(clock, limit=2)
    first, session = await sessions.open("ann")
    assert (await sessions.get(first)) == session
    clock.now += IDLE_SECONDS - 1
    assert (await sessions.get(first)) == session  # used: idle again from now
    clock.now += IDLE_SECONDS + 1
    assert await sessions.get(first) is None
    second, _ = await sessions.open("ann")
    for _ in range(MAX_SECONDS // (IDLE_SECONDS - 1)):
        clock.now += IDLE_SECONDS - 1
        await sessions.get(second)
    clock.now += IDLE_SECONDS - 1
    assert await sessions.get(second) is None
    third, _ = await sessions.open("bob")
    await sessions.close(third)
    assert await sessions.get(third) is None
    # At most ``limit``: the least recently used goes first.
    ids = [(await sessions.open(name))[0] for name in ("a", "b", "c")]
    assert [await sessions.get(i) is not None for i in ids] == [False, True, True]


@needs_redis
async def test_redis_sessions_are_keyed_by_a_digest_and_end_at_log_out():
    prefix = namespace() + "console:session:"
    redis = aioredis.Redis.from_url(REDIS_URL)
    sessions = RedisSessions(redis, prefix=prefix)
    try:
        session_id, session = await sessions.open("ann")
        assert await sessions.get(session_id) == session
        keys = [key async for key in redis.scan_iter(f"{prefix}*")]
        assert keys == [(prefix + hashlib.sha256(session_id.encode()).hexdigest()).encode()]
        assert 0 < await redis.ttl(keys[0]) <= IDLE_SECONDS
        await sessions.close(session_id)
        assert await sessions.get(session_id) is None
    finally:
        await aforget(redis, prefix)
        await redis.aclose()


def test_operator_passwords_scrypt_and_pbkdf2():
    pbkdf2 = base64.b64encode(hashlib.pbkdf2_hmac("sha256", b"s3cret", b"salt", 1000)).decode()
    operators, problems = load_operators(
        {
            "ann": {"password_hash": hash_password("hunter2")},
            "bob": {"password_hash": f"pbkdf2_sha256$1000$salt${pbkdf2}"},
        }
    )
    assert problems == []
    assert check_password(operators, "ann", "hunter2")
    assert not check_password(operators, "ann", "hunter3")
    assert check_password(operators, "bob", "s3cret")
    assert not check_password(operators, "carol", "hunter2")
    assert "hunter2" not in repr(operators) and "scrypt" not in repr(operators)


def test_operator_problems_name_the_operator_never_the_hash():
    _, problems = load_operators(
        {"ann": {"password_hash": "md5$abc"}, "b b": {"password_hash": "x"}, "carol": {}}
    )
    assert problems == [
        "[operators.ann] password_hash: not a scrypt$N$r$p$SALT$HASH or "
        "pbkdf2_sha256$ITERATIONS$SALT$HASH hash",
        "[operators.b b]: an operator's name is 1-64 letters, digits or _.@-",
        "[operators.carol] password_hash is required",
    ]


def test_configuration_is_shown_with_its_secrets_redacted():
    source = {
        "connector": "nyra",
        "keys": [{"key": "k-1", "secret": "s-1", "token": "t-1"}],
        "client_secret": "cs",
        "sandbox": {"keys": 3, "seed": 7},
        "base_url": "https://server.example/api",
    }
    assert _redacted(source) == {
        "connector": "nyra",
        "keys": REDACTED,
        "client_secret": REDACTED,
        "sandbox": {"keys": 3, "seed": 7},
        "base_url": "https://server.example/api",
    }


def test_an_endpoint_is_masked_past_its_host():
    assert mask_endpoint("https://hooks.example.org/a/b?token=x") == "https://hooks.example.org/…"
    assert mask_endpoint("http://127.0.0.1:8099/hook") == "http://127.0.0.1:8099/…"
    assert mask_endpoint("http://[::1") == "…"


@given(st.floats(min_value=1e-6, max_value=1e12))
def test_a_charts_scale_is_round_and_holds_its_top(top):
    scale = _nice(top)
    assert top <= scale < 10 * top
    mantissa = scale / 10 ** (len(str(int(scale))) - 1) if scale >= 1 else None
    if mantissa is not None:
        assert round(mantissa, 9) in (1, 2, 5, 10)


def test_hash_password_prints_a_hash_the_settings_take(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a password\n"))
    assert main(["hash-password"]) == 0
    printed = capsys.readouterr().out.strip()
    operators, problems = load_operators({"ann": {"password_hash": printed}})
    assert problems == [] and check_password(operators, "ann", "a password")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["hash-password"]) == 2
