"""Pure builders of the objects one build sends to Kubernetes (`policy` checks the template first).

Every function takes the build's context and the settings and returns the plain JSON the API receives
(camelCase, with apiVersion/kind/metadata), as kubespawner's `objects.py` does: no I/O, no client
models, so the tests compare whole dicts and validate them against the official schema.

The pod template is the user's, taken as written (`PodSpec.as_written`, a fresh copy). podci fills in
what the Pod Security Standard of the build (`policy.level_of`) needs where the template is silent, and
requests and limits (`harden`), and adds around it:
- the workspace volume (a PVC named after the build), mounted at `volume.mount_path` in every container;
- the checkout init container, which re-does the merge onto that volume (first, so later init
  containers of the template already see the code);
- the agent sidecar, whose readiness is "setup complete" (when `setup.file` is used) and whose exit is
  "tests done": its termination is the watch event that wakes the build;
- the variables every container of the local backend sees (`PODCI_*`, `JOB_NAME`, `BUILD_NUMBER`).

Values podci injects come partly from users (branch names, clone URLs, job names). They reach the fixed
scripts only as environment variables or positional parameters, and every `$` in them is doubled:
Kubernetes expands `$(VAR)` in env values and command arguments, and `$$` is its escape for a literal `$`.
"""

from __future__ import annotations

import copy
import posixpath
import re
from decimal import Decimal
from typing import Any

from schemas.names import attempt_name, dns_label
from schemas.settings import Settings
from schemas.urls import GIT_ALLOW_PROTOCOL
from workers.backends.base import BuildContext
from workers.backends.kubernetes.names import (
    AGENT_CONTAINER,
    AGENT_SCRIPT,
    ATTEMPT_LABEL,
    BUILD_LABEL,
    CHECKOUT_CONTAINER,
    CHECKOUT_SCRIPT,
    CLEANUP_CONTAINER,
    CLEANUP_SCRIPT,
    CLONE_SCRIPT,
    JOB_LABEL,
    MANAGED_BY,
    WORKSPACE_VOLUME,
)
from workers.backends.kubernetes.policy import Level, level_of
from workers.backends.ports import port_env, port_key
from workers.errors import PermanentError

Json = dict[str, Any]

_API_VERSIONS = {
    "Pod": "v1",
    "Service": "v1",
    "PersistentVolumeClaim": "v1",
    "PersistentVolume": "v1",
}

# The agent only waits for a file and `cat`s a log: tiny, and bounded so it never competes with the tests.
AGENT_RESOURCES: Json = {
    "requests": {"cpu": "10m", "memory": "16Mi"},
    "limits": {"cpu": "100m", "memory": "64Mi"},
}
AGENT_PROBE_PERIOD = 2

