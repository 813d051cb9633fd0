"""Export files as multipart uploads (adapter.export.outputs): whatever the sizes of the
writes, wherever the checkpoints fall and wherever a run stops, the object completed is
exactly the bytes written, each once (against moto on a loopback port, with S3's real
5 MiB least part size)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import tempfile
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from objectstore import CREDENTIALS, moto_on_a_port
from services import REDIS_URL, aforget, namespace, needs_redis

from adapter.export.engine import FileState
from adapter.export.outputs import FileTails, ObjectOutput, ObjectWriter, RedisTails
from adapter.export.storage import ObjectStorage, StorageError, parse_location

PART = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def s3():
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        with moto_on_a_port() as service:
            yield service


def chunk(index: int, size: int) -> bytes:
    """``size`` bytes that say which write they came from: a misplaced one shows."""
    line = f"{index:08d}".encode() * (size // 8 + 1)
    return line[: size - 1] + b"\n"


writes = st.lists(st.integers(64 * 1024, 3 * 1024 * 1024), min_size=1, max_size=7)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking megabytes is slow
)
@given(sizes=writes, data=st.data())
def test_a_file_stopped_anywhere_resumes_into_exactly_its_bytes(s3, sizes, data):
    checkpoints = data.draw(st.sets(st.integers(0, len(sizes) - 1)), label="checkpoints")
    stop = data.draw(st.one_of(st.none(), st.integers(0, len(sizes) - 1)), label="stop at")
    chunks = [chunk(i, n) for i, n in enumerate(sizes)]
    bucket = s3.bucket()
    with tempfile.TemporaryDirectory() as folder:
        done = asyncio.run(_write(s3, bucket, Path(folder), chunks, checkpoints, stop))
    assert s3.read(bucket, "x/job/f.ndjson") == b"".join(chunks)
    assert (done.count, done.bytes, done.sealed) == (len(chunks), sum(sizes), True)
    assert len(done.parts) == parts_of(sizes)
    assert s3.uploads(bucket) == []


def parts_of(sizes: list[int]) -> int:
    """The parts: one each time the bytes not yet sent reach a part's size, and the rest."""
    parts = pending = 0
    for size in sizes:
        pending += size
        if pending >= PART:
            parts, pending = parts + 1, 0
    return parts + 1 if pending or not parts else parts


async def _write(s3, bucket, folder, chunks, checkpoints, stop) -> FileState:
    storage = ObjectStorage(f"s3://{bucket}/x", endpoint_url=s3.endpoint)
    tails = FileTails(folder)
    try:
        file = FileState("f.ndjson")
        writer = ObjectWriter(storage, tails, "job", part_bytes=PART)
        saved, resume_at = copy.deepcopy(file), 0
        for index, data in enumerate(chunks):
            await writer.append(file, [data])
            if index == stop:
                break  # stopped before its checkpoint: what came after the last is lost
            if index in checkpoints:
                saved, resume_at = copy.deepcopy(file), index + 1
                await writer.settle()
        else:
            saved, resume_at = file, len(chunks)
        file = FileState(**dataclasses.asdict(saved))  # as a store gives it back
        writer = ObjectWriter(storage, tails, "job", part_bytes=PART)
        await writer.truncate(file)
        for data in chunks[resume_at:]:
            await writer.append(file, [data])
        await writer.seal(file)
        await writer.seal(file)  # twice is harmless
        return file
    finally:
        await storage.aclose()


def test_a_seal_completed_before_the_stop_is_not_a_failure(s3, tmp_path):
    bucket = s3.bucket()

    async def run() -> FileState:
        storage = ObjectStorage(f"s3://{bucket}/x", endpoint_url=s3.endpoint)
        try:
            file = FileState("f.ndjson")
            writer = ObjectWriter(storage, FileTails(tmp_path), "job", part_bytes=PART)
            await writer.append(file, [b"a\n", b"b\n"])
            before = copy.deepcopy(file)
            await writer.seal(file)  # completed; then stopped before the checkpoint
            again = ObjectWriter(storage, FileTails(tmp_path), "job", part_bytes=PART)
            await again.seal(before)
            return before
        finally:
            await storage.aclose()

    assert run_and(run).sealed is True
    assert s3.read(bucket, "x/job/f.ndjson") == b"a\nb\n"


