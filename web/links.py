"""Links from a build page to its pull request, commit and branches on Bitbucket: pure functions.

A link is made only when the record says enough to make it right (the provider, a repository name of
the provider's form, a server URL for Server/Data Center); a wrong link is worse than none, so
anything unknown gives None. Every part taken from a webhook (workspace, slug, branch) is
percent-escaped here; the templates escape the whole for HTML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from schemas.request import BuildRequest

CLOUD = "https://bitbucket.org"
CLOUD_HOST = "bitbucket.org"
_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_NAME = re.compile(r"^([^/\s]+)/([^/\s]+)$")


@dataclass(frozen=True)
class Repo:
    """A repository on one Bitbucket product: its web address, and how that product links into it."""

    product: str  # "bitbucket-cloud" or "bitbucket-server"
    home: str  # no trailing slash

    def commit(self, sha: str | None) -> str | None:
        return f"{self.home}/commits/{sha}" if sha and _SHA.match(sha) else None

    def branch(self, name: str) -> str | None:
        if not name:
            return None
        if self.product == "bitbucket-cloud":
            return f"{self.home}/branch/{quote(name, safe='/')}"
        ref = name if name.startswith("refs/") else f"refs/heads/{name}"
        return f"{self.home}/browse?at={quote(ref, safe='/')}"

    def pull_request(self, number: int | None) -> str | None:
        return None if number is None else f"{self.home}/pull-requests/{number}"


def _seg(text: str) -> str:
    return quote(text, safe="")


def server_base(server_url: str | None) -> str | None:
    """The server's web root, only when it is an http(s) URL (it ends up in an href)."""
    if not server_url:
        return None
    parts = urlsplit(server_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return server_url.rstrip("/")


def repo_at(product: str, name: str, server_url: str | None) -> Repo | None:
    """`workspace/slug` on Cloud; `KEY/slug` on Server, where a personal project `~user` lives
    under `/users/user`, as Server's own pages put it."""
    match = _NAME.match(name)
    if match is None:
        return None
    owner, slug = match.groups()
    if product == "bitbucket-cloud":
        return Repo(product, f"{CLOUD}/{_seg(owner)}/{_seg(slug)}")
    base = server_base(server_url)
    if product != "bitbucket-server" or base is None:
        return None
    if owner.startswith("~"):
        return Repo(product, f"{base}/users/{_seg(owner[1:].lower())}/repos/{_seg(slug)}")
    return Repo(product, f"{base}/projects/{_seg(owner)}/repos/{_seg(slug)}")


def _path_of_clone(url: str) -> tuple[str, str] | None:
    """(host, path) of an http(s), ssh or scp-like clone URL."""
    if "://" in url:
        parts = urlsplit(url)
        return (parts.hostname or "", parts.path) if parts.scheme in ("http", "https", "ssh") else None
    host, colon, path = url.partition(":")
    if not colon or "/" in host:
        return None
    return host.rpartition("@")[2].lower(), "/" + path


def repo_name_of_clone(product: str, url: str, server_url: str | None) -> str | None:
    """The repository a clone URL names (a fork's, for its pull request), on the product's own host:
    `bitbucket.org/ws/slug.git`, or Server's `/scm/KEY/slug.git` (http) and `/KEY/slug.git` (ssh)."""
    found = _path_of_clone(url)
    if found is None:
        return None
    host, path = found
    parts = [p for p in path.removesuffix(".git").split("/") if p]
    if product == "bitbucket-cloud":
        return f"{parts[0]}/{parts[1]}" if host == CLOUD_HOST and len(parts) == 2 else None
    base = server_base(server_url)
    if product != "bitbucket-server" or base is None or host != urlsplit(base).hostname:
        return None
    if len(parts) >= 3 and parts[-3] == "scm":
        parts = parts[-2:]
    return f"{parts[-2].upper()}/{parts[-1]}" if len(parts) >= 2 else None


@dataclass(frozen=True)
class BuildLinks:
    pull_request: str | None = None
    commit: str | None = None
    source_branch: str | None = None
    target_branch: str | None = None


def build_links(request: BuildRequest, commit: str | None, server_url: str | None) -> BuildLinks:
    """Where a build's pull request, source commit and branches are on Bitbucket. A fork's source
    branch and commit are in the fork, found from its clone URL; unknown there, they get no link."""
    target = repo_at(request.provider, request.repo, server_url)
    if target is None:
        return BuildLinks()
    source: Repo | None = target
    if request.fork:
        name = repo_name_of_clone(request.provider, request.source.clone_url, server_url)
        source = repo_at(request.provider, name, server_url) if name else None
    return BuildLinks(
        pull_request=target.pull_request(request.pull_request),
        commit=source.commit(commit) if source else None,
        source_branch=source.branch(request.source.ref) if source else None,
        target_branch=target.branch(request.target.ref) if request.target else None,
    )
