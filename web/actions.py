"""`POST /builds/{id}/retry` and `POST /builds/{id}/cancel`: the build page's buttons, and scripts.

Only a signed-in person may act (`web.access`: a page token, or a trusted proxy's user); a public
repository's readers may look, not act. A browser sends the login cookie (or the proxy's session) with
any form post, including one a foreign site makes it send, so a post that is not authenticated by an
`Authorization: Bearer` header (which no browser adds on another site's behalf) must come from this
site: its `Origin` header (or, without one, its `Referer`) must be the origin of `PODCI_PUBLIC_URL` or
of the request itself. Browsers set both headers themselves and a page cannot forge them, so no token
has to be rendered into the forms.

The pages never act themselves (import rule: `web/` sends nothing): what a retry or a cancel does is
handed in by the server (`dispatch.actions`), as `Act` functions of (build id, who).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from schemas.action import Acted, NotPossible, UnknownBuild
from web.access import Access

Act = Callable[[str, str], Acted]
Origin = tuple[str, str, int]
LOGIN_REQUIRED = "Log in to retry or cancel builds: a token from PODCI_UI_TOKENS, or your company's login."
FOREIGN = ("This request did not come from podci's own pages (its Origin or Referer names another site, "
           "or it has neither): nothing was done.")  # fmt: skip
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> Origin | None:
    """(scheme, host, port) of a URL, as browsers compare origins; None for `null` or nonsense."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return scheme, host, port or DEFAULT_PORTS[scheme]


def same_origin(headers: Mapping[str, str], allowed: set[Origin]) -> bool:
    """Did a browser send this from one of the `allowed` origins? `Origin` when present (every
    current browser sends it with a POST), else `Referer`; with neither, no. Lowercase header names."""
    sent = headers.get("origin") or headers.get("referer")
    return sent is not None and origin_of(sent) in allowed


def bearer_authenticated(headers: Mapping[str, str], access: Access) -> bool:
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and access.token_ok(given.strip())


def actor(reader: str) -> str:
    """Who acted, as the build's reason says it: the proxy's user name, else that a token was used."""
    return "a page token holder" if reader == "token" else reader


def make_router(access: Access, public_url: str, retry: Act, cancel: Act) -> APIRouter:
    """The two routes. Each answers 303 to the build to look at now with a relative `Location`
    (`../ID`: from `/builds/OLD/retry` that is `/builds/ID`, under any path prefix a proxy adds),
    401 without a login, 403 from a foreign page, 404 for an unknown build, 409 when not possible."""
    router = APIRouter()
    site = origin_of(public_url)

    def act(request: Request, build_id: str, action: Act) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        client = request.client.host if request.client else None
        who = access.reader(headers, request.cookies, client)
        if who is None:
            return answer(request, 401, LOGIN_REQUIRED, {"WWW-Authenticate": 'Bearer realm="podci"'})
        allowed = {o for o in (site, origin_of(str(request.base_url))) if o is not None}
        if not bearer_authenticated(headers, access) and not same_origin(headers, allowed):
            return answer(request, 403, FOREIGN)
        try:
            acted = action(build_id, actor(who))
        except UnknownBuild as exc:
            return answer(request, 404, exc.sentence)
        except NotPossible as exc:
            return answer(request, 409, exc.sentence)
        body = {"build_id": acted.build_id, "reason": acted.sentence, "changed": acted.changed}
        return JSONResponse(body, status_code=303, headers={"Location": f"../{acted.build_id}"})

    @router.post(
        "/builds/{build_id}/retry", summary="retry a finished build (signed in)", response_model=None
    )
    def retry_route(request: Request, build_id: str) -> Response:
        return act(request, build_id, retry)

    @router.post(
        "/builds/{build_id}/cancel", summary="cancel a running build (signed in)", response_model=None
    )
    def cancel_route(request: Request, build_id: str) -> Response:
        return act(request, build_id, cancel)

    return router


def answer(request: Request, status: int, sentence: str, headers: dict[str, str] | None = None) -> Response:
    """A refusal: JSON for scripts that ask for it, else the sentence as text (a form post's reader)."""
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return JSONResponse({"error": sentence}, status_code=status, headers=headers)
    return PlainTextResponse(sentence, status_code=status, headers=headers)