# podci's own containers (checkout, agent) run as this non-root user and group, which is also the pod's
# `fsGroup` unless the template names one: the workspace volume is then writable by that group, and
# every container of the pod is in it. They meet the `restricted` standard whatever the build's level.
PODCI_USER = 65532
PODCI_SECURITY: Json = {
    "runAsNonRoot": True,
    "runAsUser": PODCI_USER,
    "runAsGroup": PODCI_USER,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

# Static volumes are created by podci itself, one per build. Kubernetes has no deleter for NFS, and its
# hostPath deleter only handles `/tmp/...` on the controller-manager's own disk, so `Delete` would only
# turn a released PV into `Failed` with a VolumeFailedDelete warning and remove nothing. `Retain` leaves
# it `Released`, quietly, and teardown deletes the PV object by label either way. The data directory is
# never removed by Kubernetes under either policy (see `make_pv`).
STATIC_RECLAIM_POLICY = "Retain"


def api_version_of(kind: str) -> str:
    """The apiVersion of every kind podci creates (all core/v1 today; one place to change)."""
    try:
        return _API_VERSIONS[kind]
    except KeyError:
        raise ValueError(f"podci does not create objects of kind {kind!r}") from None


def labels(
    ctx: BuildContext, attempt: int | None = None, *, settings: Settings | None = None
) -> dict[str, str]:
    """The labels teardown and the garbage collector find a build's objects by.

    The cluster's own labels (`kube_labels`) come first so they can never override podci's: a build
    object that lost its `managed-by` or `build` label would never be cleaned up.
    """
    result = dict(settings.kube_labels) if settings is not None else {}
    result.update({MANAGED_BY: "podci", BUILD_LABEL: ctx.name, JOB_LABEL: dns_label(ctx.job)})
    if attempt is not None:
        result[ATTEMPT_LABEL] = str(attempt)
    return result


def namespace_of(settings: Settings) -> str:
    """The build namespace, resolved once per process (see `api.resolve_namespace`) before any object
    is built."""
    if not settings.kube_namespace:
        raise ValueError("the build namespace was not resolved before building objects")
    return settings.kube_namespace


def _metadata(
    ctx: BuildContext, settings: Settings, name: str, *, namespaced: bool = True, attempt: int | None = None
) -> Json:
    meta: Json = {"name": name}
    if namespaced:
        meta["namespace"] = namespace_of(settings)
    meta["labels"] = labels(ctx, attempt, settings=settings)
    return meta


def _literal(value: str) -> str:
    """A value Kubernetes passes through unexpanded: `$(HOME)` in a branch name stays `$(HOME)`."""
    return value.replace("$", "$$")


# --- Service ------------------------------------------------------------------------------------------


def make_service(ctx: BuildContext, settings: Settings) -> Json:
    """The build's Service: one port per container port of the template.

    It selects the build label, not the attempt, so a relaunched pod is selected without touching the
    Service. A template with no ports gets a headless Service (`clusterIP: None`, no ports): the API
    server accepts zero ports only for headless Services, and it still gives the build a stable DNS
    name resolving to the pod, so every build has the same set of objects.
    """
    ports: list[Json] = []
    seen: set[tuple[int, str]] = set()
    for container in ctx.pod.containers:
        for declared in container.ports:
            key = (declared.container_port, declared.protocol)
            if key in seen:  # the same port in two containers cannot run anyway; the API would refuse it
                continue
            seen.add(key)
            default_name = f"p{declared.container_port}"
            if declared.protocol != "TCP":  # 53/TCP and 53/UDP need different names
                default_name += f"-{declared.protocol.lower()}"
            ports.append(
                {
                    "name": declared.name or default_name,
                    "port": declared.container_port,
                    "targetPort": declared.container_port,
                    "protocol": declared.protocol,
                }
            )
    spec: Json = {"selector": {BUILD_LABEL: ctx.name}, "ports": ports}
    if not ports:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": api_version_of("Service"),
        "kind": "Service",
        "metadata": _metadata(ctx, settings, ctx.name),
        "spec": spec,
    }


# --- volume -------------------------------------------------------------------------------------------


def _static(settings: Settings) -> bool:
    return settings.kube_static_volumes != "none"


def workspace_sub_path(ctx: BuildContext, settings: Settings) -> str | None:
    """The build's directory inside a static volume's root, or None when the volume is the build's own.

    An NFS PV cannot point at a directory that does not exist yet (the mount fails and the pod hangs in
    ContainerCreating), and nothing in the cluster may create it without privileges. So every static PV
    (NFS or hostPath) points at the root and the pod mounts it with `subPath: <build>`, which the kubelet
    creates. The root is also what lets the cleanup pod remove the build's directory itself.
    """
    return ctx.name if _static(settings) else None


def make_pvc(ctx: BuildContext, settings: Settings) -> Json:
    """The workspace claim. With static volumes it is pre-bound to the PV of the same name, and its
    storage class is "" so that no default class provisions a second volume behind podci's back."""
    spec: Json = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": ctx.config.volume.size}},
    }
    if _static(settings):
        spec["storageClassName"] = ""
        spec["volumeName"] = ctx.name
    elif settings.kube_storage_class is not None:
        spec["storageClassName"] = settings.kube_storage_class
    return {
        "apiVersion": api_version_of("PersistentVolumeClaim"),
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(ctx, settings, ctx.name),
        "spec": spec,
    }


