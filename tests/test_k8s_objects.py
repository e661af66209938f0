"""workers/backends/k8s_objects.py: whole objects compared as dicts, and every one checked against the
official Kubernetes 1.30 schema (strict: no unknown field passes)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from schemas.names import dns_label
from schemas.repo_config import PodSpec, RepoConfig, SetupSpec, VolumeSpec
from schemas.repo_config import TestSpec as _TestSpec  # not `Test*`: pytest would try to collect it
from schemas.request import Revision
from schemas.settings import Settings
from testkit.gitrepo import EXAMPLE
from workers.backends.base import BuildContext
from workers.backends.kubernetes.names import (
    AGENT_CONTAINER,
    AGENT_SCRIPT,
    ATTEMPT_LABEL,
    BUILD_LABEL,
    CHECKOUT_CONTAINER,
    CHECKOUT_SCRIPT,
    CLEANUP_SCRIPT,
    CLONE_SCRIPT,
    JOB_LABEL,
    MANAGED_BY,
    WORKSPACE_VOLUME,
)
from workers.backends.kubernetes.objects import (
    AGENT_RESOURCES,
    api_version_of,
    labels,
    make_cleanup_pod,
    make_pod,
    make_pv,
    make_pvc,
    make_service,
)
from workers.backends.kubernetes.policy import check_policy, policy_problems
from workers.backends.local.env import expand
from workers.errors import PermanentError
from workers.repo_config import load

K8S = "1.30.0"
SRC = "a" * 40
TGT = "b" * 40

TEMPLATE: dict[str, Any] = {
    "containers": [
        {
            "name": "tests",
            "image": "python:3.12-slim",
            "command": ["sleep", "infinity"],
            "env": [{"name": "DB_URL", "value": "postgres://$(PODCI_HOST):$(PODCI_PORT_DB)/t"}],
            "volumeMounts": [
                {"name": "old-ws", "mountPath": "/workspace/"},  # replaced by the workspace
                {"name": "cache", "mountPath": "/cache"},
            ],
        },
        {
            "name": "db",
            "image": "postgres:16",
            "command": ["postgres"],
            "ports": [{"name": "db", "containerPort": 5432}, {"containerPort": 9187, "protocol": "UDP"}],
        },
    ],
    "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "old-ws", "emptyDir": {}}],
    "nodeSelector": {"disk": "ssd"},
}

FILE_CONFIG = RepoConfig(
    test=_TestSpec(container="tests", command="pytest -q"),
    setup=SetupSpec(file=".podci/ready"),
    volume=VolumeSpec(size="2Gi", mount_path="/workspace"),
)


def example() -> tuple[RepoConfig, dict[str, Any]]:
    root = EXAMPLE
    loaded = load(
        (root / ".podci.yml").read_text(),
        lambda path: (root / path).read_text() if (root / path).is_file() else None,
    )
    return loaded.config, loaded.pod_spec


def context(
    pod_spec: dict[str, Any] | None = None,
    config: RepoConfig = FILE_CONFIG,
    *,
    name: str = "web-7",
    job: str = "web",
    target: Revision | None = None,
    source: Revision | None = None,
) -> BuildContext:
    return BuildContext(
        build_id="b-7",
        name=name,
        job=job,
        number=7,
        merge_commit="c" * 40,
        checkout_dir=Path("/nonexistent/checkout"),
        log_dir=Path("/nonexistent/logs"),
        config=config,
        pod=PodSpec.model_validate(TEMPLATE if pod_spec is None else pod_spec),
        source=source
        or Revision(clone_url="https://bitbucket.org/team/web.git", ref="feature/login", commit=SRC),
        target=target,
        created=datetime(2026, 1, 1, tzinfo=UTC),
    )


MAIN = Revision(clone_url="https://bitbucket.org/team/web.git", ref="main", commit=TGT)


@pytest.fixture(autouse=True)
def _no_podci_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read PODCI_* from the environment; these tests pass every value they mean."""
    import os

    for key in [k for k in os.environ if k.startswith("PODCI_")]:
        monkeypatch.delenv(key)


def cluster(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kube_namespace": "ci",
        "kube_labels": {"team": "qa"},
        "kube_service_account": "builder",
        "kube_node_selector": {"pool": "spot"},
        "kube_tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        **overrides,
    }
    return Settings(**values)


def validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S, strict=True)


