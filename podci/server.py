"""The HTTP server `podci serve` runs: the webhook receiver, the build pages, `/metrics` and `/healthz`
on one FastAPI app. The receiver (`events/`) and the pages (`web/`) know nothing of each other; they
meet here."""

from __future__ import annotations

from celery import Celery
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis import Redis
from redis.exceptions import RedisError

from dispatch.app import make_app
from events import receiver
from events.intake import Intake
from schemas.settings import Settings
from store.builds import BuildStore
from store.connection import connect
from store.metrics import RedisCollector
from web import pages


def create_app(settings: Settings, celery: Celery | None = None, redis: Redis | None = None) -> FastAPI:
    redis = redis or connect(settings.require_redis_url())
    store = BuildStore(redis)
    intake = Intake(settings, store, celery or make_app(settings))
    api = FastAPI(title="podci", version="0.1.0", description="Webhooks in, builds out.")
    api.include_router(receiver.make_router(settings, intake))
    api.include_router(pages.make_router(store, settings.public_url))

    registry = CollectorRegistry(auto_describe=True)
    registry.register(RedisCollector(redis))

    @api.get("/metrics", summary="Prometheus metrics, read from Redis at each scrape")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/healthz", summary="200 when Redis answers")
    def healthz() -> JSONResponse:
        try:
            redis.ping()
        except RedisError as exc:
            return JSONResponse({"error": f"Redis does not answer: {exc}"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return api


def app_from_environment() -> FastAPI:
    """The app as `podci serve --workers N` builds it in each worker process (uvicorn's factory):
    the settings come from the same PODCI_* environment the parent already validated."""
    return create_app(Settings())
