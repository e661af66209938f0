"""Server-rendered pages about builds: the list, one build, and its log files.

The pages are plain HTML from Jinja2 templates (autoescaped: branch names, job names, test messages
and logs all come from outside) that need no JavaScript, so they work in any browser, behind any
proxy, and in a terminal browser during an incident; a running build's page has one small script that
shows the test log growing (`web.live`), and reads the same without it. The same URLs answer JSON
to `Accept: application/json` so scripts do not need a second API.

Handlers are plain `def`s: the store's Redis calls are blocking, so FastAPI runs them in its thread
pool instead of on the event loop that also receives webhooks.

Every page needs a reader (`web.access`): anonymous requests get 401, and a login form for people,
unless the build's repository is public. What a page or its JSON shows is the record as
`schemas.public.Redactor` leaves it (no secret, callback URL or path of the worker), and logs are
served masked.
"""

from __future__ import annotations

import shlex
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from schemas.public import Redactor
from schemas.record import BuildRecord, BuildState, utcnow
from store.builds import BuildStore
from store.logstore import LogStore, LogStoreUnavailable
from web.access import COOKIE, Access
from web.live import add_live_route
from web.timeline import format_seconds, timeline_svg

TEMPLATES = Path(__file__).parent / "templates"
RECENT = 200
LOG_SHOWN_MAX = 8 * 1024 * 1024  # a longer log is shown from its end
LOGIN_REQUIRED = "Log in to see the builds: a token from PODCI_UI_TOKENS, or your company's login."


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


def local_next(value: str) -> str:
    """Where to go after logging in: a path on this site only (`//evil.example` is another site)."""
    return value if value.startswith("/") and not value.startswith(("//", "/\\")) else "/builds"


def read_log(log_store: LogStore, build: str, name: str, redactor: Redactor) -> str | None:
    """A log as shown, from the log store (never the worker's disk): masked, and only its last
    LOG_SHOWN_MAX bytes when it is longer. None when the store has no such log."""
    tail = log_store.tail(build, name, LOG_SHOWN_MAX)
    if tail is None:
        return None
    text = tail.data.decode(errors="replace")
    if tail.size > LOG_SHOWN_MAX:
        text = f"[the first {tail.size - LOG_SHOWN_MAX} bytes of this log are not shown]\n" + text
    return redactor.text(text)


def make_router(
    store: BuildStore,
    public_url: str,
    access: Access | None = None,
    redactor: Redactor | None = None,
    log_store: LogStore | None = None,
) -> APIRouter:
    """Routes under `/builds` and the login form; links in the pages start with `public_url` (the
    address people use). Without `access` nobody may read a page (closed by default); without
    `log_store` no log is served."""
    base = public_url.rstrip("/")
    access = access or Access()
    redactor = redactor or Redactor(())
    secure_cookie = base.startswith("https://")
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

    def reader(request: Request) -> str | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        client = request.client.host if request.client else None
        return access.reader(headers, request.cookies, client)

    def login_required(request: Request) -> Response:
        challenge = {"WWW-Authenticate": 'Bearer realm="podci"'}
        if wants_json(request):
            return JSONResponse({"error": LOGIN_REQUIRED}, status_code=401, headers=challenge)
        page = render("login.html", status=401, title="Log in", sentence=LOGIN_REQUIRED,
                      next=local_next(request.url.path), failed=False)  # fmt: skip
        page.headers.update(challenge)
        return page

    @router.get("/login", summary="the login form", response_model=None)
    def login_form(request: Request, next: str = "/builds") -> Response:
        return render("login.html", title="Log in", sentence=LOGIN_REQUIRED, next=local_next(next),
                      failed=False)  # fmt: skip

    @router.post("/login", summary="log in with a token; sets a cookie", response_model=None)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode(errors="replace"))
        token, target = form.get("token", [""])[0], local_next(form.get("next", ["/builds"])[0])
        if not access.token_ok(token):
            return render("login.html", status=401, title="Log in", sentence=LOGIN_REQUIRED, next=target,
                          failed=True)  # fmt: skip
        done = RedirectResponse(base + target, status_code=303)
        done.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie, path="/")
        return done

    @router.get("/logout", summary="forget the login cookie", response_model=None)
    def logout() -> Response:
        done = RedirectResponse(base + "/login", status_code=303)
        done.delete_cookie(COOKIE, path="/")
        return done

    @router.get("/builds", summary="recent builds, newest first", response_model=None)
    def builds(request: Request, repo: str = "", state: str = "") -> Response:
        who = reader(request)
        if who is None and not access.public:
            return login_required(request)
        if state and state not in BuildState.__members__:
            sentence = f"{state!r} is not a build state; use one of: {', '.join(BuildState.__members__)}."
            if wants_json(request):
                return JSONResponse({"error": sentence}, status_code=400)
            return render("base.html", status=400, title="Bad filter", sentence=sentence)
        records = [
            redactor.record(r)
            for r in store.recent(RECENT)
            if (not repo or r.request.repo == repo)
            and (not state or r.state.value == state)
            and access.may_read(who, r.request.repo)
        ]
        if wants_json(request):
            return JSONResponse([r.model_dump(mode="json") for r in records])
        now = utcnow()
        rows = [{"record": r, "refs": refs(r), "seconds": duration(r, now)} for r in records]
        return render("builds.html", rows=rows, repo=repo, state=state, states=list(BuildState.__members__))

    @router.get("/builds/{build_id}", summary="one build", response_model=None)
    def build(request: Request, build_id: str) -> Response:
        who, found = reader(request), store.get(build_id)
        # Anonymous requests learn nothing, not even whether the build exists.
        if not access.may_read(who, found.request.repo if found else "") or (who is None and found is None):
            return login_required(request)
        if found is None:
            return not_found(request, f"There is no build named {build_id!r}; it may have expired.")
        test_log = test_log_name(found)
        record = redactor.record(found)
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
            test_log=test_log,
            pod=record.pods[-1].pod if record.pods else "",
        )

    # `name:path`: a container log is named `containers/web`, its slash sent as %2F and decoded by then.
    @router.get("/builds/{build_id}/logs/{name:path}", summary="one log of a build", response_model=None)
    def log(request: Request, build_id: str, name: str) -> Response:
        who, record = reader(request), store.get(build_id)
        if not access.may_read(who, record.request.repo if record else "") or (
            who is None and record is None
        ):
            return login_required(request)
        if record is None:
            return not_found(request, f"There is no build named {build_id!r}; it may have expired.")
        # Only names the record lists are served, never a path taken from the URL.
        try:
            text = (
                read_log(log_store, record.name, name, redactor)
                if log_store and name in record.logs
                else None
            )
        except ValueError:  # a name no store could hold (a record from elsewhere): no such log
            text = None
        except LogStoreUnavailable:
            sentence = "The log store does not answer just now; try again in a minute."
            return JSONResponse({"error": sentence}, status_code=503, headers={"Retry-After": "30"})
        if text is None:
            return not_found(request, f"Build {build_id!r} has no log named {name!r}.")
        return PlainTextResponse(
            text, media_type="text/plain; charset=utf-8", headers={"X-Content-Type-Options": "nosniff"}
        )

    def may_read(request: Request, record: BuildRecord | None) -> bool:
        """As `build`: anonymous requests learn nothing, not even whether the build exists."""
        who = reader(request)
        repo = record.request.repo if record else ""
        return access.may_read(who, repo) and not (who is None and record is None)

    add_live_route(router, store, may_read, login_required, redactor)
    return router
