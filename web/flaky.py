"""`/repos/{repo}/flaky`: a repository's flaky tests with their rates, newest flake first.

Read under the pages' rules (`web.access`): an anonymous reader learns nothing of a repository that
is not public. Test names come from the builds' own reports: the template escapes them, and links
are relative, to the builds where each test flaked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from store.flaky import FlakyTest, OutcomeHistory

Render = Callable[..., HTMLResponse]


def repo_path(repo: str) -> str:
    """A repository's name as path segments (`team/webapp` keeps its slash), each one escaped."""
    return "/".join(quote(part, safe="") for part in repo.split("/"))


def to_builds(repo: str) -> str:
    """The relative way from `/repos/{repo}/flaky` to `/builds/`, whatever prefix the site is under."""
    return "../" * (repo.count("/") + 2) + "builds/"


def as_json(test: FlakyTest, builds_path: str) -> dict[str, Any]:
    verdict = test.flakiness
    return {
        "name": test.name,
        "failed": verdict.failed,
        "runs": verdict.runs,
        "note": verdict.note,
        "last_flake": datetime.fromtimestamp(verdict.last_flake, UTC).isoformat(),
        "builds": list(verdict.builds),
        "links": [builds_path + quote(build, safe="") for build in verdict.builds],
    }


def add_flaky_route(
    router: APIRouter,
    history: OutcomeHistory,
    may_read: Callable[[Request, str], bool],
    login_required: Callable[[Request], Response],
    render: Render,
    wants_json: Callable[[Request], bool],
) -> None:
    @router.get("/repos/{repo:path}/flaky", summary="a repository's flaky tests", response_model=None)
    def flaky(request: Request, repo: str) -> Response:
        if not may_read(request, repo):
            return login_required(request)
        tests = history.flaky_tests(repo, time.time())
        if wants_json(request):
            return JSONResponse({"repo": repo, "tests": [as_json(t, to_builds(repo)) for t in tests]})
        rows = [(t, datetime.fromtimestamp(t.flakiness.last_flake, UTC)) for t in tests]
        return render(request, "flaky.html", title=f"Flaky tests of {repo}", repo=repo, rows=rows)
