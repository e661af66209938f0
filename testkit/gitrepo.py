"""Real git repositories for tests and benchmarks, built file by file and branch by branch."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "webapp"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t.invalid",
}  # fmt: skip


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **_GIT_ENV},
    )
    return proc.stdout.strip()


class Repo:
    """A real git repository built file by file, branch by branch."""

    def __init__(self, path: Path, files: dict[str, str] | None = None, *, from_example: bool = True) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "--quiet", "--initial-branch=main")
        if from_example:
            shutil.copytree(EXAMPLE, path, dirs_exist_ok=True)
        self.commit(files or {}, "initial")

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git(self.path, "add", "--all")
        git(self.path, "commit", "--quiet", "--allow-empty", "-m", message)
        return git(self.path, "rev-parse", "HEAD")

    def head(self, branch: str) -> str:
        return git(self.path, "rev-parse", branch)

    def commit_on(self, branch: str, files: dict[str, str]) -> str:
        git(self.path, "checkout", "--quiet", branch)
        sha = self.commit(files, f"more on {branch}")
        git(self.path, "checkout", "--quiet", "main")
        return sha

    def branch(self, name: str, files: dict[str, str], base: str = "main") -> str:
        git(self.path, "checkout", "--quiet", "-b", name, base)
        sha = self.commit(files, f"{name}")
        git(self.path, "checkout", "--quiet", "main")
        return sha
