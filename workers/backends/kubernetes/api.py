"""The one module that imports the `kubernetes` package: a thin adapter that speaks dicts.

Errors are classified here (kopf's split): 409 on create and 404 on delete are success (every step
may run twice); 429, 5xx and connection failures are `TransientError` (retried, honouring
Retry-After); 403, 422 and other refusals are `PermanentError` with the API's own message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import urllib3
import websocket
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import stream

from schemas.settings import Settings
from workers.errors import PermanentError, TransientError

Obj = dict[str, Any]
_METHOD = {
    "pods": "namespaced_pod",
    "services": "namespaced_service",
    "persistentvolumeclaims": "namespaced_persistent_volume_claim",
    "persistentvolumes": "persistent_volume",
}


def api_client(settings: Settings) -> client.ApiClient:
    """In a pod: the service account; elsewhere the kubeconfig (`KUBECONFIG`, `PODCI_KUBE_CONTEXT`)."""
    try:
        config.load_incluster_config()
    except ConfigException:
        try:
            config.load_kube_config(context=settings.kube_context)
        except (ConfigException, FileNotFoundError) as exc:
            raise PermanentError(
                f"no Kubernetes configuration: not in a cluster, and kubeconfig: {exc}"
            ) from None
    return client.ApiClient()


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


def classify(exc: ApiException, what: str) -> Exception:
    status = exc.status or 0
    if status == 429 or status >= 500:
        retry_after = (exc.headers or {}).get("Retry-After")
        error = TransientError(f"{what}: the Kubernetes API answered {status} ({_message(exc)})")
        error.retry_after = float(retry_after) if retry_after and retry_after.isdigit() else None
        return error
    return PermanentError(f"{what}: Kubernetes refused with {status} {exc.reason}: {_message(exc)}")


def exec_error(exc: ApiException, what: str) -> Exception:
    """Classify a failed exec. Its websocket handshake is refused like any request (429 with
    Retry-After, 5xx), but the client reports every exec failure as status 0 with the text of the
    websocket error, keeping the error itself only as the exception's context: read it from there,
    and count a failure that got no HTTP answer at all as one of reaching the API (transient)."""
    cause = exc.__context__
    if isinstance(cause, websocket.WebSocketBadStatusException):
        answered = ApiException(status=cause.status_code, reason=cause.status_message or str(cause))
        answered.headers = urllib3.HTTPHeaderDict(cause.resp_headers or {})  # as the client gives them
        answered.body = cause.resp_body
        return classify(answered, what)
    if exc.status:
        return classify(exc, what)
    reason = type(cause).__name__ if cause is not None else exc.reason
    return TransientError(f"{what}: cannot reach the Kubernetes API: {reason}")


class KubeApi:
    def __init__(self, settings: Settings, api: client.ApiClient | None = None) -> None:
        self.namespace = settings.kube_namespace
        self.core = client.CoreV1Api(api or api_client(settings))

    def _call(
        self, what: str, fn: Callable[..., Any], *args: Any, ok: tuple[int, ...] = (), **kw: Any
    ) -> Any:
        try:
            return fn(*args, _preload_content=False, **kw)
        except ApiException as exc:
            if exc.status in ok:
                return None
            raise classify(exc, what) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(f"{what}: cannot reach the Kubernetes API: {type(exc).__name__}") from None

    def _fn(self, verb: str, kind: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        name = _METHOD[kind]
        scoped = () if kind == "persistentvolumes" else (self.namespace,)
        return getattr(self.core, f"{verb}_{name}"), scoped

    def create(self, kind: str, body: Obj) -> bool:
        """Create; False when it exists already (409), which is success for an idempotent step."""
        fn, scoped = self._fn("create", kind)
        return (
            self._call(f"creating {kind}/{body['metadata']['name']}", fn, *scoped, body, ok=(409,))
            is not None
        )

    def delete(self, kind: str, name: str, grace_seconds: int = 5) -> bool:
        """Delete; False when it is gone already (404)."""
        fn, scoped = self._fn("delete", kind)
        body = client.V1DeleteOptions(grace_period_seconds=grace_seconds, propagation_policy="Background")
        return self._call(f"deleting {kind}/{name}", fn, name, *scoped, body=body, ok=(404,)) is not None

    def select(self, kind: str, selector: str) -> list[Obj]:
        fn, scoped = self._fn("list", kind)
        response = self._call(f"listing {kind}", fn, *scoped, label_selector=selector)
        return list(json.loads(response.data)["items"])

    def list_with_version(self, kind: str, selector: str) -> tuple[list[Obj], str]:
        fn, scoped = self._fn("list", kind)
        data = json.loads(self._call(f"listing {kind}", fn, *scoped, label_selector=selector).data)
        return list(data["items"]), str(data["metadata"].get("resourceVersion", ""))

    def pod_log(self, name: str, container: str) -> str:
        response = self._call(
            f"reading the log of {name}/{container}", self.core.read_namespaced_pod_log, name, self.namespace,
            container=container, ok=(400, 404),
        )  # fmt: skip
        return "" if response is None else str(response.data.decode(errors="replace"))

    def exec(self, name: str, container: str, argv: list[str], timeout: float = 30) -> tuple[int, str]:
        """Run `argv` in a container, as `kubectl exec` does; returns (exit code, stdout + stderr)."""
        try:
            ws = stream(
                self.core.connect_get_namespaced_pod_exec, name, self.namespace, command=argv,
                container=container, stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False,
            )  # fmt: skip
            ws.run_forever(timeout=timeout)
            output = ws.read_stdout() + ws.read_stderr()
            code = ws.returncode
            ws.close()
        except ApiException as exc:
            raise exec_error(exc, f"exec in {name}/{container}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(f"exec in {name}/{container}: {type(exc).__name__}: {exc}") from None
        return (code if code is not None else -1), output

    def watch_pods(self, selector: str, resource_version: str, timeout: int) -> Iterator[tuple[str, Obj]]:
        """Pod events after `resource_version` until `timeout`; `("ERROR", status)` when it is too old.

        The events are read as plain JSON: the client's `Watch` would also build a V1Pod model of each
        one, which took an eighth of a worker's CPU and which nothing here reads."""
        response = self.core.list_namespaced_pod(
            self.namespace, label_selector=selector, resource_version=resource_version,
            timeout_seconds=timeout, allow_watch_bookmarks=False, watch=True, _preload_content=False,
        )  # fmt: skip
        try:
            for line in watch.watch.iter_resp_lines(response):
                if line.strip():
                    event = json.loads(line)
                    yield str(event["type"]), dict(event["object"])
        finally:
            response.close()
            response.release_conn()
