"""Which URLs from a webhook podci may fetch from or post to: pure rules, tested with tables.

A webhook names two URLs the worker then uses: the clone URL (git fetches it) and a Jenkins
`callback_url` (the final record is posted there). Unchecked, either turns podci into a client for
anyone who can send a webhook: a local path or `file://` reads the worker's disk, an internal address
reaches what only the cluster should (the cloud metadata address, Redis). So a clone URL must be
http(s) or ssh on an allowed host, and a callback URL must start with an allowed prefix. Local paths
are for `podci run` alone, whose user already has the machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from urllib.parse import unquote, urlsplit

CLONE_SCHEMES = ("http", "https", "ssh")
# What git may use for a webhook build (GIT_ALLOW_PROTOCOL): every other transport, `file` and `ext`
# included, is refused by git itself, whatever a URL or a submodule or a redirect says.
GIT_ALLOW_PROTOCOL = "http:https:ssh"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22}


def clone_location(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of a URL git fetches over the network, or None for a path, `file://` and
    every other transport. `git@host:team/app.git` is git's scp-like form of ssh."""
    if "://" in url:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:
            return None
        if scheme not in CLONE_SCHEMES or not parts.hostname:
            return None
        return scheme, parts.hostname.lower(), port
    host, colon, path = url.partition(":")
    # git reads `a:b` as scp-like ssh only when there is no slash before the colon (else a path), and
    # `name::address` as a remote helper (`ext::` runs a command); `C:\\x` is a Windows path.
    if not colon or not path or path.startswith(":") or "/" in host or "\\" in url:
        return None
    host = host.rpartition("@")[2]
    if not host or host.startswith(("-", "[")):
        return None
    return "ssh", host.lower(), None


def _host_matches(host: str, port: int | None, pattern: str) -> bool:
    """`pattern` is a host (`bitbucket.example.com`, or a shell pattern: `*.example.com`), optionally
    with a port that must then be the URL's."""
    name, colon, wanted = pattern.strip().lower().rpartition(":")
    if not colon or not wanted.isdigit():
        name, wanted = pattern.strip().lower(), ""
    return fnmatchcase(host, name) and (not wanted or port == int(wanted))


def clone_url_problem(url: str, hosts: Iterable[str]) -> str | None:
    """Why a webhook build may not fetch from `url`, or None when it may."""
    location = clone_location(url)
    if location is None:
        return "must be an http(s) or ssh URL (a path or file:// is only for `podci run`)"
    _, host, port = location
    if not any(_host_matches(host, port, pattern) for pattern in hosts):
        return (
            f"is on {host}, which is not a Bitbucket host of this podci: add it to PODCI_CLONE_HOSTS "
            "to build from it"
        )
    return None


def _without_dot_segments(path: str) -> bool:
    return not any(segment in (".", "..") for segment in unquote(path).split("/"))


def callback_problem(url: str, prefixes: Iterable[str]) -> str | None:
    """Why the final record may not be posted to `url`, or None when it may: `url` must be under one
    of `prefixes` (PODCI_JENKINS_URLS) by scheme, host, port and path, compared part by part, so that
    `https://jenkins.example.com.evil.test/` is not under `https://jenkins.example.com`."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return "has a port that is not a number"
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL"
    if not _without_dot_segments(parts.path):
        return "must not hold `.` or `..` path segments"
    for prefix in prefixes:
        allowed = urlsplit(prefix.strip())
        if allowed.scheme.lower() != scheme or (allowed.hostname or "").lower() != parts.hostname.lower():
            continue
        if (allowed.port or _DEFAULT_PORTS[scheme]) != (port or _DEFAULT_PORTS[scheme]):
            continue
        root = allowed.path.rstrip("/")
        if not root or parts.path == root or parts.path.startswith(root + "/"):
            return None
    if not any(prefix.strip() for prefix in prefixes):
        return "is refused: this podci posts results only to Jenkins URLs listed in PODCI_JENKINS_URLS"
    return "is not under any URL of PODCI_JENKINS_URLS"