def make_pv(ctx: BuildContext, settings: Settings) -> Json | None:
    """The build's own PV when the cluster has no dynamic provisioner; None otherwise.

    `claimRef` reserves it for this build's claim only. The reclaim policy is `STATIC_RECLAIM_POLICY`
    (why: see there). Both kinds point at the root, the pod mounting its `subPath` (see
    `workspace_sub_path`). hostPath: the root directory on whichever node runs the pod
    (`DirectoryOrCreate`), so it only suits single-node clusters such as kind, where a relaunch lands on
    the same node. Kubernetes never removes the build's directory: `make_cleanup_pod` does.
    """
    mode = settings.kube_static_volumes
    if mode == "none":
        return None
    source: Json
    if mode == "nfs":
        if not settings.kube_nfs_server:
            raise PermanentError(
                "PODCI_KUBE_STATIC_VOLUMES is `nfs` but PODCI_KUBE_NFS_SERVER is not set: name the NFS server"
            )
        source = {"nfs": {"server": settings.kube_nfs_server, "path": settings.kube_nfs_path}}
    else:
        source = {
            "hostPath": {"path": settings.kube_hostpath_root.rstrip("/") or "/", "type": "DirectoryOrCreate"}
        }
    return {
        "apiVersion": api_version_of("PersistentVolume"),
        "kind": "PersistentVolume",
        "metadata": _metadata(ctx, settings, ctx.name, namespaced=False),
        "spec": {
            "capacity": {"storage": ctx.config.volume.size},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": STATIC_RECLAIM_POLICY,
            "claimRef": {
                "apiVersion": api_version_of("PersistentVolumeClaim"),
                "kind": "PersistentVolumeClaim",
                "namespace": namespace_of(settings),
                "name": ctx.name,
            },
            **source,
        },
    }


# --- Pod ----------------------------------------------------------------------------------------------


def port_numbers(ctx: BuildContext) -> dict[str, int]:
    """Port key -> port, keyed exactly as the local backend keys them (`port_key`): in a pod every
    container shares one network namespace, so a port is reached at 127.0.0.1 on its containerPort."""
    return {
        port_key(container, declared.name, declared.container_port): declared.container_port
        for container in ctx.pod.containers
        for declared in container.ports
    }


def podci_env(ctx: BuildContext) -> dict[str, str]:
    """The variables every container gets: the same names and meanings as on the local backend."""
    return {
        "PODCI_BUILD": ctx.name,
        "PODCI_WORKSPACE": ctx.config.volume.mount_path,
        "PODCI_HOST": "127.0.0.1",
        "JOB_NAME": ctx.job,
        "BUILD_NUMBER": str(ctx.number),
        **port_env(port_numbers(ctx)),
    }


def _env_list(env: dict[str, str]) -> list[Json]:
    return [{"name": name, "value": _literal(value)} for name, value in env.items()]


def _with_env(container: Json, env: dict[str, str]) -> None:
    """podci's variables go first so the template's own values may refer to them (`$(PODCI_PORT_DB)`:
    Kubernetes expands only variables defined earlier), and a variable the template sets itself wins,
    as on the local backend, without a duplicate name in the list."""
    own: list[Json] = list(container.get("env") or [])
    own_names = {var.get("name") for var in own}
    container["env"] = [var for var in _env_list(env) if var["name"] not in own_names] + own


def _workspace_mount(ctx: BuildContext, settings: Settings) -> Json:
    mount: Json = {"name": WORKSPACE_VOLUME, "mountPath": ctx.config.volume.mount_path}
    sub_path = workspace_sub_path(ctx, settings)
    if sub_path is not None:
        mount["subPath"] = sub_path
    return mount


def _with_mount(container: Json, mount: Json) -> None:
    """The workspace replaces whatever the template mounted at the same path (compared normalized, so
    `/workspace/` is the same place as `/workspace`)."""
    target = posixpath.normpath(mount["mountPath"])
    kept = [
        m
        for m in container.get("volumeMounts") or []
        if posixpath.normpath(str(m.get("mountPath", ""))) != target
    ]
    container["volumeMounts"] = [*kept, dict(mount)]


