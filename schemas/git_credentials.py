"""The git-credential-store file of `PODCI_GIT_CREDENTIALS`: read and checked, never shown.

The file is git's own format (`git help credential-store`): one `https://user:token@host` line per
host, which is what an operator already has or can write from a Bitbucket access token. podci only
checks it (so a typo is an error at start, not a build ending in `error` hours later) and lists the
tokens so every log and page masks them; git itself reads the file, through its `store` helper.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit


class CredentialsError(ValueError):
    """The file cannot be used; the message says which line and why (without the token)."""


@dataclass(frozen=True)
class Credential:
    scheme: str
    host: str  # with its port when the line names one
    user: str
    password: str


def parse(text: str, source: str = "PODCI_GIT_CREDENTIALS") -> tuple[Credential, ...]:
    """Every line's credential; blank lines are skipped as git skips them."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            found.append(_line(line.strip(), f"line {number} of {source}"))
    return tuple(found)


def _line(line: str, where: str) -> Credential:
    parts = urlsplit(line)
    shape = "https://USER:TOKEN@HOST"
    if parts.scheme not in ("http", "https"):
        raise CredentialsError(f"{where} is not an http(s) URL; each line reads {shape}")
    host = parts.netloc.rpartition("@")[2]
    if not host or parts.password is None or not parts.username:
        raise CredentialsError(f"{where} has no user name and token for {host or 'its host'}; "
                               f"each line reads {shape}")  # fmt: skip
    return Credential(parts.scheme, host.lower(), unquote(parts.username), unquote(parts.password))


def load(path: Path) -> tuple[Credential, ...]:
    """The file's credentials; a missing, unreadable or malformed file is a `CredentialsError`."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CredentialsError(
            f"PODCI_GIT_CREDENTIALS names {path}, which cannot be read ({exc.strerror or exc}); "
            "point it at a git-credential-store file the worker can read"
        ) from None
    return parse(text, str(path))
