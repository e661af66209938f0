"""Fetch the two sides of a build and merge them in a scratch repository.

git runs with argument lists, never a shell: branch and repository names come from webhooks. Refs are
already checked by `schemas.request`, and every user value goes after `--` or inside a refspec.

A webhook build fetches over the network only: git itself refuses every transport but http(s) and
ssh (`GIT_ALLOW_PROTOCOL`, `protocol.file.allow=never`: no path, no `file://`, no `ext::`) and does
not follow redirects, so a URL that passed the receiver's host check cannot lead elsewhere. Only
`podci run` fetches from a path. git's environment holds none of podci's settings (secrets).

Private repositories: git's own `store` helper reads a copy of `PODCI_GIT_CREDENTIALS` made for each
checkout in a private directory outside it. Git hands the token to the server and never to a command
line or a URL; and the helper's `erase` after a refused token, or its `store` after a good one,
changes only the copy, never the operator's file (often a read-only Secret).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from schemas.request import Revision
from schemas.urls import GIT_ALLOW_PROTOCOL
from workers.environ import for_children
from workers.errors import PermanentError, TransientError
from workers.logfiles import first_error_line

GIT_TIMEOUT = 600
_IDENTITY = ["-c", "user.name=podci", "-c", "user.email=podci@localhost", "-c", "commit.gpgsign=false"]
_REMOTE_ONLY = ["-c", "protocol.file.allow=never", "-c", "http.followRedirects=false"]


class GitError(PermanentError):
    """git failed in a way that retrying will not fix (a missing branch, an unknown commit)."""


class GitUnavailable(TransientError):
    """git failed in a way that may pass (network, server): worth a retry."""


@dataclass(frozen=True)
class MergeResult:
    commit: str | None  # None when the merge conflicted
    source_commit: str
    target_commit: str | None
    conflicts: tuple[str, ...] = ()


def _env(remote_only: bool = False) -> dict[str, str]:
    env = for_children(os.environ, "GIT_")
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_CONFIG_NOSYSTEM="1")
    if remote_only:
        env["GIT_ALLOW_PROTOCOL"] = GIT_ALLOW_PROTOCOL
    return env


def git(
    repo: Path,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    remote_only: bool = False,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["git", "-C", str(repo), *(_REMOTE_ONLY if remote_only else []), *args],
        capture_output=True,
        text=True,
        env={**_env(remote_only), **(env or {})},
        timeout=GIT_TIMEOUT,
        check=False,
    )
    if check and proc.returncode != 0:
        raise GitUnavailable(f"git {args[0]} failed: {first_error_line(proc.stderr)[:300]}")
    return proc


@contextmanager
def credential_helper(credentials: Path | None) -> Iterator[tuple[str, ...]]:
    """git options that make its `store` helper read a private copy of `credentials` (and nothing
    else: a helper from the user's own git config is dropped), removed when the fetches are done."""
    if credentials is None:
        yield ()
        return
    private = Path(tempfile.mkdtemp(prefix="podci-git-"))  # mode 0700: only this user reads the copy
    try:
        copy = private / "credentials"
        shutil.copyfile(credentials, copy)
        copy.chmod(0o600)
        yield ("-c", "credential.helper=", "-c", f"credential.helper=store --file={copy}")
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _host(url: str) -> str:
    """The host (and port) of a clone URL, for sentences: never the user or token it may hold."""
    return urlsplit(url).netloc.rpartition("@")[2] if "://" in url else url.partition(":")[0]


def _refused(err: str, url: str) -> GitError | None:
    """A server that wants credentials podci does not have, or refuses the ones it has."""
    host = _host(url)
    if "could not read Username" in err or "could not read Password" in err:
        return GitError(
            f"{host} asks for a user name and token and PODCI_GIT_CREDENTIALS has none for it: add a "
            f"line https://USER:TOKEN@{host} to that file (docs/operations.md, private repositories)"
        )
    if "Authentication failed" in err or "returned error: 403" in err:
        return GitError(
            f"{host} refused the credentials PODCI_GIT_CREDENTIALS has for it: check that the token "
            f"is valid and may read {url}"
        )
    return None


def _fetch(repo: Path, side: str, rev: Revision, remote_only: bool, helper: tuple[str, ...] = ()) -> str:
    local = f"refs/podci/{side}"
    argv = (*helper, "fetch", "--quiet", "--no-tags", "--", rev.clone_url, f"+{rev.ref}:{local}")
    proc = git(repo, *argv, check=False, remote_only=remote_only)
    if proc.returncode != 0:
        err = proc.stderr.strip()
        if (refused := _refused(err, rev.clone_url)) is not None:
            raise refused
        if "couldn't find remote ref" in err or "invalid refspec" in err:
            raise GitError(f"the {side} branch `{rev.ref}` does not exist in {rev.clone_url}")
        if "does not appear to be a git repository" in err or "not found" in err.lower():
            raise GitError(f"{rev.clone_url} is not a git repository podci can read")
        if "transport" in err and "not allowed" in err:
            raise GitError(
                f"{rev.clone_url} is not an http(s) or ssh URL; a webhook build fetches only those"
            )
        raise GitUnavailable(
            f"fetching `{rev.ref}` from {rev.clone_url} failed: {first_error_line(err)[:300]}"
        )
    head = git(repo, "rev-parse", "--verify", "--quiet", f"{local}^{{commit}}").stdout.strip()
    if rev.commit is None or head.startswith(rev.commit):
        return head
    known = git(repo, "rev-parse", "--verify", "--quiet", f"{rev.commit}^{{commit}}", check=False)
    if known.returncode != 0:
        raise GitError(f"commit {rev.commit} is not on the {side} branch `{rev.ref}` any more")
    return known.stdout.strip()


def prepare(
    source_rev: Revision,
    target_rev: Revision | None,
    dest: Path,
    when: datetime,
    *,
    remote_only: bool = False,
    credentials: Path | None = None,
) -> MergeResult:
    """Make `dest` a fresh repository holding the source merged into the target. Safe to run twice:
    whatever a killed earlier attempt left in `dest` is thrown away first. `remote_only` (a webhook
    build's: `BuildRequest.remote_only`) fetches over http(s) and ssh only.

    The merge commit is dated `when` (the build's creation) and signed by podci, so the same inputs
    make the same commit on any worker: another worker can make it again (`ensure_merge`) instead of
    the build depending on one worker's disk. `credentials`: `PODCI_GIT_CREDENTIALS`."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    git(dest, "init", "--quiet")
    with credential_helper(credentials) as helper:
        source = _fetch(dest, "source", source_rev, remote_only, helper)
        target = None if target_rev is None else _fetch(dest, "target", target_rev, remote_only, helper)
    if target_rev is None or target is None:
        git(dest, "checkout", "--quiet", "--detach", source)
        return MergeResult(commit=source, source_commit=source, target_commit=None)
    git(dest, "checkout", "--quiet", "--detach", target)
    message = f"podci: merge {source_rev.ref} into {target_rev.ref}"
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    merged = git(
        dest, *_IDENTITY, "merge", "--no-ff", "--no-edit", "-m", message, source,
        check=False, env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
    )  # fmt: skip
    if merged.returncode != 0:
        conflicts = git(dest, "diff", "--name-only", "--diff-filter=U").stdout.split()
        if not conflicts:
            raise GitUnavailable(f"git merge failed: {first_error_line(merged.stderr)[:300]}")
        git(dest, "merge", "--abort", check=False)
        return MergeResult(None, source, target, tuple(conflicts))
    head = git(dest, "rev-parse", "HEAD").stdout.strip()
    return MergeResult(commit=head, source_commit=source, target_commit=target)


def has_commit(repo: Path, commit: str) -> bool:
    if not (repo / ".git").is_dir():
        return False
    return git(repo, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0


def ensure_merge(
    source: Revision,
    target: Revision | None,
    dest: Path,
    when: datetime,
    commit: str,
    *,
    remote_only: bool = False,
    credentials: Path | None = None,
) -> None:
    """`dest` holds the build's merge `commit`: the checkout step's own, or made again from the
    commits it pinned (a worker other than the one that checked out delivers the code)."""
    if has_commit(dest, commit):
        return
    result = prepare(source, target, dest, when, remote_only=remote_only, credentials=credentials)
    if result.commit != commit:
        raise PermanentError(
            f"making the merge again on this worker gave commit {str(result.commit)[:12]}, not the build's "
            f"{commit[:12]}: the branches moved, or the git versions of the workers merge differently"
        )


def read_file(repo: Path, commit: str, path: str) -> str | None:
    """A file's text at `commit`, or None when it is not there."""
    proc = git(repo, "show", f"{commit}:{path}", check=False)
    return proc.stdout if proc.returncode == 0 else None


MERGE_REF = "refs/podci/merge"


def bundle(repo: Path, commit: str) -> Path:
    """A git bundle of `commit` (as `refs/podci/merge`, with the history it needs), made once per
    checkout: how the merge the worker checked reaches a pod without the pod fetching anything."""
    path = repo / ".git" / "podci-code.bundle"
    if path.is_file():
        return path
    git(repo, "update-ref", MERGE_REF, commit)
    partial = path.with_name(path.name + ".part")
    git(repo, "bundle", "create", "--quiet", str(partial), MERGE_REF)
    partial.replace(path)
    return path
