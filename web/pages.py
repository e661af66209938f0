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
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from schemas.action import may_cancel, retry_refusal
from schemas.names import failure_anchor
from schemas.public import Redactor
from schemas.record import BuildRecord, BuildState, TestCaseFailure, utcnow
from store.builds import BuildStore
from store.flaky import OutcomeHistory
from store.logstore import LogStore, LogStoreUnavailable
from web.access import COOKIE, Access
from web.failures import Excerpt, find_failure
from web.flaky import add_flaky_route, repo_path
from web.links import build_links
from web.live import add_live_route
from web.present import LOOKS, attempt_end, clip, pod_fact, reporting, service_fact
from web.timeline import TIMELINE_WIDTH, format_seconds, timeline_svg

TEMPLATES = Path(__file__).parent / "templates"
RECENT = 200
LOG_SHOWN_MAX = 8 * 1024 * 1024  # a longer log is shown from its end
LOG_SEARCHED_MAX = 1024 * 1024  # where a failed test is looked for in its log: the log's end
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


def source_commit(record: BuildRecord) -> str | None:
    """The commit under test: as the webhook named it, else as checkout found it."""
    return record.request.source.commit or record.source_commit


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
    """Where to go after logging in, as a path below the site's root without its leading slash
    (`builds/x`): a path on this site only (`//evil.example` is another site). The answer is used
    after `./`, so it can never name another host."""
    if value.startswith(("//", "/\\", "\\")) or "://" in value:
        return "builds"
    return value.lstrip("/") or "builds"


def site_path(scope_path: str, root_path: str) -> str:
    """The request's path below the site's root: a proxy that serves podci under a prefix says so in
    `root_path`, and links must stay under it."""
    return scope_path[len(root_path) :] if root_path and scope_path.startswith(root_path) else scope_path


def root_of(path: str) -> str:
    """The relative way from a page at `path` (below the site's root) up to that root: links made
    from it work whatever host name or port the reader reached the site by (`PODCI_PUBLIC_URL` is
    for links that leave the site)."""
    return "../" * (path.count("/") - 1) or "./"


def no_csrf_token(request: Request) -> str:
    """The `csrf_token` hook of the templates until the action routes bring their own: no field."""
    return ""


def failing_tests(record: BuildRecord, log: str | None) -> list[tuple[TestCaseFailure, Excerpt | None]]:
    """Each failed test with where the test log reports it (the full log when the store has it, else
    the tail the record keeps)."""
    tests = record.tests
    if tests is None:
        return []
    text = log if log is not None else tests.log_tail
    return [(failure, find_failure(text, failure.name)) for failure in tests.failures]


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


def log_href(name: str) -> str:
    """A log's link from its build's page: `containers/web` keeps its slash (the route takes a path,
    and proxies that refuse an encoded slash are common); everything else in a segment is escaped."""
    return "/".join(quote(part, safe="") for part in name.split("/"))


def make_env(csrf_token: Callable[[Request], str]) -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)
    env.filters["seconds"] = lambda value: "" if value is None else format_seconds(value)
    env.filters["when"] = when
    env.filters["segment"] = lambda value: quote(value, safe="")  # one path segment: a build id
    env.globals["failure_anchor"] = failure_anchor
    env.filters["clip"] = clip
    env.filters["log_href"] = log_href
    env.filters["repo_path"] = repo_path
    env.globals["looks"] = LOOKS
    # The merge hook: the action routes set this to theirs, and each action form sends its answer as
    # the hidden field `csrf` (an empty answer: no field).
    env.globals["csrf_token"] = csrf_token
    return env


