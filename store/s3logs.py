"""The log store on S3 or anything that speaks its API (MinIO, Ceph, R2...), through boto3.

Credentials come the way boto3 finds them (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile,
an instance or pod role): podci never reads, prints or passes them on. Errors name the bucket and the
store's error code, never a request's signature.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from store.logstore import SUFFIX, LogStoreUnavailable, Tail, check_build, check_name, masked_temp

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
# An unreachable store fails a write within about a minute, so the step's retry (with its backoff)
# decides what happens next, not a socket left waiting.
_CONFIG = {"connect_timeout": 5, "read_timeout": 30, "retries": {"max_attempts": 3, "mode": "standard"}}


def _unavailable(exc: Exception, bucket: str) -> LogStoreUnavailable:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "?")
        missing = "; create it (podci does not create buckets)"
        hint = {"NoSuchBucket": missing, "404": missing, "403": "; check the credentials"}.get(code, "")
        return LogStoreUnavailable(f"the log store's bucket {bucket!r} answered {code}{hint}")
    return LogStoreUnavailable(f"the log store's bucket {bucket!r} cannot be reached: {type(exc).__name__}")


class S3LogStore:
    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self.client, self.bucket = client, bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.location = f"s3://{bucket}/{self.prefix}"

    @classmethod
    def from_url(cls, url: str, endpoint_url: str | None = None) -> S3LogStore:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        # MinIO and most S3-compatible stores answer bucket names in the path, not as host names.
        style = {"s3": {"addressing_style": "path"}} if endpoint_url else {}
        config = Config(**_CONFIG, **style)  # type: ignore[arg-type]
        client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        return cls(client, bucket, prefix)

    def _key(self, build: str, name: str) -> str:
        return f"{self.prefix}{check_build(build)}/{check_name(name)}{SUFFIX}"

    def where(self, build: str, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(build, name)}"

    def put(self, build: str, files: Mapping[str, Path], secrets: Sequence[str] = ()) -> None:
        for name, source in files.items():
            key = self._key(build, name)
            with masked_temp(source, secrets) as body:
                try:
                    self.client.put_object(
                        Bucket=self.bucket, Key=key, Body=body, ContentType="text/plain; charset=utf-8"
                    )
                except (BotoCoreError, ClientError) as exc:
                    raise _unavailable(exc, self.bucket) from exc

    def _objects(self, prefix: str) -> Iterator[tuple[str, float]]:
        """Every key under `prefix` with its last write."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"], item["LastModified"].timestamp()
        except (BotoCoreError, ClientError) as exc:
            raise _unavailable(exc, self.bucket) from exc

    def names(self, build: str) -> list[str]:
        folder = f"{self.prefix}{check_build(build)}/"
        keys = (key.removeprefix(folder) for key, _ in self._objects(folder))
        return sorted(key[: -len(SUFFIX)] for key in keys if key.endswith(SUFFIX))

    def _get(self, build: str, name: str, byte_range: str | None = None) -> tuple[bytes, int] | None:
        key = self._key(build, name)
        try:
            answer = (
                self.client.get_object(Bucket=self.bucket, Key=key, Range=byte_range)
                if byte_range
                else self.client.get_object(Bucket=self.bucket, Key=key)
            )
            data = answer["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _NOT_FOUND:
                return None
            if code == "InvalidRange":  # an empty log has no last bytes
                return b"", 0
            raise _unavailable(exc, self.bucket) from exc
        except BotoCoreError as exc:
            raise _unavailable(exc, self.bucket) from exc
        total = answer.get("ContentRange", "").rpartition("/")[2]
        return data, int(total) if total.isdigit() else len(data)

    def read(self, build: str, name: str) -> bytes | None:
        got = self._get(build, name)
        return None if got is None else got[0]

    def tail(self, build: str, name: str, size: int) -> Tail | None:
        got = self._get(build, name, f"bytes=-{max(1, size)}")
        return None if got is None else Tail(*got)

    def delete(self, build: str) -> None:
        keys = [key for key, _ in self._objects(f"{self.prefix}{check_build(build)}/")]
        for start in range(0, len(keys), 1000):  # the most one request may delete
            batch: list[ObjectIdentifierTypeDef] = [{"Key": key} for key in keys[start : start + 1000]]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except (BotoCoreError, ClientError) as exc:
                raise _unavailable(exc, self.bucket) from exc

    def builds(self) -> dict[str, float]:
        newest: dict[str, float] = {}
        for key, written in self._objects(self.prefix):
            build, slash, _ = key.removeprefix(self.prefix).partition("/")
            if slash:
                newest[build] = max(written, newest.get(build, 0.0))
        return newest

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise _unavailable(exc, self.bucket) from exc