# --- labels -------------------------------------------------------------------------------------------


def test_labels_carry_build_job_and_cluster_labels_and_podci_wins() -> None:
    settings = cluster(kube_labels={"team": "qa", MANAGED_BY: "someone-else"})
    ctx = context(job="Team/Web App")
    assert labels(ctx, settings=settings) == {
        "team": "qa",
        MANAGED_BY: "podci",
        BUILD_LABEL: "web-7",
        JOB_LABEL: dns_label("Team/Web App"),
    }
    assert labels(ctx, 3)[ATTEMPT_LABEL] == "3"
    assert labels(ctx) == {MANAGED_BY: "podci", BUILD_LABEL: "web-7", JOB_LABEL: dns_label("Team/Web App")}


def test_api_version_of_known_and_unknown_kinds() -> None:
    assert {api_version_of(k) for k in ("Pod", "Service", "PersistentVolume", "PersistentVolumeClaim")} == {
        "v1"
    }
    with pytest.raises(ValueError, match="Deployment"):
        api_version_of("Deployment")


# --- Service ------------------------------------------------------------------------------------------

META: dict[str, Any] = {
    "name": "web-7",
    "namespace": "ci",
    "labels": {"team": "qa", MANAGED_BY: "podci", BUILD_LABEL: "web-7", JOB_LABEL: "web"},
}

NO_PORTS = {"containers": [{"name": "tests", "image": "alpine", "command": ["sleep", "1"]}]}
DUAL = {
    "containers": [
        {
            "name": "dns",
            "image": "coredns",
            "command": ["coredns"],
            "ports": [{"containerPort": 53}, {"containerPort": 53, "protocol": "UDP"}],
        },
        {"name": "tests", "image": "alpine", "command": ["sleep", "1"], "ports": [{"containerPort": 53}]},
    ]
}


@pytest.mark.parametrize(
    ("template", "spec"),
    [
        (
            TEMPLATE,
            {
                "selector": {BUILD_LABEL: "web-7"},
                "ports": [
                    {"name": "db", "port": 5432, "targetPort": 5432, "protocol": "TCP"},
                    {"name": "p9187-udp", "port": 9187, "targetPort": 9187, "protocol": "UDP"},
                ],
            },
        ),
        (NO_PORTS, {"selector": {BUILD_LABEL: "web-7"}, "ports": [], "clusterIP": "None"}),
        (
            DUAL,  # 53/TCP and 53/UDP kept apart; the same 53/TCP declared twice listed once
            {
                "selector": {BUILD_LABEL: "web-7"},
                "ports": [
                    {"name": "p53", "port": 53, "targetPort": 53, "protocol": "TCP"},
                    {"name": "p53-udp", "port": 53, "targetPort": 53, "protocol": "UDP"},
                ],
            },
        ),
    ],
    ids=["named-and-unnamed", "headless", "dual-protocol"],
)
def test_make_service(template: dict[str, Any], spec: dict[str, Any]) -> None:
    service = make_service(context(template), cluster())
    assert service == {"apiVersion": "v1", "kind": "Service", "metadata": META, "spec": spec}
    validate(service)


# --- volumes ------------------------------------------------------------------------------------------

CLAIM_REF = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "ci", "name": "web-7"}
PV_META = {k: v for k, v in META.items() if k != "namespace"}


