"""Server-rendered pages about builds: the list, one build, and its log files.

The pages are plain HTML from Jinja2 templates (autoescaped: branch names, job names, test messages
and logs all come from outside), with no JavaScript, so they work in any browser, behind any proxy,
and in a terminal browser during an incident. The same URLs answer JSON to `Accept: application/json`
so scripts do not need a second API.

Handlers are plain `def`s: the store's Redis calls are blocking, so FastAPI runs them in its thread
pool instead of on the event loop that also receives webhooks.
"""

from __future__ import annotations

import shlex
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from schemas.record import BuildRecord, BuildState, utcnow
from store.builds import BuildStore
from web.timeline import format_seconds, timeline_svg

TEMPLATES = Path(__file__).parent / "templates"
RECENT = 200


def wants_json(request: Request) -> bool:
    """JSON only when asked for and HTML is not: a browser's Accept lists text/html and gets pages."""
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def duration(record: BuildRecord, now: datetime | None = None) -> float:
    """Seconds from creation to the end, or to now while the build is not finished."""
    return ((record.finished or now or utcnow()) - record.created).total_seconds()


def when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def refs(record: BuildRecord) -> str:
    """`source → target`, or the source alone for a build of a branch."""
    request = record.request
    return f"{request.source.ref} → {request.target.ref}" if request.target else request.source.ref


def test_container(record: BuildRecord) -> str | None:
    """The container `.podci.yml` runs the tests in; None before checkout has read the config."""
    return record.config.test.container if record.config is not None else None


def exec_command(record: BuildRecord) -> str | None:
    """A shell into the pod of a failed build, while that pod is still there to debug in: before
    teardown, or while teardown keeps it (`PODCI_KUBE_KEEP_FAILED_POD_MINUTES`)."""
    if record.state is not BuildState.failed or not record.pods:
        return None
    kept = record.pod_kept_until is not None and utcnow() < record.pod_kept_until
    if record.finished is not None and not kept:
        return None
    current = record.pods[-1]
    if current.ended:
        return None
    container = test_container(record)
    words = ["kubectl", "exec", "-it", current.pod]
    if container is not None:
        words += ["-c", container]
    return shlex.join([*words, "--", "sh"])


def test_log_name(record: BuildRecord) -> str | None:
    """Which entry of `record.logs` is the test command's full log (only those names are served)."""
    if record.tests is None:
        return None
    by_path = [name for name, path in record.logs.items() if path == record.tests.log_path]
    if by_path:
        return by_path[0]
    return "tests" if "tests" in record.logs else None


def make_router(store: BuildStore, public_url: str) -> APIRouter:
    """Routes under `/builds`; links in the pages start with `public_url` (the address people use)."""
    base = public_url.rstrip("/")
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)
    env.filters["seconds"] = lambda value: "" if value is None else format_seconds(value)
    env.filters["when"] = when
    env.filters["segment"] = lambda value: quote(value, safe="")  # a log name is one path segment
    router = APIRouter()

    def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(base=base, **context)
        return HTMLResponse(html, status_code=status)

    def not_found(request: Request, sentence: str) -> Response:
        if wants_json(request):
            return JSONResponse({"error": sentence}, status_code=404)
        return render("base.html", status=404, title="Not found", sentence=sentence)

    @router.get("/builds", summary="recent builds, newest first", response_model=None)
    def builds(request: Request, repo: str = "", state: str = "") -> Response:
        if state and state not in BuildState.__members__:
            sentence = f"{state!r} is not a build state; use one of: {', '.join(BuildState.__members__)}."
            if wants_json(request):
                return JSONResponse({"error": sentence}, status_code=400)
            return render("base.html", status=400, title="Bad filter", sentence=sentence)
        records = [
            r
            for r in store.recent(RECENT)
            if (not repo or r.request.repo == repo) and (not state or r.state.value == state)
        ]
        if wants_json(request):
            return JSONResponse([r.model_dump(mode="json") for r in records])
        now = utcnow()
        rows = [{"record": r, "refs": refs(r), "seconds": duration(r, now)} for r in records]
        return render("builds.html", rows=rows, repo=repo, state=state, states=list(BuildState.__members__))

    @router.get("/builds/{build_id}", summary="one build", response_model=None)
    def build(request: Request, build_id: str) -> Response:
        record = store.get(build_id)
        if record is None:
            return not_found(request, f"There is no build named {build_id!r}; it may have expired.")
        if wants_json(request):
            return JSONResponse(record.model_dump(mode="json"))
        now = utcnow()
        return render(
            "build.html",
            record=record,
            refs=refs(record),
            seconds=duration(record, now),
            timeline=Markup(timeline_svg(record, width=1100, now=now)),  # noqa: S704 - built from escaped parts
            exec_command=exec_command(record),
            test_log=test_log_name(record),
            pod=record.pods[-1].pod if record.pods else "",
        )

    @router.get("/builds/{build_id}/logs/{name}", summary="one log file of a build", response_model=None)
    def log(request: Request, build_id: str, name: str) -> Response:
        record = store.get(build_id)
        if record is None:
            return not_found(request, f"There is no build named {build_id!r}; it may have expired.")
        # Only names the record lists are served, never a path taken from the URL.
        path = record.logs.get(name)
        if path is None or not Path(path).is_file():
            return not_found(request, f"Build {build_id!r} has no log named {name!r}.")
        return FileResponse(
            path, media_type="text/plain; charset=utf-8", headers={"X-Content-Type-Options": "nosniff"}
        )

    return router
