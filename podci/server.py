"""The HTTP server `podci serve` runs: the webhook receiver, the build pages, `/metrics` and `/healthz`
on one FastAPI app. The receiver (`events/`) and the pages (`web/`) know nothing of each other; they
meet here."""

from __future__ import annotations

import hmac
import logging
from functools import partial

from celery import Celery
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from kombu.exceptions import OperationalError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from dispatch import actions as build_actions
from dispatch.app import make_app
from events import receiver
from events.intake import Intake
from podci.http_protocol import too_large
from schemas.public import Redactor
from schemas.settings import Settings
from store.builds import BuildStore
from store.connection import connect_to
from store.logstore import open_log_store
from store.metrics import RedisCollector
from web import actions, pages
from web.access import Access

log = logging.getLogger("podci.server")

# Redis down, hung past PODCI_REDIS_TIMEOUT, or refusing the broker's publish: nothing was done that
# the sender cannot do again, so it is told to come back (Bitbucket and Jenkins redeliver).
UNAVAILABLE = (RedisError, OperationalError, ConnectionError, TimeoutError)
RETRY_AFTER = 10


class HeaderCap:
    """431 for a request whose line and headers pass `limit` bytes. `podci serve`'s protocol
    (`podci.http_protocol`) already stops reading a little past the limit; this makes the limit exact."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.limit:
                sentence = too_large(self.limit)
                await JSONResponse({"error": sentence}, status_code=431)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def unavailable(exc: BaseException) -> JSONResponse:
    sentence = (f"Redis, where podci records builds, is unavailable ({type(exc).__name__}); nothing was "
                f"recorded: send the request again in {RETRY_AFTER} seconds")  # fmt: skip
    return JSONResponse({"error": sentence}, status_code=503, headers={"Retry-After": str(RETRY_AFTER)})


def create_app(settings: Settings, celery: Celery | None = None, redis: Redis | None = None) -> FastAPI:
    redis = redis or connect_to(settings, timeout=settings.redis_timeout)
    store = BuildStore(redis, settings.retention_seconds)
    intake = Intake(settings, store, celery or make_app(settings, publish_timeout=settings.redis_timeout))
    insecure = list(settings.insecure_hooks)
    for hook in insecure:
        log.warning(
            "INSECURE: the %s receiver accepts requests without any secret (PODCI_INSECURE_UNSIGNED_HOOKS); "
            "anyone who can reach this server can start builds", hook,
        )  # fmt: skip
    api = FastAPI(title="podci", version="0.1.0", description="Webhooks in, builds out.")
    api.add_middleware(HeaderCap, limit=settings.max_header_bytes)
    for error in UNAVAILABLE:
        api.add_exception_handler(error, lambda request, exc: unavailable(exc))
    api.include_router(receiver.make_router(settings, intake))
    redactor = Redactor(settings.secret_values(), [str(settings.state_dir)])
    log_store = open_log_store(settings.log_store_url, settings.s3_endpoint_url)
    api.include_router(
        pages.make_router(
            store, settings.public_url, Access.from_settings(settings), redactor, log_store,
            bitbucket_server_url=settings.bitbucket_server_url,
        )
    )  # fmt: skip
    retry = partial(build_actions.retry, intake.app, store, settings)
    cancel = partial(build_actions.cancel, intake.app, store)
    api.include_router(
        actions.make_router(Access.from_settings(settings), settings.public_url, retry, cancel)
    )

    registry = CollectorRegistry(auto_describe=True)
    registry.register(RedisCollector(redis))

    metrics_token = settings.metrics_token.get_secret_value() if settings.metrics_token else None

    @api.get("/metrics", summary="Prometheus metrics, read from Redis at each scrape (bearer token)")
    def metrics(request: Request) -> Response:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if not (
            metrics_token
            and scheme.lower() == "bearer"
            and hmac.compare_digest(given.encode(), metrics_token.encode())
        ):
            why = "send `Authorization: Bearer` with PODCI_METRICS_TOKEN" if metrics_token else (
                "set PODCI_METRICS_TOKEN and send it as `Authorization: Bearer`")  # fmt: skip
            return JSONResponse({"error": f"/metrics needs a login: {why}"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="podci-metrics"'})  # fmt: skip
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/healthz", summary="200 when Redis answers; says what is down, and which receivers are open")
    def healthz() -> JSONResponse:
        extra = {"insecure_unsigned_hooks": insecure} if insecure else {}
        try:
            redis.ping()
        except RedisError as exc:
            down = f"Redis does not answer within {settings.redis_timeout:g} s ({type(exc).__name__})"
            return JSONResponse({"status": "down", "redis": "down", "error": down, **extra}, status_code=503)
        return JSONResponse({"status": "ok", "redis": "ok", **extra})

    return api


def app_from_environment() -> FastAPI:
    """The app as `podci serve --workers N` builds it in each worker process (uvicorn's factory):
    the settings come from the same PODCI_* environment the parent already validated."""
    return create_app(Settings())
