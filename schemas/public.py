"""What of a build may leave the worker: the record as the pages, their JSON and a Jenkins callback show
it, and every log text as podci stores or shows it. Pure.

The record itself keeps everything the pipeline needs; what is shown never holds a configured secret
(masked `****`, as CI systems mask them), the `callback_url` (it may carry a token, and it is Jenkins'
own), a clone URL's user and password, or a path on the worker (the state directory, a repository
given by path to `podci run`, the log files).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from schemas.record import BuildRecord

MASK = "****"
STATE_DIR = "$PODCI_STATE_DIR"
LOCAL_REPOSITORY = "(a repository on the worker)"


def mask(text: str, secrets: Iterable[str]) -> str:
    """Every secret's value replaced by `****`; `secrets` longest first, so a secret that contains
    another is masked whole."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


def without_userinfo(url: str) -> str:
    """`https://user:pass@host/x.git` -> `https://host/x.git`; scp-like and plain paths unchanged."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def is_local_path(url: str) -> bool:
    """A repository given by path (or `file://`), as only `podci run` may give one."""
    if url.startswith("file:"):
        return True
    if "://" in url:
        return False
    host, colon, _ = url.partition(":")
    # `git@host:team/app.git` is git's scp-like ssh syntax; `/srv/app` and `./app` are paths.
    return not colon or "/" in host


class Redactor:
    """Applies the rules of this module with one installation's secrets and paths."""

    def __init__(self, secrets: Iterable[str], paths: Iterable[str] = ()) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self.paths = {p.rstrip("/"): STATE_DIR for p in paths if p.strip("/")}

    def text(self, text: str, extra: dict[str, str] | None = None) -> str:
        """Secrets masked, then worker paths named; longest path first, so `/srv/podci/logs` is
        replaced before `/srv/podci`."""
        text = mask(text, self.secrets)
        replacements = {**self.paths, **(extra or {})}
        for path in sorted(replacements, key=len, reverse=True):
            if path in text:
                text = text.replace(path, replacements[path])
        return text

    def _walk(self, value: Any, extra: dict[str, str]) -> Any:
        if isinstance(value, str):
            return self.text(value, extra)
        if isinstance(value, list):
            return [self._walk(item, extra) for item in value]
        if isinstance(value, dict):
            return {key: self._walk(item, extra) for key, item in value.items()}
        return value

    def record(self, record: BuildRecord) -> BuildRecord:
        """The record as anyone but the worker sees it (see the module docstring)."""
        data: dict[str, Any] = record.model_dump(mode="json")
        request = data["request"]
        request["callback_url"] = None
        local: dict[str, str] = {}
        for side in (request["source"], request["target"]):
            if side is not None:
                url = side["clone_url"]
                if is_local_path(url):
                    local[url.removeprefix("file://").rstrip("/")] = LOCAL_REPOSITORY
                side["clone_url"] = LOCAL_REPOSITORY if is_local_path(url) else without_userinfo(url)
        data["log_dir"] = ""
        data["logs"] = dict.fromkeys(data["logs"], "")
        if data.get("tests") is not None:
            data["tests"]["log_path"] = ""
        return BuildRecord.model_validate(self._walk(data, local))