@pytest.mark.parametrize(
    ("overrides", "pvc_extra", "pv_spec"),
    [
        ({}, {}, None),
        ({"kube_storage_class": "fast"}, {"storageClassName": "fast"}, None),
        (
            {"kube_static_volumes": "nfs", "kube_nfs_server": "nfs.local", "kube_nfs_path": "/exports/podci"},
            {"storageClassName": "", "volumeName": "web-7"},
            {"nfs": {"server": "nfs.local", "path": "/exports/podci"}},
        ),
        (
            {
                "kube_static_volumes": "hostpath",
                "kube_hostpath_root": "/var/lib/podci/",
                "kube_storage_class": "x",
            },
            {"storageClassName": "", "volumeName": "web-7"},
            {"hostPath": {"path": "/var/lib/podci", "type": "DirectoryOrCreate"}},
        ),
    ],
    ids=["dynamic-default-class", "dynamic-named-class", "static-nfs", "static-hostpath"],
)
def test_make_pvc_and_pv(
    overrides: dict[str, Any], pvc_extra: dict[str, Any], pv_spec: dict[str, Any] | None
) -> None:
    settings = cluster(**overrides)
    ctx = context()
    pvc = make_pvc(ctx, settings)
    assert pvc == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": META,
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "2Gi"}},
            **pvc_extra,
        },
    }
    validate(pvc)
    pv = make_pv(ctx, settings)
    if pv_spec is None:
        assert pv is None
        return
    assert pv == {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": PV_META,
        "spec": {
            "capacity": {"storage": "2Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": CLAIM_REF,
            **pv_spec,
        },
    }
    validate(pv)


def test_nfs_without_a_server_is_refused_with_the_setting_to_fix() -> None:
    with pytest.raises(PermanentError, match="PODCI_KUBE_NFS_SERVER"):
        make_pv(context(), cluster(kube_static_volumes="nfs"))


# --- Pod ----------------------------------------------------------------------------------------------

WS = {"name": WORKSPACE_VOLUME, "mountPath": "/workspace"}


def env(**values: str) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in values.items()]


PODCI_ENV = env(
    PODCI_BUILD="web-7",
    PODCI_WORKSPACE="/workspace",
    PODCI_HOST="127.0.0.1",
    JOB_NAME="web",
    BUILD_NUMBER="7",
    PODCI_PORT_DB="5432",
    PODCI_PORT_DB_9187="9187",
)

# What podci adds for the `restricted` Pod Security Standard and the default resources (settings).
PODCI_CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
FILLED_IN_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
POD_SECURITY = {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": 65532, "runAsNonRoot": True}
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}}

EXPECTED_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {**META, "labels": {**META["labels"], ATTEMPT_LABEL: "1"}},
    "spec": {
        "initContainers": [
            {
                "name": CHECKOUT_CONTAINER,
                "image": "alpine/git:2.45.2",
                "command": ["sh", "-c", CHECKOUT_SCRIPT],
                "env": env(PODCI_WORKSPACE="/workspace", MERGE_COMMIT="c" * 40, CODE_WAIT="300"),
                "volumeMounts": [WS],
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "resources": RESOURCES,
                "securityContext": PODCI_CONTAINER_SECURITY,
            }
        ],
        "containers": [
            {
                "name": "tests",
                "image": "python:3.12-slim",
                "command": ["sleep", "infinity"],
                "env": [
                    *PODCI_ENV,
                    {"name": "DB_URL", "value": "postgres://$(PODCI_HOST):$(PODCI_PORT_DB)/t"},
                ],
                "volumeMounts": [{"name": "cache", "mountPath": "/cache"}, WS],
                "workingDir": "/workspace",
                "securityContext": FILLED_IN_SECURITY,
                "resources": RESOURCES,
            },
            {
                "name": "db",
                "image": "postgres:16",
                "command": ["postgres"],
                "ports": [{"name": "db", "containerPort": 5432}, {"containerPort": 9187, "protocol": "UDP"}],
                "env": PODCI_ENV,
                "volumeMounts": [WS],
                "workingDir": "/workspace",
                "securityContext": FILLED_IN_SECURITY,
                "resources": RESOURCES,
            },
            {
                "name": AGENT_CONTAINER,
                "image": "busybox:1.36",
                "command": ["sh", "-c", AGENT_SCRIPT, AGENT_CONTAINER, "/workspace"],
                "volumeMounts": [WS],
                "resources": AGENT_RESOURCES,
                "securityContext": PODCI_CONTAINER_SECURITY,
                "readinessProbe": {
                    "exec": {"command": ["test", "-f", "/workspace/.podci/ready"]},
                    "periodSeconds": 2,
                },
                "env": PODCI_ENV,
            },
        ],
        "volumes": [
            {"name": "cache", "emptyDir": {}},
            {"name": "old-ws", "emptyDir": {}},
            {"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": "web-7"}},
        ],
        "restartPolicy": "Never",
        "serviceAccountName": "builder",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "nodeSelector": {"disk": "ssd", "pool": "spot"},
        "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        "securityContext": POD_SECURITY,
    },
}


def test_make_pod_whole_object_for_a_pull_request_with_a_setup_file() -> None:
    before = copy.deepcopy(TEMPLATE)
    pod = make_pod(context(target=MAIN), cluster(), attempt=1)
    assert pod == EXPECTED_POD
    validate(pod)
    assert before == TEMPLATE  # the template is never mutated


