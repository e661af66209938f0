"""Fetch the two sides of a build and merge them in a scratch repository.

git runs with argument lists, never a shell: branch and repository names come from webhooks. Refs are
already checked by `schemas.request`, and every user value goes after `--` or inside a refspec.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from schemas.request import BuildRequest, Revision
from workers.errors import PermanentError, TransientError

GIT_TIMEOUT = 600
_IDENTITY = ["-c", "user.name=podci", "-c", "user.email=podci@localhost", "-c", "commit.gpgsign=false"]


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


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_CONFIG_NOSYSTEM="1")
    return env


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=GIT_TIMEOUT,
        check=False,
    )
    if check and proc.returncode != 0:
        raise GitUnavailable(f"git {args[0]} failed: {proc.stderr.strip()[-500:]}")
    return proc


def _fetch(repo: Path, side: str, rev: Revision) -> str:
    local = f"refs/podci/{side}"
    proc = git(repo, "fetch", "--quiet", "--no-tags", "--", rev.clone_url, f"+{rev.ref}:{local}", check=False)
    if proc.returncode != 0:
        err = proc.stderr.strip()
        if "couldn't find remote ref" in err or "invalid refspec" in err:
            raise GitError(f"the {side} branch `{rev.ref}` does not exist in {rev.clone_url}")
        if "does not appear to be a git repository" in err or "not found" in err.lower():
            raise GitError(f"{rev.clone_url} is not a git repository podci can read")
        raise GitUnavailable(f"fetching `{rev.ref}` from {rev.clone_url} failed: {err[-500:]}")
    head = git(repo, "rev-parse", "--verify", "--quiet", f"{local}^{{commit}}").stdout.strip()
    if rev.commit is None or head.startswith(rev.commit):
        return head
    known = git(repo, "rev-parse", "--verify", "--quiet", f"{rev.commit}^{{commit}}", check=False)
    if known.returncode != 0:
        raise GitError(f"commit {rev.commit} is not on the {side} branch `{rev.ref}` any more")
    return known.stdout.strip()


def prepare(request: BuildRequest, dest: Path) -> MergeResult:
    """Make `dest` a fresh repository holding the source merged into the target. Safe to run twice:
    whatever a killed earlier attempt left in `dest` is thrown away first."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    git(dest, "init", "--quiet")
    source = _fetch(dest, "source", request.source)
    if request.target is None:
        git(dest, "checkout", "--quiet", "--detach", source)
        return MergeResult(commit=source, source_commit=source, target_commit=None)
    target = _fetch(dest, "target", request.target)
    git(dest, "checkout", "--quiet", "--detach", target)
    message = f"podci: merge {request.source.ref} into {request.target.ref}"
    merged = git(dest, *_IDENTITY, "merge", "--no-ff", "--no-edit", "-m", message, source, check=False)
    if merged.returncode != 0:
        conflicts = git(dest, "diff", "--name-only", "--diff-filter=U").stdout.split()
        if not conflicts:
            raise GitUnavailable(f"git merge failed: {merged.stderr.strip()[-500:]}")
        git(dest, "merge", "--abort", check=False)
        return MergeResult(None, source, target, tuple(conflicts))
    head = git(dest, "rev-parse", "HEAD").stdout.strip()
    return MergeResult(commit=head, source_commit=source, target_commit=target)


def read_file(repo: Path, commit: str, path: str) -> str | None:
    """A file's text at `commit`, or None when it is not there."""
    proc = git(repo, "show", f"{commit}:{path}", check=False)
    return proc.stdout if proc.returncode == 0 else None