# Where the checkout container finds the git-credential-store file of `kube_git_credentials_secret`.
GIT_CREDENTIALS_DIR = "/var/run/podci/git"
GIT_CREDENTIALS_VOLUME = "podci-git-credentials"


def checkout_container(ctx: BuildContext, settings: Settings) -> Json:
    """Puts the merge the worker checked onto the volume.

    `bundle` (the default): the container waits for the git bundle the worker streams in over exec,
    then checks the merge commit out of it; the pod never talks to the git host. `clone`: it re-does
    the merge itself from the clone URLs, pinned to the same commits (a side whose commit is unknown
    falls back to the ref it was fetched into). `FallbackToLogsOnError` puts git's own error into the
    termination message, which the pod classifier turns into the build's reason.
    """
    mount = _workspace_mount(ctx, settings)
    if settings.kube_code_delivery == "bundle":
        env = {
            "PODCI_WORKSPACE": ctx.config.volume.mount_path,
            "MERGE_COMMIT": ctx.merge_commit,
            "CODE_WAIT": str(int(ctx.config.timeouts.setup)),
        }
        script = CHECKOUT_SCRIPT
    else:
        target = ctx.target
        env = {
            "PODCI_WORKSPACE": ctx.config.volume.mount_path,
            "SOURCE_URL": ctx.source.clone_url,
            "SOURCE_REF": ctx.source.ref,
            "SOURCE_COMMIT": ctx.source.commit or "refs/podci/source",
            "TARGET_URL": target.clone_url if target else "",
            "TARGET_REF": target.ref if target else "",
            "TARGET_COMMIT": (target.commit or "refs/podci/target") if target else "",
        }
        if settings.kube_git_credentials_secret:
            env["GIT_CREDENTIALS"] = f"{GIT_CREDENTIALS_DIR}/git-credentials"
        if ctx.remote_only:  # as the worker's own fetch of a webhook build (workers.gitops)
            env.update(
                GIT_ALLOW_PROTOCOL=GIT_ALLOW_PROTOCOL,
                GIT_CONFIG_COUNT="2",
                GIT_CONFIG_KEY_0="protocol.file.allow",
                GIT_CONFIG_VALUE_0="never",
                GIT_CONFIG_KEY_1="http.followRedirects",
                GIT_CONFIG_VALUE_1="false",
            )
        script = CLONE_SCRIPT
    container: Json = {
        "name": CHECKOUT_CONTAINER,
        "image": settings.kube_git_image,
        "command": ["sh", "-c", script],
        "env": _env_list(env),
        "volumeMounts": [mount],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": default_resources(settings),
        "securityContext": copy.deepcopy(PODCI_SECURITY),
    }
    if settings.kube_code_delivery == "clone" and settings.kube_git_credentials_secret:
        container["volumeMounts"].append(
            {"name": GIT_CREDENTIALS_VOLUME, "mountPath": GIT_CREDENTIALS_DIR, "readOnly": True}
        )
    return container


def _credentials_volume(settings: Settings) -> list[Json]:
    if settings.kube_code_delivery != "clone" or not settings.kube_git_credentials_secret:
        return []
    secret = {"secretName": settings.kube_git_credentials_secret, "defaultMode": 0o400}
    return [{"name": GIT_CREDENTIALS_VOLUME, "secret": secret}]


def _with_working_dir(container: Json, mount_path: str) -> None:
    """One template, both backends: the local backend runs every command in the workspace, so on a
    cluster a container whose template names no `workingDir` runs there too (an image's own working
    directory is usually `/`, where `python3 service/counter.py` finds nothing)."""
    container.setdefault("workingDir", mount_path)