def test_make_pod_whole_object_for_the_example_relaunched_on_demand() -> None:
    config, template = example()
    before = copy.deepcopy(template)
    settings = Settings(
        kube_namespace="podci-builds",
        kube_on_demand_node_selector={"pool": "on-demand"},
        kube_node_selector={"pool": "spot"},
        kube_tolerations=[{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
    )
    branch = Revision(clone_url="/srv/git/webapp", ref="main")  # no commit known, no target
    pod = make_pod(
        context(template, config, name="webapp-12", job="webapp", source=branch), settings, 2, True
    )
    podci_env = env(
        PODCI_BUILD="webapp-12",
        PODCI_WORKSPACE="/workspace",
        PODCI_HOST="127.0.0.1",
        JOB_NAME="webapp",
        BUILD_NUMBER="7",
        PODCI_PORT_COUNTER="8080",
    )
    ws = {"name": WORKSPACE_VOLUME, "mountPath": "/workspace"}
    assert pod == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "webapp-12-a2",
            "namespace": "podci-builds",
            "labels": {
                MANAGED_BY: "podci",
                BUILD_LABEL: "webapp-12",
                JOB_LABEL: "webapp",
                ATTEMPT_LABEL: "2",
            },
        },
        "spec": {
            "initContainers": [
                {
                    "name": CHECKOUT_CONTAINER,
                    "image": "alpine/git:2.45.2",
                    "command": ["sh", "-c", CHECKOUT_SCRIPT],
                    "env": env(PODCI_WORKSPACE="/workspace", MERGE_COMMIT="c" * 40, CODE_WAIT="60"),
                    "volumeMounts": [ws],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "resources": RESOURCES,
                    "securityContext": PODCI_CONTAINER_SECURITY,
                }
            ],
            "containers": [
                {
                    "name": "tests",
                    "image": "python:3.12-slim",
                    "command": ["sleep", "infinity"],
                    "env": [
                        *podci_env,
                        {"name": "COUNTER_URL", "value": "http://$(PODCI_HOST):$(PODCI_PORT_COUNTER)"},
                    ],
                    "volumeMounts": [ws],
                    "workingDir": "/workspace",
                    "securityContext": FILLED_IN_SECURITY,
                    "resources": RESOURCES,
                },
                {
                    "name": "counter",
                    "image": "python:3.12-slim",
                    "command": ["python3", "service/counter.py"],
                    "args": ["--port", "$(PODCI_PORT_COUNTER)", "--db", "counter.sqlite3"],
                    "ports": [{"name": "counter", "containerPort": 8080}],
                    "readinessProbe": {"tcpSocket": {"port": "counter"}, "periodSeconds": 1},
                    "env": podci_env,
                    "volumeMounts": [ws],
                    "workingDir": "/workspace",
                    "securityContext": FILLED_IN_SECURITY,
                    "resources": RESOURCES,
                },
                {
                    "name": AGENT_CONTAINER,
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", AGENT_SCRIPT, AGENT_CONTAINER, "/workspace"],
                    "volumeMounts": [ws],
                    "resources": AGENT_RESOURCES,
                    "securityContext": PODCI_CONTAINER_SECURITY,
                    "env": podci_env,
                },
            ],
            "volumes": [{"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": "webapp-12"}}],
            "restartPolicy": "Never",
            "serviceAccountName": "default",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "nodeSelector": {"pool": "on-demand"},  # replaced; tolerations kept: no on-demand ones set
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
            # the example names its user; podci adds the rest of `restricted` and the workspace's group
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, **POD_SECURITY},
        },
    }
    validate(pod)
    assert before == template


