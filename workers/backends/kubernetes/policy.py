"""What a pod template may ask for: an allowlist, checked before any object is created, each refusal a
sentence naming the container or volume at fault. Pure.

The allowlist follows the Pod Security Standards (kubernetes.io/docs/concepts/security/
pod-security-standards) at the build's level: `restricted` (PODCI_POD_SECURITY's default, and always
for an untrusted pull request, approved or not) or `baseline`. Only the pod and container fields
listed here may appear, each with the values the standard allows; anything else (a field podci does
not know, a new one in a later Kubernetes) is refused rather than passed on. podci's own rules come on
top, for what the standard leaves open but a CI pod never needs: no `nodeName`, no tolerations, no
`priorityClassName` but PODCI_KUBE_PRIORITY_CLASSES, no service account but podci's and no token of
it, no secret but PODCI_KUBE_ALLOWED_SECRETS, no claim but the build's own workspace, no raw `nfs`,
`hostPath`, `csi` or block device, no probe or hook aimed at another host, no other service account.

Where the template is silent, `objects.harden` fills in what the level requires, so a plain template
passes; what the template says is never overridden, and is refused here when the level forbids it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from schemas.settings import Settings, csv
from workers.backends.base import BuildContext
from workers.backends.kubernetes.names import AGENT_CONTAINER, CHECKOUT_CONTAINER, WORKSPACE_VOLUME
from workers.errors import PermanentError

Json = dict[str, Any]
Level = Literal["restricted", "baseline"]

# The pod fields a template may set (the rest of a PodSpec is refused). podci sets or overrides
# restartPolicy, serviceAccountName and automountServiceAccountToken itself.
POD_FIELDS = frozenset({
    "containers", "initContainers", "volumes", "restartPolicy", "terminationGracePeriodSeconds",
    "activeDeadlineSeconds", "dnsPolicy", "dnsConfig", "hostname", "subdomain", "setHostnameAsFQDN",
    "hostAliases", "nodeSelector", "affinity", "topologySpreadConstraints", "schedulingGates",
    "readinessGates", "securityContext", "serviceAccountName", "serviceAccount",
    "automountServiceAccountToken", "enableServiceLinks", "priorityClassName", "imagePullSecrets", "os",
    "hostUsers", "hostNetwork", "hostPID", "hostIPC",
})  # fmt: skip
CONTAINER_FIELDS = frozenset({
    "name", "image", "command", "args", "workingDir", "env", "envFrom", "ports", "resources", "resizePolicy",
    "volumeMounts", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "terminationMessagePath",
    "terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin", "stdinOnce", "tty",
    "restartPolicy",
})  # fmt: skip
POD_SECURITY_FIELDS = frozenset({
    "runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "fsGroupChangePolicy", "supplementalGroups",
    "supplementalGroupsPolicy", "seccompProfile", "seLinuxOptions", "appArmorProfile",
})  # fmt: skip
CONTAINER_SECURITY_FIELDS = frozenset({
    "allowPrivilegeEscalation", "capabilities", "privileged", "readOnlyRootFilesystem", "runAsNonRoot",
    "runAsUser", "runAsGroup", "seccompProfile", "seLinuxOptions", "procMount", "appArmorProfile",
})  # fmt: skip
# Volume types: the standard's `restricted` list, less `csi` and `persistentVolumeClaim` (podci's own
# rules: an inline CSI driver or another claim reaches storage outside the build).
VOLUME_TYPES = frozenset({"configMap", "downwardAPI", "emptyDir", "ephemeral", "projected", "secret"})
PROJECTED_SOURCES = frozenset({"configMap", "downwardAPI", "secret", "clusterTrustBundle"})
# The capabilities a container may add: the standard's baseline set, and only NET_BIND_SERVICE when
# restricted.
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})  # fmt: skip
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
PROFILE_TYPES = frozenset({"RuntimeDefault", "Localhost"})


def level_of(ctx: BuildContext, settings: Settings) -> Level:
    """The Pod Security Standard the build's pod meets: an untrusted pull request's is `restricted`."""
    return "restricted" if not ctx.trusted else settings.pod_security


def _mapping(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Json]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _fields(value: Any) -> Iterator[str]:
    yield from (str(key) for key in _mapping(value))


class _Rules:
    """The checks for one build: its level and the installation's own lists."""

    def __init__(self, level: Level, settings: Settings) -> None:
        self.level = level
        self.restricted = level == "restricted"
        self.service_account = settings.kube_service_account
        self.priority_classes = csv(settings.kube_priority_classes)
        self.secrets = csv(settings.kube_allowed_secrets)

    def secret(self, name: Any, where: str) -> list[str]:
        if name in self.secrets:
            return []
        allowed = f" ({', '.join(self.secrets)} may)" if self.secrets else ""
        return [
            f"{where} reads the secret `{name}`, which builds may not{allowed} (PODCI_KUBE_ALLOWED_SECRETS)"
        ]

    # --- securityContext, pod and container ----------------------------------------------------------

    def profiles(self, security: Json, who: str, prefix: str) -> list[str]:
        """seccomp, AppArmor and SELinux: the same rules at pod and container level."""
        problems = []
        seccomp = _mapping(security.get("seccompProfile")).get("type")
        if seccomp is not None and seccomp not in PROFILE_TYPES:
            problems.append(f"{who} asks for `{prefix}seccompProfile.type: {seccomp}`")
        apparmor = _mapping(security.get("appArmorProfile")).get("type")
        if apparmor is not None and apparmor not in PROFILE_TYPES:
            problems.append(f"{who} asks for `{prefix}appArmorProfile.type: {apparmor}`")
        selinux = _mapping(security.get("seLinuxOptions"))
        if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            problems.append(
                f"{who} asks for `{prefix}seLinuxOptions` the standard forbids (type, user or role)"
            )
        return problems

    def run_as(self, security: Json, who: str, prefix: str) -> list[str]:
        if not self.restricted:
            return []
        problems = []
        if security.get("runAsNonRoot") is False:
            problems.append(f"{who} asks for `{prefix}runAsNonRoot: false`")
        if security.get("runAsUser") == 0:
            problems.append(f"{who} asks for `{prefix}runAsUser: 0` (root)")
        return problems

    def pod_security(self, spec: Json) -> list[str]:
        security = _mapping(spec.get("securityContext"))
        who, prefix = "the pod", "securityContext."
        problems = [f"the pod asks for `securityContext.{key}`" for key in _fields(security)
                    if key not in POD_SECURITY_FIELDS]  # fmt: skip
        return problems + self.profiles(security, who, prefix) + self.run_as(security, who, prefix)

    def container_security(self, who: str, security: Json) -> list[str]:
        prefix = "securityContext."
        problems = [f"{who} asks for `securityContext.{key}`" for key in _fields(security)
                    if key not in CONTAINER_SECURITY_FIELDS]  # fmt: skip
        if security.get("privileged") is True:
            problems.append(f"{who} asks for `securityContext.privileged: true`")
        if security.get("allowPrivilegeEscalation") is True and self.restricted:
            problems.append(f"{who} asks for `securityContext.allowPrivilegeEscalation: true`")
        if security.get("procMount") not in (None, "Default"):
            problems.append(f"{who} asks for `securityContext.procMount: {security['procMount']}`")
        capabilities = _mapping(security.get("capabilities"))
        added = capabilities.get("add")
        allowed = {"NET_BIND_SERVICE"} if self.restricted else BASELINE_CAPABILITIES
        extra = [str(cap) for cap in added if cap not in allowed] if isinstance(added, list) else []
        if extra or (added and not isinstance(added, list)):
            shown = ", ".join(str(cap) for cap in added) if isinstance(added, list) else str(added)
            problems.append(f"{who} adds capabilities ({shown}) in `securityContext.capabilities.add`")
        dropped = capabilities.get("drop")
        if (
            self.restricted
            and dropped is not None
            and "ALL" not in (dropped if isinstance(dropped, list) else [])
        ):
            problems.append(f"{who} must drop ALL capabilities (`securityContext.capabilities.drop: [ALL]`)")
        return problems + self.profiles(security, who, prefix) + self.run_as(security, who, prefix)

    # --- containers ----------------------------------------------------------------------------------

    def container(self, kind: str, container: Json) -> list[str]:
        name = container.get("name", "?")
        who = f"{kind} `{name}`"
        problems: list[str] = []
        if name in (AGENT_CONTAINER, CHECKOUT_CONTAINER):
            problems.append(f"{who} uses a name podci reserves for its own containers; rename it")
        problems += [f"{who} asks for `{key}`, which builds may not set" for key in _fields(container)
                     if key not in CONTAINER_FIELDS]  # fmt: skip
        problems += self.container_security(who, _mapping(container.get("securityContext")))
        for port in _items(container.get("ports")):
            if port.get("hostPort"):
                problems.append(
                    f"{who} asks for `hostPort: {port['hostPort']}`; builds share nodes, so use the "
                    "containerPort (reached through $(PODCI_PORT_<NAME>))"
                )
            if port.get("hostIP"):
                problems.append(f"{who} asks for `hostIP: {port['hostIP']}`")
        for mount in _items(container.get("volumeMounts")):
            if mount.get("name") == WORKSPACE_VOLUME:
                problems.append(
                    f"{who} mounts `{WORKSPACE_VOLUME}` itself; podci mounts the workspace in every "
                    "container at `volume.mount_path` of .podci.yml"
                )
            if mount.get("mountPropagation") not in (None, "None"):
                problems.append(f"{who} asks for `mountPropagation: {mount['mountPropagation']}`")
        for var in _items(container.get("env")):
            reference = _mapping(var.get("valueFrom")).get("secretKeyRef")
            if isinstance(reference, dict):
                problems += self.secret(reference.get("name"), f"{who} (env `{var.get('name')}`)")
        for source in _items(container.get("envFrom")):
            if "secretRef" in source:
                problems += self.secret(_mapping(source["secretRef"]).get("name"), f"{who} (envFrom)")
        problems += self.handlers(who, container)
        return problems

    def handlers(self, who: str, container: Json) -> list[str]:
        """A probe or a lifecycle hook is run by the kubelet: aimed at another host, it is a request from
        the node on the build's behalf."""
        handlers = [
            (key, _mapping(container.get(key))) for key in ("livenessProbe", "readinessProbe", "startupProbe")
        ]
        lifecycle = _mapping(container.get("lifecycle"))
        handlers += [(f"lifecycle.{key}", _mapping(lifecycle.get(key))) for key in ("postStart", "preStop")]
        return [
            f"{who} aims `{key}` at another host (`{action}.host`)"
            for key, handler in handlers
            for action in ("httpGet", "tcpSocket")
            if _mapping(handler.get(action)).get("host")
        ]

    # --- the pod -------------------------------------------------------------------------------------

    def pod(self, spec: Json) -> list[str]:
        problems = []
        for key in _fields(spec):
            if key not in POD_FIELDS:
                problems.append(f"the pod asks for `{key}`, which builds may not set")
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(field) is True:
                problems.append(f"the pod asks for `{field}: true`")
        for field in ("serviceAccountName", "serviceAccount"):
            account = spec.get(field)
            if account and account != self.service_account:
                problems.append(
                    f"the pod names service account `{account}` in `{field}`, but builds may only run as "
                    f"`{self.service_account}`"
                )
        if spec.get("automountServiceAccountToken") is True:
            problems.append("the pod asks for `automountServiceAccountToken: true`; builds get no API token")
        priority = spec.get("priorityClassName")
        if priority and priority not in self.priority_classes:
            problems.append(
                f"the pod asks for `priorityClassName: {priority}`, which builds may not use "
                "(PODCI_KUBE_PRIORITY_CLASSES)"
            )
        if _mapping(spec.get("os")).get("name") not in (None, "linux"):
            problems.append("the pod asks for a non-Linux `os`")
        for reference in _items(spec.get("imagePullSecrets")):
            problems += self.secret(reference.get("name"), "the pod (imagePullSecrets)")
        return problems + self.pod_security(spec)

    def volume(self, volume: Json) -> list[str]:
        name = volume.get("name", "?")
        who = f"volume `{name}`"
        if name == WORKSPACE_VOLUME:
            return [f"{who} uses a name podci reserves for the workspace; rename it"]
        kinds = [key for key in _fields(volume) if key != "name"]
        problems = [
            f"{who} is a {kind} volume, which builds may not use"
            for kind in kinds
            if kind not in VOLUME_TYPES
        ]
        if "secret" in volume:
            problems += self.secret(_mapping(volume["secret"]).get("secretName"), who)
        for source in _items(_mapping(volume.get("projected")).get("sources")):
            for kind in _fields(source):
                if kind == "serviceAccountToken":
                    problems.append(f"{who} projects a service account token; builds get no API token")
                elif kind not in PROJECTED_SOURCES:
                    problems.append(f"{who} projects `{kind}`, which builds may not use")
            if "secret" in source:
                problems += self.secret(_mapping(source["secret"]).get("name"), who)
        return problems


def policy_problems(ctx: BuildContext, settings: Settings) -> list[str]:
    """Every reason the template may not run here, each naming the container or volume at fault."""
    spec = ctx.pod.as_written()
    rules = _Rules(level_of(ctx, settings), settings)
    problems = rules.pod(spec)
    for kind, key in (("container", "containers"), ("init container", "initContainers")):
        for container in _items(spec.get(key)):
            problems += rules.container(kind, container)
    for volume in _items(spec.get("volumes")):
        problems += rules.volume(volume)
    return problems


def check_policy(ctx: BuildContext, settings: Settings) -> None:
    """Refuse, before anything is created, a template that would reach beyond its own pod.

    It applies to every build, not only to forks (whose template already comes from the target branch):
    a privileged container or a host namespace is a way out of the pod for anyone who can push a branch.
    """
    problems = policy_problems(ctx, settings)
    if problems:
        level = level_of(ctx, settings)
        raise PermanentError(
            f"the pod template `{ctx.config.pod_template}` asks for what podci does not allow: "
            f"{'; '.join(problems)}. Remove these fields from the template and push again "
            f"(the build's pods meet the Pod Security Standard `{level}`)."
        )
