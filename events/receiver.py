"""The webhook receiver's routes: verify, parse, decide, record and enqueue, and answer at once.

Order matters: the size limit and the signature are checked before the body is even parsed, and
nothing is written to Redis until the decision is made. Redis calls are made directly from the
async handlers: each is well under a millisecond, cheaper than a hop through a thread pool. So one
process works on one webhook at a time, about a millisecond of CPU each (recording, then the Celery
publish, are most of it): `podci serve --workers N` runs N processes on one port, one per core.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from events import bitbucket, jenkins
from events.errors import PayloadError, SignatureError
from events.intake import Intake, Reply
from events.options import ParseOptions
from events.signature import verify_basic, verify_signature, verify_token
from schemas.event import Decision
from schemas.settings import HOOK_SECRETS, Hook, Settings, csv, env_name

Parser = Callable[[Mapping[str, str], Any, ParseOptions], Decision]


class TooLarge(Exception):
    pass


def _json(body: bytes) -> Any:
    """Every way `json.loads` can refuse a body (bad UTF-8 or syntax, nesting deep enough to exhaust
    the stack, an integer of more than 4,300 digits) is the sender's error: a 400, never a 500."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"the body is not valid JSON: {exc}") from None


def options_from(settings: Settings) -> ParseOptions:
    return ParseOptions(
        branch_builds=settings.branch_build_patterns,
        jenkins_phase=settings.jenkins_phase,
        server_base_url=settings.bitbucket_server_url,
        clone_hosts=settings.clone_host_patterns,
        jenkins_urls=settings.jenkins_url_prefixes,
        trusted_authors=csv(settings.trusted_authors),
        trusted_repos=csv(settings.trusted_repos),
        trust_everyone=settings.trust_everyone,
    )


class HookOff(Exception):
    """The receiver is not in PODCI_HOOKS (404)."""


def _hook_on(settings: Settings, provider: Hook) -> None:
    if provider not in settings.enabled_hooks:
        raise HookOff(f"the {provider} receiver is off on this podci (PODCI_HOOKS)")


def _unsigned(settings: Settings, provider: Hook) -> None:
    """A receiver without its secret refuses everything, unless the operator named it insecure."""
    if provider not in settings.insecure_hooks:
        names = " or ".join(env_name(n) for n in HOOK_SECRETS[provider])
        raise SignatureError(f"this podci has no secret for {provider} requests ({names}): all are refused")


def check_bitbucket(settings: Settings, headers: Mapping[str, str], body: bytes) -> None:
    """Each product is checked with its own secret: a sender cannot pick the other product's (or an
    unprotected one) by choosing its headers, since a product without a secret refuses everything."""
    secrets: dict[Hook, SecretStr | None] = {
        "bitbucket-cloud": settings.bitbucket_cloud_secret,
        "bitbucket-server": settings.bitbucket_server_secret,
    }
    provider = bitbucket.provider_from_headers(headers)
    _hook_on(settings, provider)
    secret = secrets[provider]
    if secret is None:
        _unsigned(settings, provider)
        return
    verify_signature(body, headers.get("x-hub-signature"), secret.get_secret_value())


def check_jenkins(settings: Settings, headers: Mapping[str, str], body: bytes) -> None:
    """The first credential the request carries decides: `X-Podci-Token`, then `Authorization: Basic`
    (the Notification plugin's `user:token@` URL), then an `X-Hub-Signature` HMAC."""
    _hook_on(settings, "jenkins")
    token, secret = settings.jenkins_token, settings.jenkins_secret
    if token is None and secret is None:
        _unsigned(settings, "jenkins")
        return
    if token is not None and "x-podci-token" in headers:
        verify_token(headers["x-podci-token"], token.get_secret_value())
    elif token is not None and "authorization" in headers:
        verify_basic(headers["authorization"], token.get_secret_value())
    elif secret is not None and ("x-hub-signature" in headers or token is None):
        verify_signature(body, headers.get("x-hub-signature"), secret.get_secret_value())
    else:
        accepted = "an X-Podci-Token header or `Authorization: Basic` with the token as password"
        if secret is not None:
            accepted += ", or an X-Hub-Signature"
        raise SignatureError(f"the request has no credentials: send {accepted} (PODCI_JENKINS_TOKEN)")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def make_router(settings: Settings, intake: Intake) -> APIRouter:
    """`POST /hooks/bitbucket` and `POST /hooks/jenkins`."""
    options = options_from(settings)
    router = APIRouter()

    async def receive(
        request: Request, check: Callable[[Settings, Mapping[str, str], bytes], None], parse: Parser
    ) -> JSONResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = await read_body(request, settings.max_body_bytes)
            check(settings, headers, body)
            decision = parse(headers, _json(body), options)
        except HookOff as exc:
            return _error(404, str(exc))
        except TooLarge:
            return _error(
                413, f"the body is larger than {settings.max_body_bytes} bytes (PODCI_MAX_BODY_BYTES)"
            )
        except SignatureError as exc:
            return _error(401, str(exc))
        except PayloadError as exc:
            return _error(400, str(exc))
        reply: Reply = intake.handle(decision)
        return JSONResponse(reply.body, status_code=reply.status)

    @router.post("/hooks/bitbucket", summary="Bitbucket Cloud and Server/Data Center webhooks")
    async def hook_bitbucket(request: Request) -> JSONResponse:
        return await receive(request, check_bitbucket, bitbucket.parse)

    @router.post("/hooks/jenkins", summary="Jenkins Notification plugin and the generic trigger")
    async def hook_jenkins(request: Request) -> JSONResponse:
        return await receive(request, check_jenkins, jenkins.parse)

    return router