@pytest.mark.parametrize(
    ("overrides", "on_demand", "selector", "tolerations"),
    [
        (
            {},
            False,
            {"disk": "ssd", "pool": "spot"},
            [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        ),
        (
            {},
            True,
            {"disk": "ssd", "pool": "spot"},
            [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        ),
        (
            {"kube_on_demand_node_selector": {"pool": "on-demand"}, "kube_on_demand_tolerations": []},
            True,
            {"disk": "ssd", "pool": "on-demand"},
            None,
        ),
        (
            {"kube_on_demand_node_selector": {"pool": "on-demand"}, "kube_on_demand_tolerations": []},
            False,
            {"disk": "ssd", "pool": "spot"},
            [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        ),
        (
            {
                "kube_node_selector": {"disk": "hdd"},
                "kube_tolerations": [
                    {"key": "t", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": "60"}
                ],
            },
            False,
            {"disk": "hdd"},  # the cluster's value wins over the template's
            [{"key": "t", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}],
        ),
    ],
    ids=["spot", "on-demand-unconfigured", "on-demand", "on-demand-configured-not-asked", "cluster-wins"],
)
def test_placement_and_the_on_demand_switch(
    overrides: dict[str, Any],
    on_demand: bool,
    selector: dict[str, str],
    tolerations: list[dict[str, Any]] | None,
) -> None:
    pod = make_pod(context(), cluster(**overrides), 1, on_demand=on_demand)
    assert pod["spec"]["nodeSelector"] == selector
    assert pod["spec"].get("tolerations") == tolerations
    validate(pod)


def test_template_tolerations_are_kept_and_not_repeated() -> None:
    spot = {"key": "spot", "operator": "Exists", "effect": "NoSchedule"}
    gpu = {"key": "gpu", "operator": "Exists"}
    pod = make_pod(context({**TEMPLATE, "tolerations": [gpu, spot]}), cluster(), 1)
    assert pod["spec"]["tolerations"] == [gpu, spot]


def test_no_placement_fields_when_nobody_asks_for_any() -> None:
    pod = make_pod(context(NO_PORTS), Settings(kube_namespace="ci"), 1)
    assert "nodeSelector" not in pod["spec"]
    assert "tolerations" not in pod["spec"]


def test_the_clone_delivery_redoes_the_merge_in_the_pod_with_the_named_credentials() -> None:
    settings = cluster(kube_code_delivery="clone", kube_git_credentials_secret="git-token")
    pod = make_pod(context(target=MAIN), settings, 1)
    checkout = pod["spec"]["initContainers"][0]
    assert checkout["command"] == ["sh", "-c", CLONE_SCRIPT]
    assert checkout["env"] == env(
        PODCI_WORKSPACE="/workspace",
        SOURCE_URL="https://bitbucket.org/team/web.git",
        SOURCE_REF="feature/login",
        SOURCE_COMMIT=SRC,
        TARGET_URL="https://bitbucket.org/team/web.git",
        TARGET_REF="main",
        TARGET_COMMIT=TGT,
        GIT_CREDENTIALS="/var/run/podci/git/git-credentials",
    )
    assert checkout["volumeMounts"][1] == {
        "name": "podci-git-credentials",
        "mountPath": "/var/run/podci/git",
        "readOnly": True,
    }
    assert pod["spec"]["volumes"][-1] == {
        "name": "podci-git-credentials",
        "secret": {"secretName": "git-token", "defaultMode": 0o400},
    }
    validate(pod)


def test_a_template_working_dir_is_kept_and_a_missing_one_is_the_workspace() -> None:
    template = {"containers": [
        {"name": "app", "image": "alpine", "command": ["./run"], "workingDir": "/workspace/app"},
        {"name": "side", "image": "alpine", "command": ["sleep", "1"]},
    ]}  # fmt: skip
    pod = make_pod(context(template), cluster(), 1)
    assert [c.get("workingDir") for c in pod["spec"]["containers"]] == ["/workspace/app", "/workspace", None]


def test_the_cleanup_pod_mounts_the_volume_root_and_runs_on_the_workspace_node() -> None:
    settings = cluster(kube_static_volumes="hostpath", kube_allow_host_path=True)
    pod = make_cleanup_pod("web-7", settings, "node-2")
    assert pod["metadata"] == {
        "name": "web-7-cleanup",
        "namespace": "ci",
        "labels": {"team": "qa", MANAGED_BY: "podci", BUILD_LABEL: "web-7"},
    }
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["sh", "-c", CLEANUP_SCRIPT, "podci-cleanup", "/podci-volume/web-7"]
    assert container["volumeMounts"] == [{"name": WORKSPACE_VOLUME, "mountPath": "/podci-volume"}]
    assert pod["spec"]["volumes"] == [
        {"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": "web-7"}}
    ]
    assert pod["spec"]["nodeName"] == "node-2"
    assert (
        "nodeName"
        not in make_cleanup_pod("web-7", cluster(kube_static_volumes="nfs", kube_nfs_server="n"), "x")["spec"]
    )
    validate(pod)


def test_template_init_containers_run_after_the_checkout_with_workspace_and_env() -> None:
    migrate = {"name": "migrate", "image": "alpine", "command": ["sh", "-c", "ls $PODCI_WORKSPACE"]}
    template = {**TEMPLATE, "initContainers": [migrate]}
    pod = make_pod(context(template), cluster(), 1)
    inits = pod["spec"]["initContainers"]
    assert [c["name"] for c in inits] == [CHECKOUT_CONTAINER, "migrate"]
    assert inits[1]["volumeMounts"] == [WS]
    assert inits[1]["env"] == PODCI_ENV
    validate(pod)


def test_the_template_own_variable_wins_without_a_duplicate() -> None:
    template = {
        "containers": [
            {
                "name": "tests",
                "image": "alpine",
                "command": ["sleep", "1"],
                "env": env(PODCI_HOST="localhost"),
            }
        ]
    }
    pod = make_pod(context(template), cluster(), 1)
    names = [v["name"] for v in pod["spec"]["containers"][0]["env"]]
    assert names == ["PODCI_BUILD", "PODCI_WORKSPACE", "JOB_NAME", "BUILD_NUMBER", "PODCI_HOST"]
    assert pod["spec"]["containers"][0]["env"][-1] == {"name": "PODCI_HOST", "value": "localhost"}


def test_template_service_links_choice_is_kept_and_its_deprecated_account_alias_dropped() -> None:
    template = {**NO_PORTS, "enableServiceLinks": True, "serviceAccount": "builder"}
    pod = make_pod(context(template), cluster(), 1)
    assert pod["spec"]["enableServiceLinks"] is True
    assert "serviceAccount" not in pod["spec"]
    assert pod["spec"]["serviceAccountName"] == "builder"


def test_nfs_workspace_is_a_sub_path_of_the_export_in_every_container() -> None:
    settings = cluster(kube_static_volumes="nfs", kube_nfs_server="nfs.local")
    pod = make_pod(context(), settings, 1)
    mounts = [
        m
        for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]
        for m in c["volumeMounts"]
        if m["name"] == WORKSPACE_VOLUME
    ]
    assert len(mounts) == 4
    assert all(m == {**WS, "subPath": "web-7"} for m in mounts)
    validate(pod)


def test_user_values_reach_the_pod_literally() -> None:
    """Kubernetes expands `$(VAR)` in env values and args; a branch or path holding one must arrive as
    written. `local_env.expand` implements the same rule, so it stands in for the kubelet here."""
    source = Revision(clone_url="https://example.test/$(HOME)/r.git", ref="feat/$(PODCI_BUILD)", commit=SRC)
    config = FILE_CONFIG.model_copy(update={"volume": VolumeSpec(mount_path="/w$(HOME)")})
    settings = cluster(kube_code_delivery="clone")
    pod = make_pod(context(config=config, job="job-$x", source=source), settings, 1)
    checkout = pod["spec"]["initContainers"][0]
    values = {v["name"]: v["value"] for v in checkout["env"]}
    resolved: dict[str, str] = {}
    for name, value in values.items():  # the kubelet's order: each value sees the ones before it
        resolved[name] = expand(value, resolved)
    assert resolved["SOURCE_URL"] == "https://example.test/$(HOME)/r.git"
    assert resolved["SOURCE_REF"] == "feat/$(PODCI_BUILD)"
    assert resolved["PODCI_WORKSPACE"] == "/w$(HOME)"
    agent = pod["spec"]["containers"][-1]
    agent_env: dict[str, str] = {}
    for var in agent["env"]:
        agent_env[var["name"]] = expand(var["value"], agent_env)
    assert agent_env["JOB_NAME"] == "job-$x"
    assert [expand(arg, agent_env) for arg in agent["command"]] == [
        "sh",
        "-c",
        AGENT_SCRIPT,
        AGENT_CONTAINER,
        "/w$(HOME)",
    ]
    for script in (CHECKOUT_SCRIPT, CLONE_SCRIPT, CLEANUP_SCRIPT):  # no `$(...)` Kubernetes would expand
        assert expand(script, resolved) == script


# --- validation of everything, across contexts ----------------------------------------------------------

SETTINGS_VARIANTS: dict[str, dict[str, Any] | None] = {  # built inside the test, after the env is cleared
    "dynamic": {},
    "nfs": {"kube_static_volumes": "nfs", "kube_nfs_server": "10.0.0.5"},
    "hostpath": {"kube_static_volumes": "hostpath"},
    "defaults": None,
}


@pytest.mark.parametrize("variant", list(SETTINGS_VARIANTS))
@pytest.mark.parametrize("which", ["template", "example", "no-ports"])
def test_every_object_validates_against_the_schema(variant: str, which: str) -> None:
    overrides = SETTINGS_VARIANTS[variant]
    settings = Settings(kube_namespace="ci") if overrides is None else cluster(**overrides)
    if which == "example":
        config, template = example()
        ctx = context(template, config)
    else:
        ctx = context(TEMPLATE if which == "template" else NO_PORTS, target=MAIN)
    check_policy(ctx, settings)
    objects = [make_service(ctx, settings), make_pvc(ctx, settings), make_pv(ctx, settings)]
    objects += [make_pod(ctx, settings, n, on_demand=n > 1) for n in (1, 2, 3)]
    objects += [make_pod(ctx, settings.model_copy(update={"kube_code_delivery": "clone"}), 1)]
    objects += [make_cleanup_pod(ctx.name, settings, "fake-node-1")]
    for obj in objects:
        if obj is not None:
            validate(obj)
            assert obj["apiVersion"] == api_version_of(obj["kind"])
            assert obj["metadata"]["labels"][MANAGED_BY] == "podci"
            assert obj["metadata"]["labels"][BUILD_LABEL] == ctx.name


# --- policy -------------------------------------------------------------------------------------------


def with_container(**fields: Any) -> dict[str, Any]:
    return {"containers": [{"name": "app", "image": "alpine", "command": ["sleep", "1"], **fields}]}


def with_init(**fields: Any) -> dict[str, Any]:
    return {
        **with_container(),
        "initContainers": [{"name": "prep", "image": "alpine", "command": ["true"], **fields}],
    }


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            with_container(securityContext={"privileged": True}),
            "container `app` asks for `securityContext.privileged: true`",
        ),
        (
            with_init(securityContext={"privileged": True}),
            "init container `prep` asks for `securityContext.privileged",
        ),
        (
            with_container(securityContext={"allowPrivilegeEscalation": True}),
            "container `app` asks for `securityContext.allowPrivilegeEscalation: true`",
        ),
        (
            with_init(securityContext={"allowPrivilegeEscalation": True}),
            "init container `prep` asks for `securityContext.allowPrivilegeEscalation",
        ),
        (
            with_container(securityContext={"capabilities": {"add": ["SYS_ADMIN"]}}),
            "container `app` adds capabilities (SYS_ADMIN)",
        ),
        (
            with_init(securityContext={"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]}}),
            "init container `prep` adds capabilities (NET_BIND_SERVICE, CHOWN)",
        ),
        (
            with_container(ports=[{"containerPort": 80, "hostPort": 8080}]),
            "container `app` asks for `hostPort: 8080`",
        ),
        (
            with_init(ports=[{"containerPort": 80, "hostPort": 80}]),
            "init container `prep` asks for `hostPort: 80`",
        ),
        ({**with_container(), "hostNetwork": True}, "the pod asks for `hostNetwork: true`"),
        ({**with_container(), "hostPID": True}, "the pod asks for `hostPID: true`"),
        ({**with_container(), "hostIPC": True}, "the pod asks for `hostIPC: true`"),
        (
            {
                **with_container(),
                "volumes": [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}],
            },
            "volume `docker` is a hostPath volume",
        ),
        (
            {**with_container(), "serviceAccountName": "admin"},
            "service account `admin` in `serviceAccountName`",
        ),
        ({**with_container(), "serviceAccount": "admin"}, "service account `admin` in `serviceAccount`"),
        (
            {"containers": [{"name": AGENT_CONTAINER, "image": "a", "command": ["x"]}]},
            f"container `{AGENT_CONTAINER}` uses a name",
        ),
        (with_init(name=CHECKOUT_CONTAINER), f"init container `{CHECKOUT_CONTAINER}` uses a name"),
        (
            {**with_container(), "volumes": [{"name": WORKSPACE_VOLUME, "emptyDir": {}}]},
            f"volume `{WORKSPACE_VOLUME}` uses a name podci reserves",
        ),
        (
            with_container(volumeMounts=[{"name": WORKSPACE_VOLUME, "mountPath": "/all"}]),
            f"container `app` mounts `{WORKSPACE_VOLUME}` itself",
        ),
    ],
    ids=[
        "privileged",
        "privileged-init",
        "escalation",
        "escalation-init",
        "cap-add",
        "cap-add-init",
        "host-port",
        "host-port-init",
        "host-network",
        "host-pid",
        "host-ipc",
        "host-path",
        "service-account",
        "service-account-alias",
        "reserved-agent",
        "reserved-checkout",
        "reserved-volume",
        "workspace-mount",
    ],
)
def test_policy_refuses_with_a_sentence_naming_the_culprit(template: dict[str, Any], expected: str) -> None:
    before = copy.deepcopy(template)
    with pytest.raises(PermanentError) as caught:
        check_policy(context(template), cluster())
    message = str(caught.value)
    assert expected in message
    assert message.startswith("the pod template `.podci/pod.yaml` asks for what podci does not allow: ")
    assert message.endswith(
        "Remove these fields from the template and push again (the build's pods meet the Pod Security "
        "Standard `restricted`)."
    )
    assert template == before


