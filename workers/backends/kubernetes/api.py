"""The one module that imports the `kubernetes` package: a thin adapter that speaks dicts.

Errors are classified here (kopf's split): 409 on create and 404 on delete are success (every step
may run twice); 429, 5xx and connection failures are `TransientError` (retried, honouring
Retry-After); 403, 422 and other refusals are `PermanentError` with the API's own message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import urllib3
import websocket
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import stream

from schemas.settings import Settings
from workers.errors import NotRunning, PermanentError, PodGone, TransientError

Obj = dict[str, Any]
_STDIN_CHUNK = 1 << 20  # bytes per websocket frame when streaming a file into an exec
_METHOD = {
    "pods": "namespaced_pod",
    "services": "namespaced_service",
    "persistentvolumeclaims": "namespaced_persistent_volume_claim",
    "persistentvolumes": "persistent_volume",
}


# Where a pod finds the namespace it runs in (the service account's files).
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _kubeconfig() -> str | None:
    """KUBECONFIG as it is now (the client reads it once, when it is imported); None: ~/.kube/config."""
    return os.environ.get("KUBECONFIG") or None


def _in_cluster() -> bool:
    try:
        config.load_incluster_config()
    except ConfigException:
        return False
    return True


def api_client(settings: Settings) -> client.ApiClient:
    """In a pod: the service account; elsewhere the kubeconfig (`KUBECONFIG`, `PODCI_KUBE_CONTEXT`)."""
    if not _in_cluster():
        try:
            config.load_kube_config(config_file=_kubeconfig(), context=settings.kube_context)
        except (ConfigException, FileNotFoundError) as exc:
            raise PermanentError(
                "no Kubernetes cluster is configured: podci is not running in a pod, and the kubeconfig "
                f"(KUBECONFIG, or ~/.kube/config) cannot be used: {exc}"
            ) from None
    return client.ApiClient()


def resolve_namespace(settings: Settings) -> str:
    """The build namespace as kubectl would choose it: PODCI_KUBE_NAMESPACE when set; in a pod, the
    pod's own; else the kubeconfig context's namespace, else `default`."""
    if settings.kube_namespace:
        return settings.kube_namespace
    if IN_CLUSTER_NAMESPACE.is_file():
        return IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
    try:
        contexts, current = config.list_kube_config_contexts(config_file=_kubeconfig())
    except (ConfigException, FileNotFoundError) as exc:
        raise PermanentError(
            f"no Kubernetes cluster is configured: the kubeconfig cannot be read: {exc}"
        ) from None
    chosen = (
        next((c for c in contexts if c.get("name") == settings.kube_context), None)
        if settings.kube_context
        else current
    )
    if chosen is None:
        raise PermanentError(
            f"the kubeconfig has no context named {settings.kube_context!r} (PODCI_KUBE_CONTEXT)"
        )
    namespace = (chosen.get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"


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
    and count a failure that got no HTTP answer at all as one of reaching the API (transient). A
    pod that is not found was lost: relaunched, not failed."""
    cause = exc.__context__
    answered: ApiException | None = exc if exc.status else None
    if isinstance(cause, websocket.WebSocketBadStatusException):
        answered = ApiException(status=cause.status_code, reason=cause.status_message or str(cause))
        answered.headers = urllib3.HTTPHeaderDict(cause.resp_headers or {})  # as the client gives them
        answered.body = cause.resp_body
    if answered is not None:
        if answered.status == 404:
            return PodGone(f"{what}: the pod is gone ({_message(answered)})")
        if answered.status == 400:
            return NotRunning(f"{what}: {_message(answered)}")
        return classify(answered, what)
    reason = type(cause).__name__ if cause is not None else exc.reason
    return TransientError(f"{what}: cannot reach the Kubernetes API: {reason}")


def _text(data: bytes | str) -> str:
    """The client answers bytes in binary mode, but "" for a channel that said nothing."""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


