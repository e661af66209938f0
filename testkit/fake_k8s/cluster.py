"""FakeCluster: the state behind the fake API server, its API semantics, and the tests' controls.

The HTTP layer (app.py) only translates requests into calls of the methods in "API operations" below;
what a real API server would do (defaults, server-set fields, 404/409/422, graceful pod deletion,
claim protection, the scheduler and kubelet through lifecycle.py) lives here so that it is one piece.

Tests run the server in a uvicorn thread and call the control methods from their own thread: every
method takes `self.lock`, and watchers are woken through their event loop (see store.py).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import posixpath
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
from referencing import Registry, Resource

from workers.backends.kubernetes.names import BUILD_LABEL

from .admission import ENFORCE, forbidden, level_of, violations
from .errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    injected,
    invalid,
    no_node_address,
    not_found,
    success_body,
)
from .lifecycle import ContainerSim, PodSim, SimSettings, Simulator, iso
from .nodes import Node, as_node, replacement_name
from .selectors import (
    build_of_selector,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from .store import Obj, ObjectStore

# resource (URL plural) -> (kind, namespaced)
RESOURCES: dict[str, tuple[str, bool]] = {
    "pods": ("Pod", True),
    "services": ("Service", True),
    "persistentvolumeclaims": ("PersistentVolumeClaim", True),
    "events": ("Event", True),
    "configmaps": ("ConfigMap", True),
    "secrets": ("Secret", True),
    "persistentvolumes": ("PersistentVolume", False),
    "namespaces": ("Namespace", False),
}
# Their status is written only through /status (here: by the simulated controllers), never by a PATCH/PUT.
STATUS_SUBRESOURCE = {"pods", "services", "persistentvolumeclaims", "persistentvolumes", "namespaces"}
# DELETE answers the object for these (the client's return types say so), a Status for the others.
DELETE_RETURNS_OBJECT = {"pods", "services", "persistentvolumeclaims", "persistentvolumes"}
DEFAULT_UNSCHEDULABLE = "0/3 nodes are available: 3 Insufficient memory."
LOSE_WAYS = ("evict", "delete", "lose_node", "shutdown_node")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what generateName appends


@dataclass
class RequestRecord:
    """One request as the fake saw it (websocket handshakes included)."""

    method: str
    path: str
    query: str
    time: float
    websocket: bool = False
    status: int | None = None
    build: str | None = None  # the podci.io/build the request concerns, when the fake can tell

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query)

    @property
    def watch(self) -> bool:
        return truthy(self.params.get("watch", [""])[0]) or truthy(self.params.get("follow", [""])[0])

    @property
    def parts(self) -> tuple[str | None, str | None, str | None, str | None]:
        """(resource, namespace, name, subresource) parsed from a /api/v1 path."""
        return parse_path(self.path)

    @property
    def resource(self) -> str | None:
        return self.parts[0]

    @property
    def name(self) -> str | None:
        return self.parts[2]

    @property
    def subresource(self) -> str | None:
        return self.parts[3]


@dataclass
class ExecRecord:
    namespace: str
    pod: str
    container: str
    command: list[str]
    time: float
    exit_code: int


@dataclass
class _Injection:
    remaining: int
    status: int
    retry_after: int | None
    method: str | None
    path_contains: str | None


def parse_path(path: str) -> tuple[str | None, str | None, str | None, str | None]:
    parts = [p for p in path.split("/") if p]
    if parts[:2] != ["api", "v1"]:
        return (None, None, None, None)
    rest = parts[2:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
        return (rest[0], ns, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)
    if rest:
        return (rest[0], None, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)
    return (None, None, None, None)


def truthy(value: str | None) -> bool:
    """Go's strconv.ParseBool: the Python client sends `True`/`False`, kubectl `true`/`false`."""
    return (value or "") in ("1", "t", "T", "true", "True", "TRUE")


def _field_path(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


@functools.cache
def _strict_validator(version: str, kind: str) -> Any:
    """The schema kubernetes_validate.validate(obj, version, strict=True) uses, compiled once: it reloads
    1.2 MB of definitions per call (~10 ms), too slow for checking every state the fake produced."""
    wanted = kubernetes_validate.utils.major_minor(version)
    chosen = [
        v
        for v in kubernetes_validate.utils.all_versions()
        if kubernetes_validate.utils.major_minor(v) <= wanted
    ]
    folder = f"kubernetes-json-schema/v{chosen[-1]}-local-strict"
    schema = kubernetes_validate.utils.schema_contents(f"{folder}/{kind.lower()}-v1.json", version)
    definitions = kubernetes_validate.utils.schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (strategic merge is treated the same: lists are replaced)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):  # strategic-merge directives ($patch, $retainKeys...): not simulated
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(doc: Obj, operations: list[Any]) -> Obj:
    """RFC 6902 add/replace/remove/test, enough for label and annotation edits."""
    doc = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or "path" not in op:
            raise bad_request("invalid JSON patch operation")
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        parent: Any = doc
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent.setdefault(token, {})
        last = tokens[-1] if tokens else ""
        kind = op.get("op")
        try:
            if kind in ("add", "replace"):
                if isinstance(parent, list):
                    index = len(parent) if last == "-" else int(last)
                    if kind == "add":
                        parent.insert(index, op.get("value"))
                    else:
                        parent[index] = op.get("value")
                else:
                    if kind == "replace" and last not in parent:
                        raise bad_request(
                            f"replace operation does not apply: doc is missing key: {op['path']}"
                        )
                    parent[last] = op.get("value")
            elif kind == "remove":
                if isinstance(parent, list):
                    parent.pop(int(last))
                else:
                    del parent[last]
            elif kind == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
                if current != op.get("value"):
                    raise ApiError(422, "Invalid", f"testing value {op['path']} failed")
            else:
                raise bad_request(f"unexpected JSON patch operation {kind!r}")
        except (KeyError, IndexError, ValueError) as exc:
            raise bad_request(f"the JSON patch does not apply: {op['path']}") from exc
    return doc