def run_and(make):
    return asyncio.run(make())


def test_cancel_deletes_the_objects_and_the_unfinished_uploads(s3, tmp_path):
    bucket = s3.bucket()

    async def run() -> None:
        storage = ObjectStorage(f"s3://{bucket}/x", endpoint_url=s3.endpoint)
        output = ObjectOutput(storage, FileTails(tmp_path))
        try:
            writer = output.writer("job")
            whole, open_ = FileState("a.ndjson"), FileState("b.ndjson")
            await writer.append(whole, [b"1\n"])
            await writer.seal(whole)
            await writer.append(open_, [b"2\n"])
            other = output.writer("other")
            kept = FileState("c.ndjson")
            await other.append(kept, [b"3\n"])
            await other.seal(kept)
            await output.delete("job")
        finally:
            await storage.aclose()

    run_and(run)
    assert s3.keys(bucket) == ["x/other/c.ndjson"]
    assert s3.uploads(bucket) == []
    assert not (tmp_path / "job").exists()


def test_storage_errors_name_the_operation_and_code_only(s3):
    async def run() -> StorageError:
        storage = ObjectStorage("s3://no-such-bucket/x", endpoint_url=s3.endpoint)
        try:
            await storage.begin("x/job/f.ndjson")
        except StorageError as exc:
            return exc
        finally:
            await storage.aclose()
        raise AssertionError("no error")

    error = run_and(run)
    assert str(error) == "object storage: starting an upload failed (NoSuchBucket)"
    assert error.__cause__ is None and error.__suppress_context__


def test_an_unreachable_endpoint_is_a_storage_error(s3):
    async def run() -> str:
        # Port 9 on loopback (discard): nothing listens there.
        storage = ObjectStorage("s3://bucket/x", endpoint_url="http://127.0.0.1:9")
        try:
            await storage.begin("x/f")
        except StorageError as exc:
            return str(exc)
        finally:
            await storage.aclose()
        raise AssertionError("no error")

    said = run_and(run)
    assert said == "object storage: starting an upload failed (EndpointConnectionError)"


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://exports", "exports", ""),
        ("s3://exports/", "exports", ""),
        ("s3://exports/a/b/", "exports", "a/b"),
    ],
)
def test_locations(url, bucket, prefix):
    location = parse_location(url)
    assert (location.bucket, location.prefix) == (bucket, prefix)
    assert location.key("job", "f.ndjson") == "/".join(p for p in (prefix, "job", "f.ndjson") if p)


@pytest.mark.parametrize("url", ["s3://", "s3://Ex", "http://bucket/x", "s3:/bucket"])
def test_other_locations_are_refused(url):
    with pytest.raises(ValueError, match=r"s3://bucket/prefix"):
        parse_location(url)


@needs_redis
def test_redis_tails_append_cut_back_and_drop():
    prefix = namespace()
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    tails = RedisTails(client, prefix)

    async def run() -> list[bytes]:
        try:
            seen = []
            await tails.append("job", "f.1", b"abc")
            await tails.append("job", "f.1", b"def")
            seen.append(await tails.read("job", "f.1", 6))
            await tails.truncate("job", "f.1", 4)
            seen.append(await tails.read("job", "f.1", 100))
            await tails.append("job", "g.1", b"x")
            await tails.drop_job("job")
            seen.append(await tails.read("job", "f.1", 100) + await tails.read("job", "g.1", 9))
            with pytest.raises(RuntimeError, match=r"the buffer of f\.1 is missing"):
                await tails.truncate("job", "f.1", 2)
            return seen
        finally:
            await aforget(client, prefix)
            await client.aclose()

    assert run_and(run) == [b"abcdef", b"abcd", b""]
