"""The HTTP face of the fake: the real Kubernetes REST paths and shapes, so that the official client's
`CoreV1Api`, `watch.Watch` and `stream.stream` work against it unchanged.

Only translation happens here (query parameters, bodies, Status answers, streaming); the semantics are in
cluster.py. A pure ASGI middleware logs every request (websocket handshakes included) and applies
`FakeCluster.fail_next` before any route runs, like an overloaded API server in front of everything.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import yaml
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.backends.kubernetes.names import BUILD_LABEL

from .cluster import RESOURCES, FakeCluster, RequestRecord, truthy
from .errors import ApiError, bad_request, expired, status_body
from .exec_ws import deny, exec_endpoint
from .selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from .store import Subscriber

RECORD_KEY = "fake_k8s.record"


class RequestLog:
    """Append every request to `cluster.requests`, and answer the injected failures (`fail_next`)."""

    def __init__(self, app: ASGIApp, cluster: FakeCluster) -> None:
        self.app = app
        self.cluster = cluster

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        method = scope.get("method", "GET")
        record = RequestRecord(
            method,
            path,
            query,
            time.time(),
            websocket=scope["type"] == "websocket",
            build=self.cluster.attribute(path, query),
        )
        with self.cluster.lock:
            self.cluster.requests.append(record)
        scope[RECORD_KEY] = record

        async def logged_send(message: Message) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                record.status = message["status"]
            elif kind == "websocket.accept":
                record.status = 101
            elif kind == "websocket.close" and record.status is None:
                record.status = 403
            await send(message)

        failure = self.cluster.take_injection(method, path)
        if failure is None:
            await self.app(scope, receive, logged_send)
        elif scope["type"] == "http":
            await _status_response(failure)(scope, receive, logged_send)
        else:
            await deny(WebSocket(scope, receive, logged_send), failure)


def _status_response(error: ApiError) -> Response:
    return JSONResponse(error.body(), status_code=error.code, headers=error.headers)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        if "yaml" in request.headers.get("content-type", ""):
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the body of the request could not be decoded: {exc}") from None


def _int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"invalid value for {name}: {value!r}") from None


def _list_kind(resource: str) -> str:
    return RESOURCES[resource][0] + "List"


def make_app(state: FakeCluster) -> FastAPI:
    """The fake API server for `state`; run it with tests.helpers.Server and point the client at it."""
    app = FastAPI(title="fake Kubernetes API server", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestLog, cluster=state)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _status_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return _status_response(
                ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            )
        return _status_response(
            ApiError(exc.status_code, "NotFound", "the server could not find the requested resource")
        )

    def attribute(request: Request, obj: dict[str, Any]) -> None:
        record = request.scope.get(RECORD_KEY)
        build = (obj.get("metadata", {}).get("labels") or {}).get(BUILD_LABEL)
        if isinstance(record, RequestRecord) and build and record.build is None:
            record.build = build

    # -- discovery -----------------------------------------------------------------------------------

    @app.get("/version")
    async def version() -> dict[str, str]:
        major, minor = state.version.split(".")[:2]
        return {
            "major": major, "minor": minor, "gitVersion": f"v{state.version}",
            "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2024-05-01T00:00:00Z",
            "goVersion": "go1.22.2", "compiler": "gc", "platform": "linux/amd64",
        }  # fmt: skip

    @app.get("/api")
    async def api_versions() -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        }

    @app.get("/api/v1")
    async def api_resources() -> dict[str, Any]:
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        return {
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                {
                    "name": name,
                    "singularName": kind.lower(),
                    "namespaced": namespaced,
                    "kind": kind,
                    "verbs": verbs,
                }
                for name, (kind, namespaced) in RESOURCES.items()
            ],
        }

    @app.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
    async def access_review(request: Request) -> JSONResponse:
        """RBAC as podci's identity meets it: everything is allowed but what `FakeCluster.deny` took."""
        body = await _body(request)
        attributes = ((body or {}).get("spec") or {}).get("resourceAttributes") or {}
        right = (
            attributes.get("verb", ""),
            attributes.get("resource", ""),
            attributes.get("subresource", ""),
        )
        allowed = right not in state.denied
        status: dict[str, Any] = {"allowed": allowed}
        if not allowed:
            status["reason"] = "RBAC: no rule grants it"
        review = {**(body or {}), "status": status}
        review.setdefault("metadata", {})
        return JSONResponse(review, status_code=201)

    # -- pods/exec, pods/log -------------------------------------------------------------------------

    @app.websocket("/api/v1/namespaces/{namespace}/pods/{name}/exec")
    async def pod_exec(websocket: WebSocket, namespace: str, name: str) -> None:
        await exec_endpoint(websocket, state, namespace, name)

    @app.api_route("/api/v1/namespaces/{namespace}/pods/{name}/exec", methods=["GET", "POST"])
    async def pod_exec_plain(namespace: str, name: str) -> Response:
        raise bad_request("Upgrade request required")

    @app.get("/api/v1/namespaces/{namespace}/pods/{name}/log")
    async def pod_log(request: Request, namespace: str, name: str) -> Response:
        q = request.query_params
        target = state.log_container(namespace, name, q.get("container"), truthy(q.get("previous")))
        tail = _int_param(request, "tailLines")

        def tailed(text: str) -> str:
            if tail is None:
                return text
            lines = text.splitlines(keepends=True)
            return "".join(lines[-tail:]) if tail > 0 else ""

        if not truthy(q.get("follow")):
            with state.lock:
                return PlainTextResponse(tailed(target.log))

        async def follow() -> AsyncIterator[bytes]:
            """Stream the log as it grows, until the container terminates or the pod goes."""
            deadline = time.monotonic() + state.watch_timeout_cap
            with state.lock:
                sent = len(target.log)
                first = tailed(target.log)
            if first:
                yield first.encode()
            while time.monotonic() < deadline and not state.closed:
                with state.lock:
                    text, done = target.log, target.state == "terminated"
                    gone = (namespace, name) not in state.sim.pods
                if len(text) > sent:
                    yield text[sent:].encode()
                    sent = len(text)
                if done or gone:
                    return
                await asyncio.sleep(0.05)

        return StreamingResponse(follow(), media_type="text/plain")

    # -- collections and objects ---------------------------------------------------------------------

    async def collection(request: Request, resource: str, namespace: str | None) -> Response:
        _, namespaced = state.kind_of(resource)
        if namespace is not None and not namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        q = request.query_params
        if request.method == "POST":
            if namespace is None and namespaced:
                raise ApiError(405, "MethodNotAllowed", "create needs a namespace")
            obj = await _body(request)
            created = state.create(resource, namespace, obj, dry_run=bool(q.get("dryRun")))
            attribute(request, created)
            return JSONResponse(created, status_code=201)
        if request.method == "DELETE":
            return JSONResponse(
                state.delete_collection(resource, namespace, q.get("labelSelector"), q.get("fieldSelector"))
            )
        if truthy(q.get("watch")):
            return await watch(request, resource, namespace)
        items, rv = state.list_objects(resource, namespace, q.get("labelSelector"), q.get("fieldSelector"))
        return JSONResponse(
            {
                "kind": _list_kind(resource),
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            }
        )

    async def watch(request: Request, resource: str, namespace: str | None) -> Response:
        q = request.query_params
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"))
        since = _int_param(request, "resourceVersion")
        timeout = float(_int_param(request, "timeoutSeconds") or state.watch_timeout_default)
        timeout = min(timeout, state.watch_timeout_cap)
        sub = Subscriber(resource, asyncio.get_running_loop())
        with state.lock:
            backlog = None if state.closed else state.store.subscribe(resource, since, sub)
            oldest = state.store.compacted_rv
            closed = state.closed

        def wanted(namespace_of: str, obj: dict[str, Any]) -> bool:
            return (
                (namespace is None or namespace_of == namespace)
                and labels_match(labels, obj)
                and fields_match(fields, obj)
            )

        async def stream() -> AsyncIterator[bytes]:
            try:
                if closed:
                    return
                if backlog is None:
                    error = expired(since or 0, oldest)
                    yield (
                        json.dumps(
                            {"type": "ERROR", "object": status_body(error.code, error.reason, error.message)}
                        )
                        + "\n"
                    ).encode()
                    return
                for event in backlog:
                    if wanted(event.namespace, event.object):
                        yield event.line()
                deadline = time.monotonic() + timeout
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    try:
                        incoming = await asyncio.wait_for(sub.queue.get(), remaining)
                    except TimeoutError:
                        return
                    if incoming is None:
                        return
                    if wanted(incoming.namespace, incoming.object):
                        yield incoming.line()
            finally:
                with state.lock:
                    state.store.unsubscribe(sub)

        return StreamingResponse(stream(), media_type="application/json")

    async def one(request: Request, resource: str, namespace: str | None, name: str) -> Response:
        _, namespaced = state.kind_of(resource)
        if (namespace is not None) != namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if request.method == "GET":
            return JSONResponse(state.read(resource, namespace, name))
        if request.method == "DELETE":
            body = await _body(request)
            grace = _int_param(request, "gracePeriodSeconds")
            if isinstance(body, dict) and body.get("gracePeriodSeconds") is not None:
                grace = int(body["gracePeriodSeconds"])
            return JSONResponse(state.delete(resource, namespace, name, grace))
        body = await _body(request)
        if request.method == "PATCH":
            result = state.patch(resource, namespace, name, body, request.headers.get("content-type", ""))
        else:
            result = state.replace(resource, namespace, name, body)
        return JSONResponse(result)

    @app.get("/api/v1/namespaces/{namespace}/{resource}/{name}/status")
    async def namespaced_status(request: Request, namespace: str, resource: str, name: str) -> Response:
        return JSONResponse(state.read(resource, namespace, name))

    @app.api_route(
        "/api/v1/namespaces/{namespace}/{resource}/{name}", methods=["GET", "PUT", "PATCH", "DELETE"]
    )
    async def namespaced_one(request: Request, namespace: str, resource: str, name: str) -> Response:
        return await one(request, resource, namespace, name)

    @app.api_route("/api/v1/namespaces/{namespace}/{resource}", methods=["GET", "POST", "DELETE"])
    async def namespaced_collection(request: Request, namespace: str, resource: str) -> Response:
        return await collection(request, resource, namespace)

    @app.api_route("/api/v1/{resource}/{name}", methods=["GET", "PUT", "PATCH", "DELETE"])
    async def cluster_one(request: Request, resource: str, name: str) -> Response:
        return await one(request, resource, None, name)

    @app.api_route("/api/v1/{resource}", methods=["GET", "POST", "DELETE"])
    async def cluster_collection(request: Request, resource: str) -> Response:
        """Cluster-scoped kinds, and namespaced ones listed/watched across all namespaces."""
        return await collection(request, resource, None)

    return app