@pytest.mark.parametrize(
    "template",
    [
        TEMPLATE,
        with_container(securityContext={"privileged": False, "allowPrivilegeEscalation": False}),
        with_container(securityContext={"capabilities": {"drop": ["ALL"], "add": []}}),
        with_container(ports=[{"containerPort": 80, "hostPort": 0}]),
        {**with_container(), "hostNetwork": False, "serviceAccountName": "builder"},
        {**with_container(), "volumes": [{"name": "tmp", "emptyDir": {}}]},
    ],
    ids=["template", "explicitly-off", "drop-only", "host-port-zero", "own-account", "empty-dir"],
)
def test_policy_allows_what_stays_inside_the_pod(template: dict[str, Any]) -> None:
    check_policy(context(template), cluster())


def test_policy_lists_every_problem_at_once() -> None:
    template = {
        **with_container(securityContext={"privileged": True}),
        "hostNetwork": True,
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
    }
    assert policy_problems(context(template), cluster()) == [
        "the pod asks for `hostNetwork: true`",
        "container `app` asks for `securityContext.privileged: true`",
        "volume `root` is a hostPath volume, which builds may not use",
    ]


@pytest.mark.parametrize("level", ["restricted", "baseline"])
def test_host_path_is_refused_at_every_level(level: str) -> None:
    """The standard forbids it from `baseline` up; a PersistentVolume of podci's own may be a hostPath."""
    template = {**with_container(), "volumes": [{"name": "data", "hostPath": {"path": "/data"}}]}
    with pytest.raises(PermanentError, match="volume `data` is a hostPath volume"):
        check_policy(context(template), cluster(pod_security=level))


