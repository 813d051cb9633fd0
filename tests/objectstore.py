"""An S3 service for the tests: moto in server mode on a loopback port the system picks,
a real HTTP peer that the service's own client (aioboto3) talks to, and a plain boto3
client to look at what it holds."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

__all__ = ["CREDENTIALS", "S3", "moto_on_a_port"]

# Made-up credentials for the moto server: the service reads them from the environment
# as it would real ones; the tests check they never appear in an answer.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAMOTOEXAMPLE00001",
    "AWS_SECRET_ACCESS_KEY": "moto-secret-never-shown-8d1f0c",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3:
    endpoint: str
    client: Any  # boto3's, to look at the bucket

    def bucket(self) -> str:
        """A new bucket of its own for a test."""
        name = f"export-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listing = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def uploads(self, bucket: str) -> list[str]:
        """The keys of the multipart uploads begun and not completed or aborted."""
        listing = self.client.list_multipart_uploads(Bucket=bucket)
        return sorted(u["Key"] for u in listing.get("Uploads", []))

    def read(self, bucket: str, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body


@contextlib.contextmanager
def moto_on_a_port() -> Iterator[S3]:
    """moto's S3 on 127.0.0.1, at a port the system picks, for as long as the block runs."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        yield S3(endpoint, client)
    finally:
        server.stop()