def agent_container(ctx: BuildContext, settings: Settings) -> Json:
    """The sidecar that turns "setup complete" into readiness and "tests done" into its own exit."""
    mount_path = ctx.config.volume.mount_path
    agent: Json = {
        "name": AGENT_CONTAINER,
        "image": settings.kube_agent_image,
        "command": ["sh", "-c", AGENT_SCRIPT, AGENT_CONTAINER, _literal(mount_path)],
        "volumeMounts": [_workspace_mount(ctx, settings)],
        "resources": copy.deepcopy(AGENT_RESOURCES),
        "securityContext": copy.deepcopy(PODCI_SECURITY),
    }
    if ctx.config.setup.file is not None:
        agent["readinessProbe"] = {
            "exec": {"command": ["test", "-f", f"{mount_path.rstrip('/')}/{ctx.config.setup.file}"]},
            "periodSeconds": AGENT_PROBE_PERIOD,
        }
    return agent


def _tolerations(items: list[dict[str, Any]]) -> list[Json]:
    """Settings hold tolerations as strings (JSON from the environment); the API wants an integer
    `tolerationSeconds`."""
    result: list[Json] = []
    for item in items:
        toleration = dict(item)
        seconds = toleration.get("tolerationSeconds")
        if isinstance(seconds, str) and seconds.lstrip("-").isdigit():
            toleration["tolerationSeconds"] = int(seconds)
        result.append(toleration)
    return result


