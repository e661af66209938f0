"""A real S3 HTTP API for the tests: moto's server on a loopback port, reached through boto3 like any
S3-compatible store (no in-process patching: the store under test makes real HTTP requests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from moto.server import ThreadedMotoServer

from podci.embedded import free_port

# Dummy credentials: moto accepts any. The values are distinctive so a test can look for them.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAPODCITESTKEY0001",
    "AWS_SECRET_ACCESS_KEY": "podci-test-secret-access-key-not-real-0001",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def s3_server(port: int | None = None) -> Iterator[str]:
    """Yields the endpoint URL of a fresh, empty S3 server."""
    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def make_bucket(endpoint: str, bucket: str) -> None:
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
    )
    client.create_bucket(Bucket=bucket)