class KubeApi:
    def __init__(self, settings: Settings, api: client.ApiClient | None = None) -> None:
        self.core = client.CoreV1Api(api or api_client(settings))
        self.namespace = resolve_namespace(settings)

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

    def warnings(self, name: str, limit: int = 3) -> list[str]:
        """The latest Warning events about pod `name` (what `kubectl describe` shows last), oldest first;
        none when podci may not read events: they only explain, they never decide."""
        try:
            response = self.core.list_namespaced_event(
                self.namespace, field_selector=f"involvedObject.name={name},type=Warning",
                _preload_content=False, _request_timeout=10,
            )  # fmt: skip
        except (ApiException, urllib3.exceptions.HTTPError, OSError):
            return []
        items = sorted(json.loads(response.data)["items"], key=lambda e: str(e.get("lastTimestamp") or ""))
        seen: list[str] = []
        for event in items:
            said = f"{event.get('reason')}: {event.get('message')}"
            if said not in seen:
                seen.append(said)
        return seen[-limit:]

    def pod_log(self, name: str, container: str, timeout: float = 30) -> str:
        response = self._call(
            f"reading the log of {name}/{container}", self.core.read_namespaced_pod_log, name, self.namespace,
            container=container, ok=(400, 404), _request_timeout=timeout,
        )  # fmt: skip
        return "" if response is None else str(response.data.decode(errors="replace"))

    def follow_log(self, name: str, container: str, idle: float = 300) -> Iterator[bytes]:
        """A container's log from its start, as the API server streams it (`follow=true`: chunks as
        they are written, ending when the container terminates or the pod goes); nothing when the pod
        or container is not there. `idle`: seconds without a byte before the read gives up (the
        caller follows again from where it was)."""
        response = self._call(
            f"following the log of {name}/{container}", self.core.read_namespaced_pod_log, name,
            self.namespace, container=container, follow=True, ok=(400, 404), _request_timeout=(10, idle),
        )  # fmt: skip
        if response is None:
            return
        try:
            yield from response.stream(64 * 1024, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(f"following the log of {name}/{container}: {type(exc).__name__}") from None
        finally:
            response.release_conn()

    def exec(
        self, name: str, container: str, argv: list[str], timeout: float = 30, stdin: Path | None = None
    ) -> tuple[int, str]:
        """Run `argv` in a container, as `kubectl exec` does; returns (exit code, stdout + stderr).
        With `stdin`, the file's bytes are streamed to the command, as `kubectl cp` streams a tar."""
        what = f"exec in {name}/{container}"
        try:
            ws = stream(
                self.core.connect_get_namespaced_pod_exec, name, self.namespace, command=argv,
                container=container, stderr=True, stdin=stdin is not None, stdout=True, tty=False,
                _preload_content=False, binary=True,
            )  # fmt: skip
            if stdin is not None:
                with stdin.open("rb") as data:
                    while ws.is_open() and (chunk := data.read(_STDIN_CHUNK)):
                        ws.write_stdin(chunk)
                        ws.update(timeout=0)  # take in what the command said so far
            ws.run_forever(timeout=timeout)
            output = _text(ws.read_stdout()) + _text(ws.read_stderr())
            code = ws.returncode
            ws.close()
        except ApiException as exc:
            raise exec_error(exc, what) from None
        except (urllib3.exceptions.HTTPError, OSError, websocket.WebSocketException) as exc:
            raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from None
        return (code if code is not None else -1), output

    # --- up-front checks (`podci` commands that need a cluster run them before anything else) ------
    def version(self, timeout: float) -> str:
        """The API server's version; reaching it at all is the point."""
        try:
            info = client.VersionApi(self.core.api_client).get_code(
                _request_timeout=timeout, _preload_content=False
            )
        except ApiException as exc:
            raise classify(exc, "asking the API server for its version") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            host = self.core.api_client.configuration.host
            raise TransientError(f"cannot reach the Kubernetes API at {host}: {type(exc).__name__}") from None
        return str(json.loads(info.data).get("gitVersion", "?"))

    def can_i(self, verb: str, resource: str, subresource: str = "", *, timeout: float) -> bool:
        """A SelfSubjectAccessReview: may podci's own identity do `verb` on `resource` here?"""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {
                "namespace": "" if resource == "persistentvolumes" else self.namespace,
                "verb": verb, "resource": resource, "subresource": subresource,
            }},
        }  # fmt: skip
        auth = client.AuthorizationV1Api(self.core.api_client)
        response = self._call(
            "asking the API server what podci may do", auth.create_self_subject_access_review, review,
            _request_timeout=timeout,
        )  # fmt: skip
        return bool(json.loads(response.data).get("status", {}).get("allowed"))

    def dry_run_create(self, kind: str, body: Obj, *, timeout: float) -> None:
        """Create with `dryRun=All`: admission and a missing namespace answer, nothing is stored."""
        fn, scoped = self._fn("create", kind)
        self._call(f"creating {kind} (dry run)", fn, *scoped, body, dry_run="All", _request_timeout=timeout)

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