def _placement(spec: Json, settings: Settings, on_demand: bool) -> None:
    """nodeSelector and tolerations of the cluster merged over the template's; a relaunch after a spot
    loss (`on_demand`) uses the on-demand ones instead, each only when it is configured."""
    selector = settings.kube_node_selector
    tolerations: list[dict[str, Any]] = list(settings.kube_tolerations)
    if on_demand and settings.kube_on_demand_node_selector is not None:
        selector = settings.kube_on_demand_node_selector
    if on_demand and settings.kube_on_demand_tolerations is not None:
        tolerations = list(settings.kube_on_demand_tolerations)
    merged_selector = {**(spec.get("nodeSelector") or {}), **selector}
    if merged_selector:
        spec["nodeSelector"] = merged_selector
    merged: list[Json] = list(spec.get("tolerations") or [])
    for toleration in _tolerations(tolerations):
        if toleration not in merged:
            merged.append(toleration)
    if merged:
        spec["tolerations"] = merged


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIXES: dict[str, Decimal | int] = {
    "": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity (`100m`, `2Gi`, `1.5`) as a number; None when it is not one podci reads."""
    match = _QUANTITY.match(str(value))
    if match is None or match.group(2) not in _SUFFIXES:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except ArithmeticError:
        return None


def default_resources(settings: Settings) -> Json:
    return {
        "requests": {"cpu": settings.kube_cpu_request, "memory": settings.kube_memory_request},
        "limits": {"cpu": settings.kube_cpu_limit, "memory": settings.kube_memory_limit},
    }


def _with_resources(container: Json, settings: Settings) -> None:
    """Every container gets a request and a limit of CPU and memory: the template's, else the settings'.
    A default never contradicts what the template says: a request is at most the given limit, a limit
    at least the given request (the API refuses a request above its limit)."""
    defaults = default_resources(settings)
    resources = container.setdefault("resources", {})
    requests, limits = resources.setdefault("requests", {}), resources.setdefault("limits", {})
    for kind in ("cpu", "memory"):
        request, limit = requests.get(kind), limits.get(kind)
        if request is None:
            given, default = quantity(limit), quantity(defaults["requests"][kind])
            use_limit = limit is not None and (given is None or default is None or given < default)
            requests[kind] = limit if use_limit else defaults["requests"][kind]
        if limit is None:
            given, default = quantity(requests[kind]), quantity(defaults["limits"][kind])
            use_request = given is None or default is None or given > default
            limits[kind] = requests[kind] if use_request else defaults["limits"][kind]


def harden(spec: Json, level: Level, settings: Settings) -> None:
    """Fill in, where the template is silent, what the build's Pod Security Standard needs (`restricted`:
    a non-root user, no privilege escalation, no capabilities, the runtime's seccomp profile; `baseline`:
    the seccomp profile), the workspace's group, and every container's requests and limits. What the
    template says stays: `policy` has refused what the level does not allow."""
    security = spec.setdefault("securityContext", {})
    security.setdefault("seccompProfile", {"type": "RuntimeDefault"})
    security.setdefault("fsGroup", PODCI_USER)
    if level == "restricted":
        security.setdefault("runAsNonRoot", True)
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        if level == "restricted":
            own = container.setdefault("securityContext", {})
            own.setdefault("allowPrivilegeEscalation", False)
            own.setdefault("capabilities", {}).setdefault("drop", ["ALL"])
        _with_resources(container, settings)


def make_pod(ctx: BuildContext, settings: Settings, attempt: int, on_demand: bool = False) -> Json:
    """The build's pod for one attempt, from the template (copied, never mutated).

    Besides what the module docstring lists: restartPolicy `Never` (a container that died must be seen,
    not silently restarted), the one allowed service account with no token mounted (tests have no
    business calling the Kubernetes API), and `enableServiceLinks: false` unless the template says
    otherwise, because every other build's Service in the namespace would otherwise add seven variables
    to every container, and a busy namespace has hundreds.
    """
    spec: Json = ctx.pod.as_written()
    env = podci_env(ctx)
    mount = _workspace_mount(ctx, settings)

    harden(spec, level_of(ctx, settings), settings)
    init_containers: list[Json] = list(spec.get("initContainers") or [])
    containers: list[Json] = list(spec["containers"])
    for container in init_containers + containers:
        _with_env(container, env)
        _with_mount(container, mount)
        _with_working_dir(container, ctx.config.volume.mount_path)
    agent = agent_container(ctx, settings)
    _with_env(agent, env)

    spec["initContainers"] = [checkout_container(ctx, settings), *init_containers]
    spec["containers"] = [*containers, agent]
    spec["volumes"] = [
        *(spec.get("volumes") or []),
        {"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": ctx.name}},
        *_credentials_volume(settings),
    ]
    spec["restartPolicy"] = "Never"
    spec.pop("serviceAccount", None)  # the deprecated alias; check_policy allowed only our account
    spec["serviceAccountName"] = settings.kube_service_account
    spec["automountServiceAccountToken"] = False
    spec.setdefault("enableServiceLinks", False)
    _placement(spec, settings, on_demand)
    return {
        "apiVersion": api_version_of("Pod"),
        "kind": "Pod",
        "metadata": _metadata(ctx, settings, attempt_name(ctx.name, attempt), attempt=attempt),
        "spec": spec,
    }


# --- cleanup ------------------------------------------------------------------------------------------

CLEANUP_MOUNT = "/podci-volume"


def cleanup_pod_name(build: str) -> str:
    suffix = "-cleanup"
    return dns_label(build, max_len=63 - len(suffix)) + suffix


def make_cleanup_pod(build: str, settings: Settings, node: str | None) -> Json:
    """A pod that removes build `build`'s directory from its static volume, which Kubernetes never
    deletes (see `STATIC_RECLAIM_POLICY`). It mounts the volume's root through the build's own claim,
    after the build's pods are gone; on hostPath it runs on `node`, where the directory is."""
    labels = {**settings.kube_labels, MANAGED_BY: "podci", BUILD_LABEL: build}
    spec: Json = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "serviceAccountName": settings.kube_service_account,
        "containers": [
            {
                "name": CLEANUP_CONTAINER,
                "image": settings.kube_agent_image,
                "command": [
                    "sh",
                    "-c",
                    CLEANUP_SCRIPT,
                    CLEANUP_CONTAINER,
                    f"{CLEANUP_MOUNT}/{_literal(build)}",
                ],
                "volumeMounts": [{"name": WORKSPACE_VOLUME, "mountPath": CLEANUP_MOUNT}],
                "resources": copy.deepcopy(AGENT_RESOURCES),
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": [{"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": build}}],
    }
    if node is not None and settings.kube_static_volumes == "hostpath":
        spec["nodeName"] = node
    return {
        "apiVersion": api_version_of("Pod"),
        "kind": "Pod",
        "metadata": {"name": cleanup_pod_name(build), "namespace": namespace_of(settings), "labels": labels},
        "spec": spec,
    }
