"""Turn the bundled `examples/` folder into a real git repository with its branches."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BRANCHES = ("feature", "failing")  # each is `main` plus the files of examples/variants/<branch>
_ENV = {
    "GIT_AUTHOR_NAME": "podci example",
    "GIT_AUTHOR_EMAIL": "example@podci.invalid",
    "GIT_COMMITTER_NAME": "podci example",
    "GIT_COMMITTER_EMAIL": "example@podci.invalid",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in EXAMPLES.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(EXAMPLES)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, env={**os.environ, **_ENV}
    )


def _commit_tree(repo: Path, files: Path, message: str) -> None:
    shutil.copytree(files, repo, dirs_exist_ok=True)
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "--allow-empty", "-m", message)


def example_repo(dest: Path) -> Path:
    """Create (or reuse, when the bundled files have not changed) the example repository at `dest`."""
    if not EXAMPLES.is_dir():
        raise SystemExit(f"the bundled example is missing ({EXAMPLES}); pass --repo PATH to build your own")
    stamp = dest / ".git" / "podci-example"
    fingerprint = _fingerprint()
    if stamp.exists() and stamp.read_text() == fingerprint:
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    _git(dest, "init", "--quiet", "--initial-branch=main")
    _commit_tree(dest, EXAMPLES / "webapp", "webapp: counter service and its tests")
    for branch in BRANCHES:
        _git(dest, "checkout", "--quiet", "-b", branch, "main")
        _commit_tree(dest, EXAMPLES / "variants" / branch, f"{branch}: one more test")
    _git(dest, "checkout", "--quiet", "main")
    stamp.write_text(fingerprint)
    return dest
