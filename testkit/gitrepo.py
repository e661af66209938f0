"""Real git repositories for tests and benchmarks, built file by file and branch by branch."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

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


class GitServer:
    """Repositories served over git's "dumb" HTTP protocol by a real HTTP server, so that webhook
    builds fetch them the way they fetch from Bitbucket: over http(s) from an allowed host, never from
    a path (`schemas.urls`). `add(repo)` answers the URL to put in a webhook.

    The dumb protocol needs `info/refs`, which `git update-server-info` writes: it runs on every
    request for it, so commits made after `add` are served too."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.responses import FileResponse, PlainTextResponse, Response
        from starlette.routing import Route

        from testkit.servers import Server

        self.repos: dict[str, Path] = {}

        async def serve(request: Any) -> Response:
            name, rest = request.path_params["name"], request.path_params["rest"]
            repo = self.repos.get(name)
            if repo is None:
                return PlainTextResponse("no such repository", status_code=404)
            gitdir = (repo / ".git").resolve()
            if rest == "info/refs":
                git(repo, "update-server-info")
            target = (gitdir / rest).resolve()
            if not target.is_relative_to(gitdir) or not target.is_file():
                return PlainTextResponse("not found", status_code=404)
            return FileResponse(target, media_type="application/octet-stream")

        self.server = Server(Starlette(routes=[Route("/{name}.git/{rest:path}", serve)]))
        self.url = self.server.url
        self.host = self.url.removeprefix("http://")  # `127.0.0.1:<port>`, for PODCI_CLONE_HOSTS

    def add(self, repo: Repo, name: str | None = None) -> str:
        name = name or repo.path.name.removesuffix(".git")
        self.repos[name] = repo.path
        return f"{self.url}/{name}.git"

    def __enter__(self) -> GitServer:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)
