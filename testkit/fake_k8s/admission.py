"""Pod Security Admission, as the API server applies it to a pod created in a namespace labelled
`pod-security.kubernetes.io/enforce: <level>`: the Pod Security Standards (kubernetes.io/docs/concepts/
security/pod-security-standards), control by control, with the upstream checks' reasons and details.

Written from the published standard, not from podci's own policy (`workers/backends/kubernetes/
policy.py`), so that the fake refuses what a real `restricted` namespace refuses and the tests can show
that every pod podci builds is admitted. Level `latest`, Linux pods; a Windows pod skips the
restricted controls that do not apply to it, as upstream does.

`violations(pod, level)` gives (reason, detail) pairs in upstream's order (by check id); `forbidden`
turns them into the 403 message: `pods "x" is forbidden: violates PodSecurity "restricted:latest":
allowPrivilegeEscalation != false (container "app" must set ...), ...`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Obj = dict[str, Any]

ENFORCE = "pod-security.kubernetes.io/enforce"
ENFORCE_VERSION = "pod-security.kubernetes.io/enforce-version"
LEVELS = ("privileged", "baseline", "restricted")

BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})  # fmt: skip
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
})  # fmt: skip
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUMES = (
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim", "projected",
    "secret",
)  # fmt: skip
KNOWN_VOLUMES = (
    "hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd",
    "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk",
    "portworxVolume", "photonPersistentDisk", "scaleIO", "storageos",
)  # fmt: skip
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"

Violation = tuple[str, str]  # (reason, detail)


def _map(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _containers(spec: Obj) -> Iterator[Obj]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from (c for c in _list(spec.get(key)) if isinstance(c, dict))


def _security(container: Obj) -> Obj:
    return _map(container.get("securityContext"))


def _quote(names: list[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def _containers_phrase(names: list[str]) -> str:
    return f"{'container' if len(names) == 1 else 'containers'} {_quote(names)}"


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _must_not_add(names: list[str], caps: list[str]) -> str:
    where = "in securityContext.capabilities.add"
    return f"{_containers_phrase(names)} must not include {_quote(sorted(caps))} {where}"


# --- baseline -----------------------------------------------------------------------------------------


def _host_namespaces(spec: Obj) -> Violation | None:
    set_true = [f"{field}=true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field) is True]
    return ("host namespaces", ", ".join(set_true)) if set_true else None


def _privileged(spec: Obj) -> Violation | None:
    bad = [c.get("name", "") for c in _containers(spec) if _security(c).get("privileged") is True]
    if not bad:
        return None
    verb = _plural(len(bad), "must not set", "must not set")
    return "privileged", f"{_containers_phrase(bad)} {verb} securityContext.privileged=true"


def _added(container: Obj) -> list[str]:
    return [str(cap) for cap in _list(_map(_security(container).get("capabilities")).get("add"))]


def _capabilities_baseline(spec: Obj) -> Violation | None:
    bad, caps = [], []
    for container in _containers(spec):
        extra = [cap for cap in _added(container) if cap not in BASELINE_CAPABILITIES]
        if extra:
            bad.append(container.get("name", ""))
            caps += [cap for cap in extra if cap not in caps]
    if not bad:
        return None
    return "non-default capabilities", _must_not_add(bad, caps)


def _host_path(spec: Obj) -> Violation | None:
    bad = [v.get("name", "") for v in _list(spec.get("volumes")) if isinstance(v, dict) and "hostPath" in v]
    return ("hostPath volumes", f"{_plural(len(bad), 'volume', 'volumes')} {_quote(bad)}") if bad else None


def _host_ports(spec: Obj) -> Violation | None:
    bad, ports = [], []
    for container in _containers(spec):
        used = [
            p["hostPort"] for p in _list(container.get("ports")) if isinstance(p, dict) and p.get("hostPort")
        ]
        if used:
            bad.append(container.get("name", ""))
            ports += [str(port) for port in used]
    if not bad:
        return None
    verb, noun = ("uses", "hostPort") if len(bad) == 1 else ("use", "hostPorts")
    if len(ports) > 1:
        noun = "hostPorts"
    return "hostPort", f"{_containers_phrase(bad)} {verb} {noun} {', '.join(ports)}"


def _apparmor(pod: Obj, spec: Obj) -> Violation | None:
    def allowed(kind: Any) -> bool:
        return kind in ("RuntimeDefault", "Localhost")

    setters, values = [], []
    pod_profile = _map(spec.get("securityContext")).get("appArmorProfile")
    if isinstance(pod_profile, dict) and not allowed(pod_profile.get("type")):
        setters.append("pod")
        values.append(str(pod_profile.get("type")))
    bad = []
    for container in _containers(spec):
        profile = _security(container).get("appArmorProfile")
        if isinstance(profile, dict) and not allowed(profile.get("type")):
            bad.append(container.get("name", ""))
            values.append(str(profile.get("type")))
    if bad:
        setters.append(_containers_phrase(bad))
    annotations = [
        f'{key}="{value}"'
        for key, value in _map(_map(pod.get("metadata")).get("annotations")).items()
        if key.startswith(APPARMOR_ANNOTATION)
        and value not in ("", "runtime/default")
        and not str(value).startswith("localhost/")
    ]
    if annotations:
        setters.append(_plural(len(annotations), "annotation", "annotations"))
    if not setters:
        return None
    shown = sorted(set(values)) + sorted(annotations)
    reason = _plural(len(shown), "forbidden AppArmor profile", "forbidden AppArmor profiles")
    return reason, f"{' and '.join(setters)} must not set AppArmor profile type to {_quote(shown)}"


def _selinux(spec: Obj) -> Violation | None:
    setters, types, user, role = [], set(), False, False

    def bad(options: Obj) -> bool:
        nonlocal user, role
        wrong = False
        if options.get("type", "") not in SELINUX_TYPES:
            types.add(str(options.get("type")))
            wrong = True
        if options.get("user"):
            user = wrong = True
        if options.get("role"):
            role = wrong = True
        return wrong

    pod_options = _map(spec.get("securityContext")).get("seLinuxOptions")
    if isinstance(pod_options, dict) and bad(pod_options):
        setters.append("pod")
    containers = [
        c.get("name", "")
        for c in _containers(spec)
        if isinstance(_security(c).get("seLinuxOptions"), dict) and bad(_security(c)["seLinuxOptions"])
    ]
    if containers:
        setters.append(_containers_phrase(containers))
    if not setters:
        return None
    data = [f"{_plural(len(types), 'type', 'types')} {_quote(sorted(types))}"] if types else []
    data += ["user may not be set"] if user else []
    data += ["role may not be set"] if role else []
    detail = f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(data)}"
    return "seLinuxOptions", detail


def _proc_mount(spec: Obj) -> Violation | None:
    bad, values = [], []
    for container in _containers(spec):
        mount = _security(container).get("procMount")
        if mount not in (None, "Default"):
            bad.append(container.get("name", ""))
            values.append(str(mount))
    if not bad:
        return None
    return (
        "procMount",
        f"{_containers_phrase(bad)} must not set securityContext.procMount to {_quote(values)}",
    )


def _seccomp_setters(spec: Obj) -> tuple[list[str], list[str], list[str]]:
    """(who set Unconfined, containers with no profile, the pod-level type or "")."""
    explicit, unset = [], []
    pod_type = _map(_map(spec.get("securityContext")).get("seccompProfile")).get("type", "")
    if pod_type == "Unconfined":
        explicit.append("pod")
    bad = []
    for container in _containers(spec):
        kind = _map(_security(container).get("seccompProfile")).get("type")
        if kind == "Unconfined":
            bad.append(container.get("name", ""))
        elif kind is None and pod_type not in ("RuntimeDefault", "Localhost"):
            unset.append(container.get("name", ""))
    if bad:
        explicit.append(_containers_phrase(bad))
    return explicit, unset, pod_type


def _seccomp_baseline(spec: Obj) -> Violation | None:
    explicit, _, _ = _seccomp_setters(spec)
    if not explicit:
        return None
    verb = "must not set"
    return (
        "seccompProfile",
        f'{" and ".join(explicit)} {verb} securityContext.seccompProfile.type to "Unconfined"',
    )


def _sysctls(spec: Obj) -> Violation | None:
    names = [
        str(s.get("name"))
        for s in _list(_map(spec.get("securityContext")).get("sysctls"))
        if isinstance(s, dict) and s.get("name") not in SAFE_SYSCTLS
    ]
    return ("forbidden sysctls", ", ".join(names)) if names else None


def _windows_host_process(spec: Obj) -> Violation | None:
    setters = []
    if _map(_map(spec.get("securityContext")).get("windowsOptions")).get("hostProcess") is True:
        setters.append("pod")
    bad = [c.get("name", "") for c in _containers(spec)
           if _map(_security(c).get("windowsOptions")).get("hostProcess") is True]  # fmt: skip
    if bad:
        setters.append(_containers_phrase(bad))
    if not setters:
        return None
    return (
        "hostProcess",
        f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true",
    )


# --- restricted ---------------------------------------------------------------------------------------


def _windows(spec: Obj) -> bool:
    return _map(spec.get("os")).get("name") == "windows"


def _restricted_volumes(spec: Obj) -> Violation | None:
    bad, kinds = [], []
    for volume in _list(spec.get("volumes")):
        if not isinstance(volume, dict) or any(kind in volume for kind in RESTRICTED_VOLUMES):
            continue
        bad.append(volume.get("name", ""))
        kind = next((k for k in KNOWN_VOLUMES if k in volume), "unknown")
        if kind not in kinds:
            kinds.append(kind)
    if not bad:
        return None
    volumes = f"{_plural(len(bad), 'volume', 'volumes')} {_quote(bad)} {_plural(len(bad), 'uses', 'use')}"
    kinds_used = _plural(len(kinds), "restricted volume type", "restricted volume types")
    return "restricted volume types", f"{volumes} {kinds_used} {_quote(sorted(kinds))}"


def _allow_privilege_escalation(spec: Obj) -> Violation | None:
    if _windows(spec):
        return None
    bad = [
        c.get("name", "")
        for c in _containers(spec)
        if _security(c).get("allowPrivilegeEscalation") is not False
    ]
    if not bad:
        return None
    return "allowPrivilegeEscalation != false", (
        f"{_containers_phrase(bad)} must set securityContext.allowPrivilegeEscalation=false"
    )


def _run_as_non_root(spec: Obj) -> Violation | None:
    setters, implicit = [], []
    pod_value = _map(spec.get("securityContext")).get("runAsNonRoot")
    if pod_value is False:
        setters.append("pod")
    explicit = []
    for container in _containers(spec):
        value = _security(container).get("runAsNonRoot")
        if value is False:
            explicit.append(container.get("name", ""))
        elif value is None and pod_value is not True:
            implicit.append(container.get("name", ""))
    if explicit:
        setters.append(_containers_phrase(explicit))
    details = [f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false"] if setters else []
    if implicit:
        details.append(f"pod or {_containers_phrase(implicit)} must set securityContext.runAsNonRoot=true")
    return ("runAsNonRoot != true", "\n".join(details)) if details else None


def _run_as_user(spec: Obj) -> Violation | None:
    setters = ["pod"] if _map(spec.get("securityContext")).get("runAsUser") == 0 else []
    bad = [c.get("name", "") for c in _containers(spec) if _security(c).get("runAsUser") == 0]
    if bad:
        setters.append(_containers_phrase(bad))
    return ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def _seccomp_restricted(spec: Obj) -> Violation | None:
    if _windows(spec):
        return None
    explicit, unset, _ = _seccomp_setters(spec)
    details = []
    if explicit:
        details.append(
            f'{" and ".join(explicit)} must not set securityContext.seccompProfile.type to "Unconfined"'
        )
    if unset:
        wanted = 'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"'
        details.append(f"pod or {_containers_phrase(unset)} must set {wanted}")
    return ("seccompProfile", "; ".join(details)) if details else None


def _capabilities_restricted(spec: Obj) -> Violation | None:
    if _windows(spec):
        return None
    no_drop, bad_add, caps = [], [], []
    for container in _containers(spec):
        drop = [str(cap) for cap in _list(_map(_security(container).get("capabilities")).get("drop"))]
        if "ALL" not in drop:
            no_drop.append(container.get("name", ""))
        extra = [cap for cap in _added(container) if cap != "NET_BIND_SERVICE"]
        if extra:
            bad_add.append(container.get("name", ""))
            caps += [cap for cap in extra if cap not in caps]
    details = []
    if no_drop:
        details.append(f'{_containers_phrase(no_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if bad_add:
        details.append(_must_not_add(bad_add, caps))
    return ("unrestricted capabilities", "; ".join(details)) if details else None


Check = Callable[[Obj, Obj], Violation | None]


def _spec_only(check: Callable[[Obj], Violation | None]) -> Check:
    return lambda pod, spec: check(spec)


# (check id, level, check, ids of the checks it overrides) - evaluated and reported by id, as upstream.
CHECKS: list[tuple[str, str, Check, tuple[str, ...]]] = [
    ("allowPrivilegeEscalation", "restricted", _spec_only(_allow_privilege_escalation), ()),
    ("appArmorProfile", "baseline", _apparmor, ()),
    ("capabilities_baseline", "baseline", _spec_only(_capabilities_baseline), ()),
    (
        "capabilities_restricted",
        "restricted",
        _spec_only(_capabilities_restricted),
        ("capabilities_baseline",),
    ),
    ("hostNamespaces", "baseline", _spec_only(_host_namespaces), ()),
    ("hostPathVolumes", "baseline", _spec_only(_host_path), ()),
    ("hostPorts", "baseline", _spec_only(_host_ports), ()),
    ("privileged", "baseline", _spec_only(_privileged), ()),
    ("procMount", "baseline", _spec_only(_proc_mount), ()),
    ("restrictedVolumes", "restricted", _spec_only(_restricted_volumes), ("hostPathVolumes",)),
    ("runAsNonRoot", "restricted", _spec_only(_run_as_non_root), ()),
    ("runAsUser", "restricted", _spec_only(_run_as_user), ()),
    ("seLinuxOptions", "baseline", _spec_only(_selinux), ()),
    ("seccompProfile_baseline", "baseline", _spec_only(_seccomp_baseline), ()),
    (
        "seccompProfile_restricted",
        "restricted",
        _spec_only(_seccomp_restricted),
        ("seccompProfile_baseline",),
    ),
    ("sysctls", "baseline", _spec_only(_sysctls), ()),
    ("windowsHostProcess", "baseline", _spec_only(_windows_host_process), ()),
]


def violations(pod: Obj, level: str) -> list[Violation]:
    """Every control of `level` the pod breaks, in upstream's order; [] when it is admitted."""
    if level not in LEVELS:
        raise ValueError(f"unknown Pod Security level {level!r}; the levels are {', '.join(LEVELS)}")
    wanted = LEVELS[1 : LEVELS.index(level) + 1]  # privileged checks nothing
    chosen = [check for check in CHECKS if check[1] in wanted]
    overridden = {old for _, _, _, olds in chosen for old in olds}
    spec = _map(pod.get("spec"))
    found = []
    for check_id, _, check, _ in chosen:
        if check_id not in overridden and (violation := check(pod, spec)) is not None:
            found.append(violation)
    return found


def level_of(namespace: Obj | None) -> tuple[str, str]:
    """(level, version) a namespace enforces: its labels, `privileged` and `latest` when absent."""
    labels = _map(_map((namespace or {}).get("metadata")).get("labels"))
    return str(labels.get(ENFORCE, "privileged")), str(labels.get(ENFORCE_VERSION, "latest"))


def forbidden(name: str, level: str, version: str, found: list[Violation]) -> str:
    """The message the API server answers a refused pod with (403 Forbidden)."""
    parts = [f"{reason} ({detail})" if detail else reason for reason, detail in found]
    return f'pods "{name}" is forbidden: violates PodSecurity "{level}:{version}": {", ".join(parts)}'