class FakeCluster:
    """A simulated Kubernetes cluster behind `make_app(cluster)`; see the package docstring for use.

    version: the Kubernetes version objects are validated against (kubernetes_validate, strict).
    settings: global SimSettings (per build: `configure(build, ...)`).
    namespaces: created at start; creating in any other namespace is 404, as on a real server.
    namespace_labels: labels of those namespaces. By default `podci-builds` enforces the Pod Security
        Standard `restricted` (`pod-security.kubernetes.io/enforce`), as deploy/ labels it: a pod that
        breaks it is refused with 403 as Pod Security Admission refuses it (admission.py).
    nodes: the nodes pods are scheduled on (names, or `Node`s with labels and taints): each pod on
        the next, in turn, of the nodes whose labels match its nodeSelector and whose NoSchedule and
        NoExecute taints it tolerates; when none does, it stays Pending with the scheduler's message.
    replace_lost_nodes: a node taken away by `lose_node` is followed by a new one with the same labels
        and taints, as a cloud node group keeps its size (False: the capacity is gone for good).
    history_size: watch events kept for resuming; older resourceVersions get 410 Expired.
    watch_timeout_default / watch_timeout_cap: a watch without timeoutSeconds / the longest one.
    pvc_protection: a claim deleted while a pod uses it stays Terminating until the pod is gone.
    volume_markers: START_TESTS_SCRIPT honours `.podci/tests.started` left on the build's volume by an
        earlier pod, as the real script does (default: the test run is started once per pod).
    emit_events: write core/v1 Events (Scheduled, FailedScheduling, Failed, BackOff, Evicted, Killing).
    validate: validate created/patched/replaced objects (422 when invalid).
    """

    def __init__(
        self,
        *,
        version: str = "1.30.0",
        settings: SimSettings | None = None,
        namespaces: tuple[str, ...] = ("default", "kube-system", "podci-builds"),
        namespace_labels: dict[str, dict[str, str]] | None = None,
        nodes: Sequence[str | Node] = ("fake-node-1", "fake-node-2", "fake-node-3"),
        replace_lost_nodes: bool = True,
        history_size: int = 1000,
        watch_timeout_default: float = 60.0,
        watch_timeout_cap: float = 300.0,
        pvc_protection: bool = True,
        volume_markers: bool = False,
        emit_events: bool = True,
        validate: bool = True,
        dynamic_provisioning: bool = True,
    ) -> None:
        self.lock = threading.RLock()
        self.version = version
        self.settings = settings or SimSettings()
        self.nodes = [as_node(node) for node in nodes]
        self.replace_lost_nodes = replace_lost_nodes
        # every node that ever joined, by name -> its address (a pod bound to a lost node keeps its hostIP)
        self._node_addresses: dict[str, str] = {}
        for node in self.nodes:
            self.node_address(node.name)
        self.watch_timeout_default = watch_timeout_default
        self.watch_timeout_cap = watch_timeout_cap
        self.pvc_protection = pvc_protection
        self.volume_markers = volume_markers  # START_TESTS honours .podci/tests.started on the volume
        self.dynamic_provisioning = dynamic_provisioning  # False: a claim binds only to an existing PV
        self.emit_events = emit_events
        self.validation = validate
        self.store = ObjectStore(self.lock, history_size)
        self.closed = False

        # what the tests read
        self.requests: list[RequestRecord] = []
        self.validated: list[Obj] = []  # every object that passed kubernetes_validate (create/patch/put)
        self.refused: list[tuple[Obj, str]] = []  # objects refused with 422, with the message
        self.execs: list[ExecRecord] = []
        self.problems: list[str] = []  # the fake's own failures (a crashed step): tests assert it empty
        # (time.time(), build, what) for "ready" (every container ready) and "tests-finished": what a
        # benchmark needs to time the steps between API requests
        self.marks: list[tuple[float, str | None, str]] = []

        # simulation settings and faults
        self.build_settings: dict[str, dict[str, Any]] = {}
        self.unschedulable_builds: dict[str, str] = {}
        self.failing_images: dict[str, set[str]] = {}
        self.lose_plans: dict[str, list[Any]] = {}  # build -> [remaining, how]
        self.files: dict[str, dict[str, str]] = {}  # build -> path -> content (the workspace volume)
        self.bundles: dict[str, bytes] = {}  # build -> the git bundle an exec delivered to its volume
        self.checkouts: list[tuple[str, str]] = []  # (pod, commit) of every checkout of a delivered bundle
        # where static volumes keep data ("node:<name>" or "nfs:<server>") -> directories there
        self.volume_dirs: dict[str, set[str]] = {}
        self.loopback_only: set[tuple[str | None, str]] = set()  # (build, container) binding 127.0.0.1
        self.denied: set[tuple[str, str, str]] = set()  # (verb, resource, subresource) refused by RBAC
        self.unreachable: set[str] = set()  # pods on a node the API server cannot reach (logs, exec: 500)
        self.vanish_on_exec: set[tuple[str, str | None]] = set()  # (pod, container): deleted at that exec
        self.exec_handler: Callable[[ExecRecord], tuple[int, str, str] | None] | None = None
        self._injections: list[_Injection] = []
        self._builds: dict[tuple[str, str, str], str] = {}  # (resource, ns, name) -> build, kept after delete

        self.sim = Simulator(self)
        labels = {"podci-builds": {ENFORCE: "restricted"}} if namespace_labels is None else namespace_labels
        with self.lock:
            for name in namespaces:
                meta: Obj = {"name": name, "labels": dict(labels.get(name, {}))}
                self._store_new("namespaces", "", {"apiVersion": "v1", "kind": "Namespace", "metadata": meta})

    # == control: simulation settings ================================================================

    def configure(self, build: str | None = None, **changes: Any) -> None:
        """Change simulation settings (SimSettings field names) globally, or for one build only."""
        names = {f.name for f in dataclasses.fields(SimSettings)}
        unknown = set(changes) - names
        if unknown:
            raise TypeError(f"unknown simulation settings {sorted(unknown)}; known: {sorted(names)}")
        with self.lock:
            if build is None:
                self.settings = dataclasses.replace(self.settings, **changes)
            else:
                self.build_settings.setdefault(build, {}).update(changes)

    def settings_for(self, build: str | None) -> SimSettings:
        with self.lock:
            overrides = self.build_settings.get(build or "")
            return dataclasses.replace(self.settings, **overrides) if overrides else self.settings

    # == control: faults =============================================================================

    def listens_on_loopback(self, build: str, container: str) -> None:
        """`container` of the build binds its probed port to 127.0.0.1 only: its probe is refused."""
        with self.lock:
            self.loopback_only.add((build, container))

    def vanish_at_next_exec(self, pod_name: str, container: str | None = None) -> None:
        """The pod is deleted (at once, as a force delete) just as the next exec into it (into
        `container`, when given) arrives: the exec's handshake then answers 404, as a real API server
        does for a pod that is gone."""
        with self.lock:
            self.vanish_on_exec.add((pod_name, container))

    def unreachable_node(self, pod_name: str) -> None:
        """The pod's node has no address the API server can use: its logs and exec answer 500."""
        with self.lock:
            self.unreachable.add(pod_name)

    def deny(self, verb: str, resource: str, subresource: str = "") -> None:
        """RBAC: SelfSubjectAccessReviews for this right answer `allowed: false`."""
        with self.lock:
            self.denied.add((verb, resource, subresource))

    def workspace_dirs(self) -> dict[str, set[str]]:
        """Every static-volume directory that exists, by where it lives (`node:<name>`, `nfs:<server>`)."""
        with self.lock:
            return {where: set(dirs) for where, dirs in self.volume_dirs.items() if dirs}

    def take_node_away(self, name: str) -> None:
        """The node is gone (a spot reclaim, a dead machine): nothing is scheduled on it any more; a
        node like it joins in its place when `replace_lost_nodes`. The pods bound to it are left to
        the caller (`lose_node` loses one; a test plans each build's losses itself)."""
        with self.lock:
            lost = next((node for node in self.nodes if node.name == name), None)
            if lost is None:
                return
            self.nodes.remove(lost)
            if self.replace_lost_nodes:
                joined = lost.renamed(replacement_name(name, set(self._node_addresses)))
                self.node_address(joined.name)
                self.nodes.append(joined)

    def node_address(self, name: str) -> str:
        """The node's InternalIP, given when it first joined (192.168.49.2 onwards)."""
        with self.lock:
            return self._node_addresses.setdefault(name, f"192.168.49.{len(self._node_addresses) + 2}")

    def unschedulable(self, build: str, message: str = DEFAULT_UNSCHEDULABLE) -> None:
        """Pods of `build` stay Pending: PodScheduled False, reason Unschedulable, this message."""
        with self.lock:
            self.unschedulable_builds[build] = message

    def schedulable(self, build: str) -> None:
        """Lift `unschedulable`: waiting pods are scheduled at the scheduler's next retry."""
        with self.lock:
            self.unschedulable_builds.pop(build, None)

    def image_pull_fails(self, build: str, image: str) -> None:
        """Containers of `build` with this image stay waiting: ErrImagePull, then ImagePullBackOff."""
        with self.lock:
            self.failing_images.setdefault(build, set()).add(image)

    def evict(self, pod_name: str, namespace: str | None = None) -> None:
        """Phase Failed, reason Evicted, DisruptionTarget True (EvictionByEvictionAPI); the pod stays."""
        with self.lock:
            self.sim.evict(self._sim(pod_name, namespace))

    def delete_pod(self, pod_name: str, namespace: str | None = None) -> None:
        """As if someone deleted the pod: Terminating (deletionTimestamp), then DELETED."""
        with self.lock:
            self.sim.delete_like_a_user(self._sim(pod_name, namespace))

    def lose_node(self, pod_name: str, namespace: str | None = None) -> None:
        """The pod's node is gone (see `take_node_away`): the pod gets DisruptionTarget True
        (DeletionByTaintManager), Ready False, and is deleted."""
        with self.lock:
            self.sim.lose_node(self._sim(pod_name, namespace))

    def shutdown_node(self, pod_name: str, namespace: str | None = None) -> None:
        """Graceful node shutdown: phase Failed, reason Terminated, DisruptionTarget True; the pod stays."""
        with self.lock:
            self.sim.shutdown_node(self._sim(pod_name, namespace))

    def oom(self, pod_name: str, container: str, namespace: str | None = None) -> None:
        """That container is terminated with reason OOMKilled, exit code 137 (not restarted)."""
        with self.lock:
            sim = self._sim(pod_name, namespace)
            target = sim.container(container)
            if target is None:
                raise KeyError(f"pod {pod_name} has no container {container}")
            self.sim.oom(sim, target)

    def lose_on_tests(self, build: str, times: int = 1, how: str | Sequence[str] = "evict") -> None:
        """The first `times` pods of `build` that start their tests are lost right after (`how`:
        evict, delete, lose_node or shutdown_node; a sequence gives each loss its own way, the last
        repeating), so that relaunching can be tested."""
        ways = [how] if isinstance(how, str) else list(how)
        if not ways or any(way not in LOSE_WAYS for way in ways):
            raise ValueError(f"how must be one of {LOSE_WAYS}")
        with self.lock:
            self.lose_plans[build] = [times, ways]

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        retry_after: int | None = 1,
        *,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """The next `n` requests (optionally only this method / paths containing this text) are answered
        with that error Status; 429 and 503 carry `Retry-After: retry_after`.

        Note: urllib3 (under the official client) itself retries GET/PUT/DELETE answered 429/503 with
        Retry-After up to 3 times, sleeping Retry-After each time; POST and PATCH are not retried.
        """
        with self.lock:
            self._injections.append(
                _Injection(
                    n,
                    status,
                    retry_after if status in (429, 503) else None,
                    method.upper() if method else None,
                    path_contains,
                )
            )

    def take_injection(self, method: str, path: str) -> ApiError | None:
        """Called by the app for each request: the injected failure it must answer with, if any."""
        with self.lock:
            for injection in self._injections:
                if injection.method and injection.method != method:
                    continue
                if injection.path_contains and injection.path_contains not in path:
                    continue
                injection.remaining -= 1
                if injection.remaining <= 0:
                    self._injections.remove(injection)
                return injected(injection.status, injection.retry_after)
        return None

    # == control: the workspace and exec =============================================================

    def add_file(self, build: str, path: str, content: str) -> None:
        """A file in the build's simulated workspace volume, for `cat`/`test -f` execs (a JUnit report)."""
        with self.lock:
            self.files.setdefault(build, {})[posixpath.normpath(path)] = content

    def on_exec(self, handler: Callable[[ExecRecord], tuple[int, str, str] | None] | None) -> None:
        """Answer execs first with `handler(record) -> (exit_code, stdout, stderr)`; None falls through to
        the built-in commands. It runs on the server's loop with the lock held: it must not call the API."""
        with self.lock:
            self.exec_handler = handler

    def fs_key(self, sim: PodSim) -> str:
        return sim.build if sim.build is not None else f"{sim.namespace}/{sim.name}"

    # == control: history and shutdown ===============================================================

    def compact(self) -> None:
        """Drop the event history: watches resuming from an older resourceVersion get 410 Expired."""
        with self.lock:
            self.store.compact()

    def settle(self, seconds: float = 0.0) -> None:
        """Wait until the simulation has run everything due within `seconds` from now (see
        `Simulator.run_until`): "nothing changes meanwhile" is then a fact, not a guess about speed."""
        self.sim.run_until(time.monotonic() + seconds)

    def close(self) -> None:
        """Stop the clock and end open watch/log streams, so uvicorn can stop without waiting for them."""
        with self.lock:
            self.closed = True
            self.store.close_watchers()
        self.sim.stop()

    def __enter__(self) -> FakeCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # == inspection ==================================================================================

    @property
    def resource_version(self) -> int:
        with self.lock:
            return self.store.rv

    def get(self, resource: str, name: str, namespace: str = "default") -> Obj | None:
        """A copy of the stored object (namespace ignored for cluster-scoped kinds), or None."""
        with self.lock:
            ns = namespace if RESOURCES[resource][1] else ""
            obj = self.store.get(resource, ns, name)
            return copy.deepcopy(obj) if obj is not None else None

    def objects(
        self, resource: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[Obj]:
        requirements = parse_label_selector(label_selector)
        with self.lock:
            return [
                copy.deepcopy(o)
                for o in self.store.items(resource, namespace)
                if labels_match(requirements, o)
            ]

    def pods_of(self, build: str) -> list[Obj]:
        return self.objects("pods", label_selector=f"{BUILD_LABEL}={build}")

    def container_log(self, pod_name: str, container: str, namespace: str | None = None) -> str:
        with self.lock:
            sim = self._sim(pod_name, namespace)
            target = sim.container(container)
            if target is None:
                raise KeyError(f"pod {pod_name} has no container {container}")
            return target.log

    def requests_for(self, build: str) -> list[RequestRecord]:
        with self.lock:
            return [r for r in self.requests if r.build == build]

    def count(
        self,
        method: str | None = None,
        *,
        build: str | None = None,
        resource: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        watch: bool | None = None,
        path_contains: str | None = None,
    ) -> int:
        """How many logged requests match every given filter (`build`: see `RequestRecord.build`)."""
        with self.lock:
            records = list(self.requests)
        return sum(
            1
            for r in records
            if (method is None or r.method == method.upper())
            and (build is None or r.build == build)
            and (resource is None or r.resource == resource)
            and (name is None or r.name == name)
            and (subresource is None or r.subresource == subresource)
            and (watch is None or r.watch == watch)
            and (path_contains is None or path_contains in r.path)
        )

    def attribute(self, path: str, query: str) -> str | None:
        """The build a request concerns: by the object it names, else by a `podci.io/build=` selector."""
        resource, ns, name, _ = parse_path(path)
        with self.lock:
            if resource and name:
                found = self._builds.get((resource, ns or "", name))
                if found:
                    return found
        selector = parse_qs(query).get("labelSelector", [None])[0]
        return build_of_selector(selector, BUILD_LABEL)

    def self_check(self) -> list[str]:
        """Validate (strictly) every object state the fake itself produced; returns the problems found,
        plus any crash of a simulated step. A realistic fake is the point, so tests assert it empty."""
        with self.lock:
            snapshots = [e.object for e in self.store.history]
            snapshots += [copy.deepcopy(o) for kind in self.store.objects.values() for o in kind.values()]
            problems = list(self.problems)
        for obj in snapshots:
            try:
                _strict_validator(self.version, obj["kind"]).validate(obj)
            except jsonschema.ValidationError as exc:
                where = (
                    f"{obj['kind']} {obj['metadata'].get('name')}@{obj['metadata'].get('resourceVersion')}"
                )
                problems.append(f"{where}: {_field_path(exc.path)}: {exc.message}")
        return problems

    def _sim(self, pod_name: str, namespace: str | None) -> PodSim:
        found = [s for (ns, name), s in self.sim.pods.items() if name == pod_name and namespace in (None, ns)]
        if not found:
            raise KeyError(f"no simulated pod {pod_name!r} (namespace {namespace})")
        if len(found) > 1:
            raise KeyError(f"pod {pod_name!r} exists in several namespaces: pass namespace=")
        return found[0]

    # == API operations (called by app.py; raise ApiError) ===========================================

    def kind_of(self, resource: str) -> tuple[str, bool]:
        if resource not in RESOURCES:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return RESOURCES[resource]

    def validate(self, obj: Obj) -> None:
        """kubernetes_validate in strict mode against `self.version`: what a real server would refuse
        (unknown fields, missing required ones, wrong types) is refused with 422 here too."""
        if not self.validation:
            return
        name = obj.get("metadata", {}).get("name") or obj.get("metadata", {}).get("generateName") or ""
        try:
            kubernetes_validate.validate(obj, self.version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            error = invalid(obj.get("kind", ""), name, _field_path(exc.path), exc.message)
            with self.lock:
                self.refused.append((copy.deepcopy(obj), error.message))
            raise error from None
        except (
            kubernetes_validate.utils.SchemaNotFoundError,
            kubernetes_validate.utils.InvalidSchemaError,
            kubernetes_validate.utils.VersionNotSupportedError,
        ) as exc:
            raise bad_request(str(getattr(exc, "message", exc))) from None
        with self.lock:
            self.validated.append(copy.deepcopy(obj))

    def create(self, resource: str, namespace: str | None, body: Any, *, dry_run: bool = False) -> Obj:
        kind, namespaced = self.kind_of(resource)
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", kind)
        if obj["apiVersion"] != "v1" or obj["kind"] != kind:
            raise bad_request(
                f"the API version in the data ({obj['apiVersion']}) does not match the expected API version "
                f"(v1), or the kind ({obj['kind']}) is not {kind}"
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(kind, "", "metadata.name", "Required value: name or generateName is required")
            meta["name"] = meta["generateName"] + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
        self.validate(obj)
        with self.lock:
            if namespaced:
                ns_obj = self.store.get("namespaces", "", namespace or "")
                if ns_obj is None:
                    raise not_found("namespaces", namespace or "")
                if ns_obj["metadata"].get("deletionTimestamp"):
                    raise ApiError(
                        403,
                        "Forbidden",
                        f'{resource} "{meta["name"]}" is forbidden: unable to create '
                        f"new content in namespace {namespace} because it is being terminated",
                    )
            ns = namespace or "" if namespaced else ""
            if resource == "pods":
                self._admit(obj)
            if self.store.get(resource, ns, meta["name"]) is not None:
                raise already_exists(resource, meta["name"])
            if dry_run:
                self._server_fields(resource, obj)
                return obj
            return self._store_new(resource, ns, obj)

    def _admit(self, pod: Obj) -> None:
        """Pod Security Admission: the pod's namespace's `enforce` level, or 403 naming every control
        the pod breaks (what was refused is kept in `refused`, as a 422 is)."""
        level, version = level_of(self.store.get("namespaces", "", pod["metadata"]["namespace"]))
        found = violations(pod, level)
        if found:
            message = forbidden(pod["metadata"]["name"], level, version, found)
            self.refused.append((copy.deepcopy(pod), message))
            raise ApiError(403, "Forbidden", message)

    def _server_fields(self, resource: str, obj: Obj) -> None:
        """What the API server sets and defaults on create."""
        meta = obj["metadata"]
        for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(key, None)
        meta["uid"] = _uid()
        meta["creationTimestamp"] = iso()
        if resource in STATUS_SUBRESOURCE:
            obj.pop("status", None)
        if resource in _DEFAULTS:
            _DEFAULTS[resource](obj)

    def _store_new(self, resource: str, namespace: str, obj: Obj) -> Obj:
        self._server_fields(resource, obj)
        meta = obj["metadata"]
        build = (meta.get("labels") or {}).get(BUILD_LABEL)
        if build:
            self._builds[(resource, namespace, meta["name"])] = build
        sim: PodSim | None = None
        bind_delay = self.settings_for(build).pvc_bind_delay
        if resource == "pods":
            sim = self.sim.prepare(obj)
        elif resource == "persistentvolumeclaims" and bind_delay <= 0:
            self._bind_claim(obj)
        result = self.store.put(resource, obj, "ADDED")
        if sim is not None:
            self.sim.begin(sim)
        elif resource == "persistentvolumeclaims" and result["status"]["phase"] != "Bound":
            name = meta["name"]
            self.sim.at(bind_delay, None, lambda: self._bind_stored_claim(namespace, name))
        return result

    def _bind_claim(self, pvc: Obj) -> bool:
        """The dynamic provisioner and the binder: a PersistentVolume `pvc-<uid>`, and the claim Bound.
        Without a provisioner only a claim naming an existing PV binds; the others stay Pending."""
        meta, spec = pvc["metadata"], pvc["spec"]
        if not self.dynamic_provisioning and (
            not spec.get("volumeName") or self.store.get("persistentvolumes", "", spec["volumeName"]) is None
        ):
            return False
        volume = spec.get("volumeName") or f"pvc-{meta['uid']}"
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        modes = spec.get("accessModes") or ["ReadWriteOnce"]
        spec["volumeName"] = volume
        meta.setdefault("annotations", {})["pv.kubernetes.io/bind-completed"] = "yes"
        pvc["status"] = {"phase": "Bound", "accessModes": modes, "capacity": {"storage": storage}}
        if self.store.get("persistentvolumes", "", volume) is None:
            pv: Obj = {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {
                    "name": volume,
                    "annotations": {"pv.kubernetes.io/provisioned-by": "fake.csi.k8s.io"},
                    "finalizers": ["kubernetes.io/pv-protection"],
                },
                "spec": {
                    "capacity": {"storage": storage},
                    "accessModes": modes,
                    "persistentVolumeReclaimPolicy": "Delete",
                    "storageClassName": spec.get("storageClassName", "standard"),
                    "volumeMode": spec.get("volumeMode", "Filesystem"),
                    "csi": {"driver": "fake.csi.k8s.io", "volumeHandle": volume},
                    "claimRef": {
                        "kind": "PersistentVolumeClaim",
                        "apiVersion": "v1",
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "uid": meta["uid"],
                    },
                },
            }
            self._store_new("persistentvolumes", "", pv)
            bound = self.store.get("persistentvolumes", "", volume)
            assert bound is not None
            bound = copy.deepcopy(bound)
            bound["status"] = {"phase": "Bound"}
            self.store.put("persistentvolumes", bound, "MODIFIED")
        return True

    def _bind_stored_claim(self, namespace: str, name: str) -> None:
        pvc = self.store.get("persistentvolumeclaims", namespace, name)
        if pvc is None or pvc["metadata"].get("deletionTimestamp") or pvc["status"].get("phase") == "Bound":
            return
        pvc = copy.deepcopy(pvc)
        if self._bind_claim(pvc):
            self.store.put("persistentvolumeclaims", pvc, "MODIFIED")

    def read(self, resource: str, namespace: str | None, name: str) -> Obj:
        _, namespaced = self.kind_of(resource)
        with self.lock:
            obj = self.store.get(resource, namespace or "" if namespaced else "", name)
            if obj is None:
                raise not_found(resource, name)
            return copy.deepcopy(obj)

    def list_objects(
        self, resource: str, namespace: str | None, label_selector: str | None, field_selector: str | None
    ) -> tuple[list[Obj], int]:
        self.kind_of(resource)
        labels, fields = parse_label_selector(label_selector), parse_field_selector(field_selector)
        with self.lock:
            items = [
                copy.deepcopy(o)
                for o in self.store.items(resource, namespace)
                if labels_match(labels, o) and fields_match(fields, o)
            ]
            return items, self.store.rv

    def delete(self, resource: str, namespace: str | None, name: str, grace: int | None = None) -> Obj:
        _, namespaced = self.kind_of(resource)
        ns = namespace if namespaced and namespace else ""
        with self.lock:
            obj = self.store.get(resource, ns, name)
            if obj is None:
                raise not_found(resource, name)
            details = {"name": name, "kind": resource, "uid": obj["metadata"]["uid"]}
            if resource == "pods":
                sim = self.sim.pods.get((ns, name))
                if sim is not None:
                    default = obj["spec"].get("terminationGracePeriodSeconds", 30)
                    return self.sim.begin_delete(sim, default if grace is None else grace)
                result = self.store.delete(resource, ns, name)
            elif resource == "persistentvolumeclaims":
                result = self._delete_claim(ns, name)
            elif resource == "namespaces":
                return self._delete_namespace(name)
            else:
                result = self.store.delete(resource, ns, name)
            assert result is not None
            return result if resource in DELETE_RETURNS_OBJECT else success_body(details)

    def _claim_in_use(self, namespace: str, claim: str) -> bool:
        return any(
            (v.get("persistentVolumeClaim") or {}).get("claimName") == claim
            for pod in self.store.items("pods", namespace)
            for v in pod["spec"].get("volumes") or []
        )

    def _delete_claim(self, namespace: str, name: str) -> Obj:
        """kubernetes.io/pvc-protection: a claim still used by a pod waits in Terminating for it to go."""
        pvc = self.store.get("persistentvolumeclaims", namespace, name)
        assert pvc is not None
        if self.pvc_protection and self._claim_in_use(namespace, name):
            if pvc["metadata"].get("deletionTimestamp"):
                return copy.deepcopy(pvc)
            pvc = copy.deepcopy(pvc)
            pvc["metadata"]["deletionTimestamp"] = iso()
            pvc["metadata"]["deletionGracePeriodSeconds"] = 0
            return self.store.put("persistentvolumeclaims", pvc, "MODIFIED")
        result = self.store.delete("persistentvolumeclaims", namespace, name)
        assert result is not None
        volume = result["spec"].get("volumeName")
        pv = self.store.get("persistentvolumes", "", volume) if volume else None
        if pv is not None and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
            self.store.delete("persistentvolumes", "", volume or "")
        return result

    def release_claims(self, namespace: str) -> None:
        """A pod is gone: delete the claims that waited for it (pvc-protection)."""
        for pvc in self.store.items("persistentvolumeclaims", namespace):
            name = pvc["metadata"]["name"]
            if pvc["metadata"].get("deletionTimestamp") and not self._claim_in_use(namespace, name):
                self._delete_claim(namespace, name)

    def _delete_namespace(self, name: str) -> Obj:
        ns = copy.deepcopy(self.store.get("namespaces", "", name))
        assert ns is not None
        if not ns["metadata"].get("deletionTimestamp"):
            ns["metadata"]["deletionTimestamp"] = iso()
            ns["status"] = {"phase": "Terminating"}
            self.store.put("namespaces", ns, "MODIFIED")
            self.sim.at(self.settings.terminate_delay, None, lambda: self._finish_namespace(name))
        return success_body({"name": name, "kind": "namespaces", "uid": ns["metadata"]["uid"]})

    def _finish_namespace(self, name: str) -> None:
        for resource, (_, namespaced) in RESOURCES.items():
            if not namespaced:
                continue
            for obj in self.store.items(resource, name):
                self.store.delete(resource, name, obj["metadata"]["name"])
                if resource == "pods":
                    self.sim.pods.pop((name, obj["metadata"]["name"]), None)
        for pv in self.store.items("persistentvolumes"):
            if (pv["spec"].get("claimRef") or {}).get("namespace") == name:
                self.store.delete("persistentvolumes", "", pv["metadata"]["name"])
        self.store.delete("namespaces", "", name)

    def delete_collection(
        self, resource: str, namespace: str | None, label_selector: str | None, field_selector: str | None
    ) -> Obj:
        items, _ = self.list_objects(resource, namespace, label_selector, field_selector)
        with self.lock:
            for item in items:
                try:
                    self.delete(resource, item["metadata"].get("namespace"), item["metadata"]["name"])
                except ApiError:
                    pass
        return success_body()

    def patch(self, resource: str, namespace: str | None, name: str, body: Any, content_type: str) -> Obj:
        _, namespaced = self.kind_of(resource)
        ns = namespace if namespaced and namespace else ""
        with self.lock:
            current = self.store.get(resource, ns, name)
            if current is None:
                raise not_found(resource, name)
            if isinstance(body, list):
                new = json_patch(current, body)
            elif isinstance(body, dict):
                wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
                if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                    raise conflict(resource, name)
                new = merge_patch(current, body)
            else:
                raise bad_request(f"the body of a {content_type} patch must be an object or a list")
            return self._update(resource, ns, current, new)

    def replace(self, resource: str, namespace: str | None, name: str, body: Any) -> Obj:
        kind, namespaced = self.kind_of(resource)
        ns = namespace if namespaced and namespace else ""
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        if (body.get("metadata") or {}).get("name") != name:
            raise bad_request(
                f"the name of the object ({(body.get('metadata') or {}).get('name')}) does not "
                f"match the name on the URL ({name})"
            )
        with self.lock:
            current = self.store.get(resource, ns, name)
            if current is None:
                raise not_found(resource, name)
            wanted_rv = body["metadata"].get("resourceVersion")
            if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                raise conflict(resource, name)
            new = copy.deepcopy(body)
            new.setdefault("apiVersion", "v1")
            new.setdefault("kind", kind)
            return self._update(resource, ns, current, new)

    def _update(self, resource: str, namespace: str, current: Obj, new: Obj) -> Obj:
        """Keep what a client cannot change, validate, store (no event for a no-op, as the server)."""
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        meta = new.setdefault("metadata", {})
        for key in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if key in current["metadata"]:
                meta[key] = current["metadata"][key]
            else:
                meta.pop(key, None)
        if resource in STATUS_SUBRESOURCE:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        if new == current:
            return copy.deepcopy(current)
        self.validate(new)
        build = (meta.get("labels") or {}).get(BUILD_LABEL)
        if build:
            self._builds[(resource, namespace, meta["name"])] = build
        return self.store.put(resource, new, "MODIFIED")

    # -- pods: logs ----------------------------------------------------------------------------------

    def log_container(
        self, namespace: str, name: str, container: str | None, previous: bool = False
    ) -> ContainerSim:
        """The container whose log is asked for, with the server's 400s for the wrong ones."""
        with self.lock:
            pod = self.store.get("pods", namespace, name)
            sim = self.sim.pods.get((namespace, name))
            if pod is None or sim is None:
                raise not_found("pods", name)
            if name in self.unreachable:
                raise no_node_address()
            target = self.pick_container(sim, container)
            if previous:
                raise bad_request(f'previous terminated container "{target.name}" in pod "{name}" not found')
            if target.state == "waiting":
                raise bad_request(
                    f'container "{target.name}" in pod "{name}" is waiting to start: '
                    f"{target.reason or 'ContainerCreating'}"
                )
            return target

    def pick_container(self, sim: PodSim, container: str | None) -> ContainerSim:
        if not container:
            if len(sim.main) == 1:
                return sim.main[0]
            names = " ".join(c.name for c in sim.main)
            message = f"a container name must be specified for pod {sim.name}, choose one of: [{names}]"
            if sim.init:
                message += f" or one of the init containers: [{' '.join(c.name for c in sim.init)}]"
            raise bad_request(message)
        target = sim.container(container)
        if target is None:
            raise bad_request(f"container {container} is not valid for pod {sim.name}")
        return target

    # -- Kubernetes Events about pods -----------------------------------------------------------------

    def record_event(self, sim: PodSim, kind: str, reason: str, message: str, component: str) -> None:
        """A core/v1 Event about the pod, as the scheduler and kubelet write them (`kubectl describe`)."""
        if not self.emit_events or self.store.get("namespaces", "", sim.namespace) is None:
            return
        now = iso()
        event: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{sim.name}.{secrets.token_hex(8)}", "namespace": sim.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": sim.namespace,
                "name": sim.name,
                "uid": sim.uid,
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {
                "component": component,
                **({"host": sim.node} if sim.node and component == "kubelet" else {}),
            },
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": sim.node or "",
        }
        self._store_new("events", sim.namespace, event)


def _uid() -> str:
    raw = secrets.token_hex(16)
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _pod_defaults(pod: Obj) -> None:
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault(
        "tolerations",
        [
            {
                "key": f"node.kubernetes.io/{taint}",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }
            for taint in ("not-ready", "unreachable")
        ],
    )
    for container in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
        image = container.get("image", "")
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")


_service_ips = iter(range(10, 60000))


def _service_defaults(service: Obj) -> None:
    spec = service.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    if spec.get("clusterIP") != "None":
        if not spec.get("clusterIP"):
            n = next(_service_ips)
            spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
        spec["clusterIPs"] = [spec["clusterIP"]]
    else:
        spec["clusterIPs"] = ["None"]
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    service["status"] = {"loadBalancer": {}}


def _claim_defaults(pvc: Obj) -> None:
    spec = pvc.setdefault("spec", {})
    spec.setdefault("storageClassName", "standard")
    spec.setdefault("volumeMode", "Filesystem")
    pvc["metadata"].setdefault("finalizers", ["kubernetes.io/pvc-protection"])
    pvc["status"] = {"phase": "Pending"}


def _volume_defaults(pv: Obj) -> None:
    pv.setdefault("spec", {}).setdefault("persistentVolumeReclaimPolicy", "Retain")
    pv["status"] = {"phase": "Available"}


def _namespace_defaults(ns: Obj) -> None:
    ns["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = ns["metadata"]["name"]
    ns["spec"] = {"finalizers": ["kubernetes"]}
    ns["status"] = {"phase": "Active"}


def _secret_defaults(secret: Obj) -> None:
    secret.setdefault("type", "Opaque")


_DEFAULTS: dict[str, Callable[[Obj], None]] = {
    "pods": _pod_defaults,
    "services": _service_defaults,
    "persistentvolumeclaims": _claim_defaults,
    "persistentvolumes": _volume_defaults,
    "namespaces": _namespace_defaults,
    "secrets": _secret_defaults,
}
