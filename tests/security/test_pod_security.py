"""Pods meet the Pod Security Standards (issue 13, finding 6): the template policy refuses what let
build code out of its pod, every container gets requests and limits, and every pod podci builds is
admitted where the namespace enforces `restricted` (the fake API server's admission, written from the
published standard)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.repo_config import PodSpec, RepoConfig
from schemas.request import Revision
from schemas.settings import Settings
from testkit.fake_k8s import FakeCluster, core_v1, serve
from testkit.fake_k8s.admission import ENFORCE, violations
from testkit.gitrepo import EXAMPLE
from workers.backends.base import BuildContext
from workers.backends.kubernetes.objects import make_pod
from workers.backends.kubernetes.policy import policy_problems
from workers.repo_config import load

NS = "podci-builds"  # resolved from the kubeconfig or settings before objects are built
CREATED = datetime(2026, 1, 2, tzinfo=UTC)
APP = {"name": "app", "image": "alpine", "command": ["sleep", "1"]}


def context(spec: dict[str, Any], config: RepoConfig | None = None, *, trusted: bool = True) -> BuildContext:
    source = Revision(clone_url="https://bitbucket.org/team/app.git", ref="topic", commit="a" * 40)
    tests = {"test": {"container": spec["containers"][0]["name"], "command": "true"}}
    untrusted = {} if trusted else {"trusted": False}  # an untrusted pull request's build
    return BuildContext(
        build_id="b-1", name="app-1", job="app", number=1, merge_commit="c" * 40, checkout_dir=EXAMPLE,
        log_dir=EXAMPLE, config=config or RepoConfig.model_validate(tests), pod=PodSpec.model_validate(spec),
        source=source, target=None, created=CREATED, **untrusted,
    )  # fmt: skip


def pod_with(**fields: Any) -> dict[str, Any]:
    return {"containers": [copy.deepcopy(APP)], **fields}


def app_with(**fields: Any) -> dict[str, Any]:
    return {"containers": [{**copy.deepcopy(APP), **fields}]}


LET_THROUGH = {
    "nodeName": pod_with(nodeName="control-plane-1"),
    "tolerations Exists": pod_with(tolerations=[{"operator": "Exists"}]),
    "priorityClassName": pod_with(priorityClassName="system-node-critical"),
    "seccomp Unconfined (pod)": pod_with(securityContext={"seccompProfile": {"type": "Unconfined"}}),
    "seccomp Unconfined": app_with(securityContext={"seccompProfile": {"type": "Unconfined"}}),
    "AppArmor Unconfined": app_with(securityContext={"appArmorProfile": {"type": "Unconfined"}}),
    "procMount Unmasked": app_with(securityContext={"procMount": "Unmasked"}),
    "SELinux spc_t": app_with(securityContext={"seLinuxOptions": {"type": "spc_t"}}),
    "runAsUser 0": app_with(securityContext={"runAsUser": 0}),
    "runAsUser 0 (pod)": pod_with(securityContext={"runAsUser": 0}),
    "sysctls": pod_with(securityContext={"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "0"}]}),
    "shareProcessNamespace": pod_with(shareProcessNamespace=True),
    "projected service account token": pod_with(volumes=[{"name": "t", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token"}}]}}]),
    "secret volume": pod_with(volumes=[{"name": "s", "secret": {"secretName": "podci-secrets"}}]),
    "secretKeyRef": app_with(env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "podci-secrets",
                                                                            "key": "PODCI_JENKINS_TOKEN"}}}]),
    "another build's claim": pod_with(volumes=[{"name": "w",
                                                "persistentVolumeClaim": {"claimName": "app-2"}}]),
    "raw nfs": pod_with(volumes=[{"name": "n", "nfs": {"server": "10.0.0.5", "path": "/exports"}}]),
    "automountServiceAccountToken": pod_with(automountServiceAccountToken=True),
    "probe at another host": app_with(readinessProbe={"httpGet": {"host": "169.254.169.254", "port": 80}}),
}  # fmt: skip


ROOT_IS_BASELINE = {"runAsUser 0", "runAsUser 0 (pod)"}  # `baseline` is for trusted builds that need root


@pytest.mark.parametrize("name", list(LET_THROUGH))
def test_the_policy_refuses_what_let_build_code_out_of_its_pod(name: str) -> None:
    """Finding: the pod policy let all of these through (at the default level, and for an untrusted
    pull request at any level); `baseline` refuses them too, root aside."""
    template = LET_THROUGH[name]
    assert policy_problems(context(template), Settings(kube_namespace=NS)) != []
    assert (
        policy_problems(
            context(template, trusted=False), Settings(kube_namespace=NS, pod_security="baseline")
        )
        != []
    )
    baseline = policy_problems(context(template), Settings(kube_namespace=NS, pod_security="baseline"))
    assert (baseline == []) is (name in ROOT_IS_BASELINE)


def example() -> tuple[RepoConfig, dict[str, Any]]:
    def read(path: str) -> str | None:
        return (EXAMPLE / path).read_text() if (EXAMPLE / path).is_file() else None

    loaded = load((EXAMPLE / ".podci.yml").read_text(), read)
    return loaded.config, loaded.pod_spec.as_written()


CONTEXTS = ("example", "plain", "init", "untrusted")
VARIANTS = ("default", "static nfs", "baseline untrusted")  # an untrusted build: restricted anyway
PODS = [f"{name}/{variant}/{attempt}" for name in CONTEXTS for variant in VARIANTS for attempt in (1, 2)
        if name == "untrusted" or not variant.startswith("baseline")]  # fmt: skip


def pod_podci_builds(which: str) -> dict[str, Any]:
    """One of the pods podci makes: a template (the example, a plain one, one with an init container, an
    untrusted pull request's) under some settings, first attempt or relaunch."""
    name, variant, attempt = which.split("/")
    config, spec = example()
    plain = {"containers": [{"name": "tests", "image": "alpine", "command": ["sleep", "1"]}]}
    with_init = {**plain, "initContainers": [{"name": "prep", "image": "alpine", "command": ["true"]}]}
    ctx = {
        "example": lambda: context(spec, config),
        "plain": lambda: context(plain),
        "init": lambda: context(with_init),
        "untrusted": lambda: context(plain, trusted=False),
    }[name]()
    settings = {
        "default": Settings(kube_namespace=NS),
        "static nfs": Settings(kube_namespace=NS, kube_static_volumes="nfs", kube_nfs_server="10.0.0.5"),
        "baseline untrusted": Settings(kube_namespace=NS, pod_security="baseline"),
    }[variant]
    return make_pod(ctx, settings, int(attempt))


@pytest.mark.parametrize("name", PODS)
def test_every_pod_podci_builds_meets_restricted_with_requests_and_limits(name: str) -> None:
    """Finding: in a `restricted` namespace podci could not run at all (its own containers were refused),
    and no container had resource limits."""
    pod = pod_podci_builds(name)
    assert violations(pod, "restricted") == []
    for container in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(
            resources["limits"]
        )


def test_a_trusted_build_at_baseline_is_admitted_where_baseline_is_enforced() -> None:
    root = {"containers": [{"name": "db", "image": "postgres:16", "command": ["postgres"],
                            "securityContext": {"runAsUser": 0}}]}  # fmt: skip
    trusted = make_pod(context(root), Settings(kube_namespace=NS, pod_security="baseline"), 1)
    assert violations(trusted, "baseline") == [] and violations(trusted, "restricted") != []
    assert (
        policy_problems(context(root, trusted=False), Settings(kube_namespace=NS, pod_security="baseline"))
        != []
    )


def test_the_api_server_admits_podci_s_pods_in_a_restricted_namespace() -> None:
    labels = {"podci-builds": {ENFORCE: "restricted"}}
    with FakeCluster(namespaces=("podci-builds",), namespace_labels=labels) as cluster, serve(cluster) as url:
        v1 = core_v1(url)
        for name in PODS:
            v1.create_namespaced_pod("podci-builds", replace_name(pod_podci_builds(name), name))
        assert len(cluster.objects("pods", "podci-builds")) == len(PODS)
        assert [message for _, message in cluster.refused] == []


def replace_name(pod: dict[str, Any], name: str) -> dict[str, Any]:
    body = copy.deepcopy(pod)
    body["metadata"]["name"] = name.replace("/", "-").replace(" ", "-").replace(",", "").lower()
    return body