def make_router(
    store: BuildStore,
    public_url: str,
    access: Access | None = None,
    redactor: Redactor | None = None,
    log_store: LogStore | None = None,
    bitbucket_server_url: str | None = None,
    csrf_token: Callable[[Request], str] = no_csrf_token,
) -> APIRouter:
    """Routes under `/builds`, the login form, and `/` leading to the list. Links in the pages are
    relative, so they work under any host name, port or path prefix; `public_url` only says whether
    the login cookie must be `Secure`. Without `access` nobody may read a page (closed by default);
    without `log_store` no log is served."""
    access = access or Access()
    redactor = redactor or Redactor(())
    secure_cookie = public_url.startswith("https://")
    env = make_env(csrf_token)
    router = APIRouter()

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        path = site_path(request.scope["path"], request.scope.get("root_path", ""))
        html = env.get_template(name).render(root=root_of(path), http_request=request, **context)
        return HTMLResponse(html, status_code=status)

    def not_found(request: Request, sentence: str) -> Response:
        if wants_json(request):
            return JSONResponse({"error": sentence}, status_code=404)
        return render(request, "base.html", status=404, title="Not found", sentence=sentence)

    def reader(request: Request) -> str | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        client = request.client.host if request.client else None
        return access.reader(headers, request.cookies, client)

    def login_required(request: Request) -> Response:
        challenge = {"WWW-Authenticate": 'Bearer realm="podci"'}
        if wants_json(request):
            return JSONResponse({"error": LOGIN_REQUIRED}, status_code=401, headers=challenge)
        here = site_path(request.scope["path"], request.scope.get("root_path", ""))
        page = render(request, "login.html", status=401, title="Log in", sentence=LOGIN_REQUIRED,
                      next=local_next(here), failed=False)  # fmt: skip
        page.headers.update(challenge)
        return page

    @router.get("/", summary="the builds list", response_model=None, include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("builds", status_code=307)

    @router.get("/login", summary="the login form", response_model=None)
    def login_form(request: Request, next: str = "builds") -> Response:
        return render(request, "login.html", title="Log in", sentence=LOGIN_REQUIRED, next=local_next(next),
                      failed=False)  # fmt: skip

    @router.post("/login", summary="log in with a token; sets a cookie", response_model=None)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode(errors="replace"))
        token, target = form.get("token", [""])[0], local_next(form.get("next", ["builds"])[0])
        if not access.token_ok(token):
            return render(request, "login.html", status=401, title="Log in", sentence=LOGIN_REQUIRED,
                          next=target, failed=True)  # fmt: skip
        done = RedirectResponse("./" + target, status_code=303)
        done.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie, path="/")
        return done

    @router.get("/logout", summary="forget the login cookie", response_model=None)
    def logout() -> Response:
        done = RedirectResponse("login", status_code=303)
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
            return render(request, "base.html", status=400, title="Bad filter", sentence=sentence)
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
        return render(request, "builds.html", rows=rows, repo=repo, state=state,
                      states=list(BuildState.__members__))  # fmt: skip

    def full_test_log(record: BuildRecord, name: str | None) -> str | None:
        """The end of a failed build's test log, to find its failures in; None when not at hand."""
        if record.state is not BuildState.failed or log_store is None or name not in record.logs:
            return None
        try:
            tail = log_store.tail(record.name, name, LOG_SEARCHED_MAX)
        except (ValueError, LogStoreUnavailable):  # the page shows the record's tail instead
            return None
        return None if tail is None else redactor.text(tail.data.decode(errors="replace"))

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
            request,
            "build.html",
            record=record,
            refs=refs(record),
            seconds=duration(record, now),
            timeline=Markup(timeline_svg(record, width=TIMELINE_WIDTH, now=now)),  # noqa: S704 - built from escaped parts
            exec_command=exec_command(record),
            test_log=test_log,
            pod=pod_fact(record),
            service=service_fact(record),
            attempts=[(attempt, *attempt_end(record, attempt, now)) for attempt in record.pods],
            reporting=reporting(record),
            links=build_links(record.request, source_commit(record), bitbucket_server_url),
            failing=failing_tests(record, full_test_log(found, test_log)),
            signed_in=who is not None,
            may_retry=retry_refusal(record) is None,
            may_cancel=may_cancel(record),
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

    def may_read_repo(request: Request, repo: str) -> bool:
        return access.may_read(reader(request), repo)

    history = OutcomeHistory(store.redis, store.retention)
    add_live_route(router, store, may_read, login_required, redactor)
    add_flaky_route(router, history, may_read_repo, login_required, render, wants_json)
    return router
