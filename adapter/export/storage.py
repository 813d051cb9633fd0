"""Export files on S3-compatible object storage (AWS S3, MinIO, Ceph, IBM COS...).

``[export] storage = "s3://bucket/prefix"``: a job's files are the objects
``prefix/<job id>/<file name>``. The client is aioboto3's (botocore underneath): it takes
its credentials from the standard AWS sources (``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``, a profile, an instance role), its endpoint from
``[export] endpoint_url`` or ``AWS_ENDPOINT_URL``, and retries what the service says is
temporary.

Every call that fails raises :class:`StorageError`, whose text names the operation and the
service's error code only: never a key, an endpoint, a credential or a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

__all__ = ["ObjectStorage", "StorageError", "StorageLocation", "parse_location"]

T = TypeVar("T")
_URL = re.compile(r"s3://(?P<bucket>[a-z0-9.-]{3,63})(?:/(?P<prefix>.*))?")


class StorageError(Exception):
    """Object storage refused or did not answer; ``code`` is the service's error code (or
    the kind of failure), ``missing`` whether the object or upload does not exist."""

    def __init__(self, operation: str, code: str) -> None:
        super().__init__(f"object storage: {operation} failed ({code})")
        self.operation = operation
        self.code = code

    @property
    def missing(self) -> bool:
        return self.code in {"NoSuchKey", "NoSuchUpload", "404", "NotFound"}


@dataclass(frozen=True)
class StorageLocation:
    bucket: str
    prefix: str  # without slashes at either end; may be empty

    def key(self, *names: str) -> str:
        return "/".join(n for n in (self.prefix, *names) if n)


def parse_location(url: str) -> StorageLocation:
    """``s3://bucket/prefix`` as bucket and prefix (ValueError for anything else)."""
    found = _URL.fullmatch(url)
    if found is None:
        raise ValueError('object storage must be given as "s3://bucket/prefix"')
    return StorageLocation(found["bucket"], (found["prefix"] or "").strip("/"))


class ObjectStorage:
    """One bucket and prefix; its client is made at first use, in the running loop."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.location = parse_location(url)
        self.endpoint_url = endpoint_url
        self.region = region
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def client(self) -> Any:
        async with self._lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                config = Config(
                    # Path-style addressing: what S3-compatible services all take.
                    s3={"addressing_style": "path"} if self.endpoint_url else {},
                    retries={"max_attempts": 4, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=60,
                    signature_version="s3v4",
                )
                self._client = await stack.enter_async_context(
                    aioboto3.Session().client(
                        "s3",
                        endpoint_url=self.endpoint_url,
                        region_name=self.region or "us-east-1",
                        config=config,
                    )
                )
                self._stack = stack
            return self._client

    async def aclose(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            with contextlib.suppress(Exception):
                await stack.aclose()

    async def _call(self, operation: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code") or "error")
            raise StorageError(operation, code) from None
        except (TimeoutError, BotoCoreError, OSError) as exc:
            raise StorageError(operation, type(exc).__name__) from None

    # -- multipart uploads ------------------------------------------------------------------

    async def begin(self, key: str) -> str:
        """A new multipart upload of ``key``; its upload id."""
        s3 = await self.client()
        answer = await self._call(
            "starting an upload",
            s3.create_multipart_upload(
                Bucket=self.location.bucket, Key=key, ContentType="application/fhir+ndjson"
            ),
        )
        return str(answer["UploadId"])

    async def put_part(self, key: str, upload: str, number: int, body: bytes) -> str:
        """Part ``number`` of the upload (sent again, it replaces the first); its ETag."""
        s3 = await self.client()
        answer = await self._call(
            "uploading a part",
            s3.upload_part(
                Bucket=self.location.bucket,
                Key=key,
                UploadId=upload,
                PartNumber=number,
                Body=body,
            ),
        )
        return str(answer["ETag"])

    async def complete(self, key: str, upload: str, parts: Sequence[tuple[int, str]]) -> None:
        s3 = await self.client()
        await self._call(
            "completing an upload",
            s3.complete_multipart_upload(
                Bucket=self.location.bucket,
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
            ),
        )

    async def abort(self, key: str, upload: str) -> None:
        s3 = await self.client()
        with contextlib.suppress(StorageError):
            await self._call(
                "aborting an upload",
                s3.abort_multipart_upload(Bucket=self.location.bucket, Key=key, UploadId=upload),
            )

    async def abort_all(self, key: str) -> None:
        """Abort every upload of ``key`` still open."""
        s3 = await self.client()
        uploads = await self._call(
            "listing uploads",
            s3.list_multipart_uploads(Bucket=self.location.bucket, Prefix=key),
        )
        for upload in uploads.get("Uploads", []):
            if upload["Key"] == key:
                await self.abort(key, upload["UploadId"])

    # -- whole objects ----------------------------------------------------------------------

    async def put(self, key: str, body: bytes, content_type: str) -> None:
        s3 = await self.client()
        await self._call(
            "writing an object",
            s3.put_object(
                Bucket=self.location.bucket, Key=key, Body=body, ContentType=content_type
            ),
        )

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, None when there is none."""
        s3 = await self.client()
        try:
            answer = await self._call(
                "reading an object's size", s3.head_object(Bucket=self.location.bucket, Key=key)
            )
        except StorageError as exc:
            if exc.missing:
                return None
            raise
        return int(answer["ContentLength"])

    async def chunks(self, key: str, chunk_bytes: int = 256 * 1024) -> AsyncIterator[bytes]:
        """The object's content, a chunk at a time (never the whole of it in memory)."""
        s3 = await self.client()
        answer = await self._call(
            "reading an object", s3.get_object(Bucket=self.location.bucket, Key=key)
        )
        body = answer["Body"]
        try:
            while True:
                chunk = await self._call("reading an object", body.read(chunk_bytes))
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    async def presign(self, key: str, seconds: int) -> str:
        """A URL that reads the object without credentials for ``seconds``."""
        s3 = await self.client()
        url: str = await self._call(
            "signing a URL",
            s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.location.bucket, "Key": key},
                ExpiresIn=seconds,
            ),
        )
        return url

    async def delete_under(self, prefix: str) -> None:
        """Every object under ``prefix/``, and every upload left unfinished there."""
        s3 = await self.client()
        bucket, under = self.location.bucket, f"{prefix.rstrip('/')}/"
        uploads = await self._call(
            "listing uploads", s3.list_multipart_uploads(Bucket=bucket, Prefix=under)
        )
        for upload in uploads.get("Uploads", []):
            await self.abort(upload["Key"], upload["UploadId"])
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            listing = await self._call(
                "listing objects", s3.list_objects_v2(Bucket=bucket, Prefix=under, **extra)
            )
            keys = [{"Key": o["Key"]} for o in listing.get("Contents", [])]
            if keys:
                await self._call(
                    "deleting objects",
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True}),
                )
            token = listing.get("NextContinuationToken")
            if not listing.get("IsTruncated") or not token:
                return
