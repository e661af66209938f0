"""A private git server: git's smart HTTP protocol (`git http-backend`) behind HTTP basic auth.

It answers as Bitbucket does a private repository: 401 with a `WWW-Authenticate` challenge to a
request without credentials or with wrong ones, and the repository to the right user and token. It
keeps every `Authorization` header it saw, so a test can tell whether git sent the token at all.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from pathlib import Path
from typing import Any

from testkit.gitrepo import Repo
from testkit.servers import Server

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="podci tests"'}


def _cgi_response(output: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a CGI program's output (`Status:` is a header there)."""
    head, _, body = output.partition(b"\r\n\r\n")
    if not _:
        head, _, body = output.partition(b"\n\n")
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers[name.strip()] = value.strip()
    return status, headers, body


class PrivateGitServer:
    """`add(repo)` answers the clone URL; only `user`:`token` may fetch."""

    def __init__(self, user: str = "x-token-auth", token: str | None = None) -> None:
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        self.user, self.token = user, token or secrets.token_hex(20)
        self.root: Path | None = None
        self.names: dict[str, Path] = {}
        self.authorizations: list[str | None] = []

        async def serve(request: Any) -> Response:
            header = request.headers.get("authorization")
            self.authorizations.append(header)
            if not self._allowed(header):
                return Response("authentication required\n", status_code=401, headers=_CHALLENGE)
            name = request.path_params["name"]
            if name not in self.names:
                return Response("no such repository\n", status_code=404)
            status, headers, body = await self._backend(request, name, await request.body())
            return Response(body, status_code=status, headers=headers)

        methods = ["GET", "POST"]
        app = Starlette(routes=[Route("/{name}.git/{rest:path}", serve, methods=methods)])
        self.server = Server(app)
        self.url = self.server.url
        self.host = self.url.removeprefix("http://")

    def _allowed(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.user}:{self.token}".encode()).decode()
        return header is not None and secrets.compare_digest(header, f"Basic {expected}")

    async def _backend(self, request: Any, name: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        repo = self.names[name]
        env = {
            "GIT_PROJECT_ROOT": str(repo.parent),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{repo.name}/{request.path_params['rest']}",
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.url.query,
            "CONTENT_TYPE": request.headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": self.user,
            "HTTP_CONTENT_ENCODING": request.headers.get("content-encoding", ""),
            "GIT_PROTOCOL": request.headers.get("git-protocol", ""),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        output, _ = await proc.communicate(body)
        return _cgi_response(output)

    def add(self, repo: Repo, name: str | None = None) -> str:
        """Serve `repo`'s `.git` as `<name>.git`."""
        name = name or repo.path.name.removesuffix(".git")
        self.names[name] = (repo.path / ".git").resolve()
        return f"{self.url}/{name}.git"

    def credentials_line(self, token: str | None = None) -> str:
        """The `PODCI_GIT_CREDENTIALS` line for this server (with another `token`: a wrong one)."""
        return f"http://{self.user}:{token or self.token}@{self.host}\n"

    def __enter__(self) -> PrivateGitServer:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)
