"""A build's finished logs, kept where every replica reads them: a directory or an S3-compatible bucket.

Workers put a build's logs here once they are final; the pages read them from here; the garbage
collector deletes them. So the API and the workers share nothing but Redis and this store, and no
volume has to be mounted by both. A log is named as in the record (`tests`, `containers/web`) and
kept as `<build>/<name>.log`, the layout the state directory's `logs` always had.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

SUFFIX = ".log"
_BUILD = re.compile(r"[a-z0-9][a-z0-9-]*")
_PART = re.compile(r"[A-Za-z0-9_.@+-]+")


class LogStoreUnavailable(RuntimeError):
    """The store did not answer (down, unreachable, 5xx, disk error): later may work; nothing is lost."""


@dataclass(frozen=True)
class Tail:
    data: bytes  # the last bytes asked for (or all of a shorter log)
    size: int  # the whole log's size, so a reader can say what it left out


class LogStore(Protocol):
    location: str  # what the record says the logs are kept in (never holds a credential)

    def where(self, build: str, name: str) -> str:
        """One log's address in the store, for the record: a path or an s3:// URL."""
        ...

    def put(self, build: str, files: Mapping[str, Path], secrets: Sequence[str] = ()) -> None:
        """Store these files (log name -> file), masked; a log stored before is replaced whole, the
        others stay, so putting the same files twice changes nothing."""
        ...

    def names(self, build: str) -> list[str]: ...

    def read(self, build: str, name: str) -> bytes | None: ...

    def tail(self, build: str, name: str, size: int) -> Tail | None: ...

    def delete(self, build: str) -> None: ...

    def builds(self) -> dict[str, float]:
        """Every build with logs here, and when its logs were last written (seconds since the epoch)."""
        ...

    def check(self) -> None:
        """Raises LogStoreUnavailable when a write would fail now."""
        ...


def check_build(build: str) -> str:
    if not _BUILD.fullmatch(build):
        raise ValueError(f"{build!r} is not a build name")
    return build


def check_name(name: str) -> str:
    """A log name is relative and stays inside its build: it becomes a path or an object key."""
    parts = name.split("/")
    if not all(_PART.fullmatch(part) and part.strip(".") for part in parts):
        raise ValueError(f"{name!r} is not a log name")
    return name


def masked_copy(source: Path, target: IO[bytes], secrets: Sequence[str]) -> None:
    """Line by line (a log can be large), every secret `****`, as every log podci keeps is masked."""
    wanted = [secret.encode() for secret in sorted(secrets, key=len, reverse=True) if secret]
    with open(source, "rb") as lines:
        for line in lines:
            for secret in wanted:
                line = line.replace(secret, b"****")
            target.write(line)


def masked_temp(source: Path, secrets: Sequence[str]) -> IO[bytes]:
    """A masked copy to upload, spilled to disk past a few MB, rewound."""
    copy: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115 - returned open
    masked_copy(source, copy, secrets)
    copy.seek(0)
    return copy


class DirLogStore:
    """Logs in a directory: one machine's state directory (the default), or a volume every replica mounts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def _path(self, build: str, name: str) -> Path:
        return self.root / check_build(build) / f"{check_name(name)}{SUFFIX}"

    def where(self, build: str, name: str) -> str:
        return str(self._path(build, name))

    def put(self, build: str, files: Mapping[str, Path], secrets: Sequence[str] = ()) -> None:
        try:
            for name, source in files.items():
                target = self._path(build, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                with open(tmp, "wb") as copy:
                    masked_copy(source, copy, secrets)
                os.replace(tmp, target)  # a reader sees the old log or the new one, never half of one
        except OSError as exc:
            raise LogStoreUnavailable(f"cannot write logs under {self.root}: {exc.strerror or exc}") from exc

    def names(self, build: str) -> list[str]:
        folder = self.root / check_build(build)
        return [str(p.relative_to(folder))[: -len(SUFFIX)] for p in sorted(folder.rglob(f"*{SUFFIX}"))]

    def read(self, build: str, name: str) -> bytes | None:
        try:
            return self._path(build, name).read_bytes()
        except FileNotFoundError:
            return None

    def tail(self, build: str, name: str, size: int) -> Tail | None:
        try:
            with open(self._path(build, name), "rb") as handle:
                total = handle.seek(0, 2)
                handle.seek(max(0, total - size))
                return Tail(handle.read(), total)
        except FileNotFoundError:
            return None

    def delete(self, build: str) -> None:
        shutil.rmtree(self.root / check_build(build), ignore_errors=True)

    def builds(self) -> dict[str, float]:
        if not self.root.is_dir():
            return {}
        found = (p for p in self.root.iterdir() if p.is_dir() and _BUILD.fullmatch(p.name))
        return {p.name: p.stat().st_mtime for p in found}

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LogStoreUnavailable(f"cannot create {self.root}: {exc.strerror or exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise LogStoreUnavailable(f"{self.root} is not writable by this process")


def open_log_store(url: str, endpoint_url: str | None = None) -> LogStore:
    """The store PODCI_LOG_STORE names (checked by `schemas.settings`): s3://bucket/prefix or a path."""
    if url.startswith("s3://"):
        from store.s3logs import S3LogStore  # boto3 is imported only by those who use it

        return S3LogStore.from_url(url, endpoint_url)
    return DirLogStore(Path(url))