@pytest.mark.parametrize("remote_only", [True, False])
def test_a_webhook_build_s_checkout_fetches_over_the_network_only(remote_only: bool) -> None:
    """When the pod clones (PODCI_KUBE_CODE_DELIVERY=clone), as the worker's own fetch: git in the pod
    refuses paths, `file://` and `ext::`, and redirects."""
    from dataclasses import replace

    pod = make_pod(replace(context(), remote_only=remote_only), cluster(kube_code_delivery="clone"), 1)
    env = {v["name"]: v["value"] for v in pod["spec"]["initContainers"][0]["env"]}
    wanted = {
        "GIT_ALLOW_PROTOCOL": "http:https:ssh",
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "protocol.file.allow",
        "GIT_CONFIG_VALUE_0": "never",
        "GIT_CONFIG_KEY_1": "http.followRedirects",
        "GIT_CONFIG_VALUE_1": "false",
    }
    assert ({k: env.get(k) for k in wanted} == wanted) is remote_only
    assert any(k in env for k in wanted) is remote_only


def test_a_secret_and_a_priority_class_pass_when_the_settings_name_them() -> None:
    template = {
        **with_container(),
        "priorityClassName": "ci-low",
        "volumes": [{"name": "s", "secret": {"secretName": "npm-token"}}],
    }
    assert policy_problems(context(template), cluster()) != []
    assert (
        policy_problems(
            context(template), cluster(kube_allowed_secrets="npm-token", kube_priority_classes="ci-low")
        )
        == []
    )
