"""The fake API server's Pod Security Admission (testkit/fake_k8s/admission.py) against the published
standard, control by control: what a namespace enforcing `restricted` or `baseline` refuses, with
upstream's reasons, and that it is applied through the real API path (403 to the official client)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from testkit.fake_k8s import FakeCluster, core_v1, serve
from testkit.fake_k8s.admission import ENFORCE, forbidden, violations

# A pod that meets `restricted`: the reference the table changes one field of at a time.
GOOD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "namespace": "ns"},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "app", "image": "busybox",
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }],
    },
}  # fmt: skip


def changed(pod_fields: dict[str, Any] | None = None, **container: Any) -> dict[str, Any]:
    pod = copy.deepcopy(GOOD)
    pod["spec"].update(pod_fields or {})
    app = pod["spec"]["containers"][0]
    for key, value in container.items():
        if key == "securityContext":
            app["securityContext"] = {**app["securityContext"], **value}
        else:
            app[key] = value
    return pod


# (the change, the level that refuses it first, upstream's reason, a part of its detail)
TABLE = [
    (changed({"hostNetwork": True}), "baseline", "host namespaces", "hostNetwork=true"),
    (changed({"hostPID": True, "hostIPC": True}), "baseline", "host namespaces",
     "hostPID=true, hostIPC=true"),
    (changed(securityContext={"privileged": True}), "baseline", "privileged",
     'container "app" must not set securityContext.privileged=true'),
    (changed(securityContext={"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}), "baseline",
     "non-default capabilities", 'container "app" must not include "SYS_ADMIN"'),
    (changed({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}), "baseline", "hostPath volumes",
     'volume "root"'),
    (changed(ports=[{"containerPort": 80, "hostPort": 8080}]), "baseline", "hostPort",
     'container "app" uses hostPort 8080'),
    (changed(securityContext={"appArmorProfile": {"type": "Unconfined"}}), "baseline",
     "forbidden AppArmor profile", 'must not set AppArmor profile type to "Unconfined"'),
    (changed(securityContext={"seLinuxOptions": {"type": "spc_t"}}), "baseline", "seLinuxOptions",
     'type "spc_t"'),
    (changed(securityContext={"procMount": "Unmasked"}), "baseline", "procMount",
     'must not set securityContext.procMount to "Unmasked"'),
    (changed({"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "Unconfined"}}}),
     "baseline", "seccompProfile", 'pod must not set securityContext.seccompProfile.type to "Unconfined"'),
    (changed({"securityContext": {**GOOD["spec"]["securityContext"], "sysctls": [{"name": "kernel.msgmax",
                                                                                  "value": "1"}]}}),
     "baseline", "forbidden sysctls", "kernel.msgmax"),
    (changed(securityContext={"windowsOptions": {"hostProcess": True}}), "baseline", "hostProcess",
     "windowsOptions.hostProcess=true"),
    (changed({"volumes": [{"name": "share", "nfs": {"server": "nfs", "path": "/"}}]}), "restricted",
     "restricted volume types", 'volume "share" uses restricted volume type "nfs"'),
    (changed(securityContext={"allowPrivilegeEscalation": True}), "restricted",
     "allowPrivilegeEscalation != false",
     'container "app" must set securityContext.allowPrivilegeEscalation=false'),
    (changed({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}), "restricted",
     "runAsNonRoot != true", 'pod or container "app" must set securityContext.runAsNonRoot=true'),
    (changed(securityContext={"runAsUser": 0}), "restricted", "runAsUser=0",
     'container "app" must not set runAsUser=0'),
    (changed({"securityContext": {"runAsNonRoot": True}}), "restricted", "seccompProfile",
     'pod or container "app" must set securityContext.seccompProfile.type to "RuntimeDefault" or '
     '"Localhost"'),
    (changed(securityContext={"capabilities": {}}), "restricted", "unrestricted capabilities",
     'container "app" must set securityContext.capabilities.drop=["ALL"]'),
    (changed(securityContext={"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}), "restricted",
     "unrestricted capabilities", 'container "app" must not include "CHOWN"'),
]  # fmt: skip


@pytest.mark.parametrize(("pod", "first", "reason", "detail"), TABLE, ids=[row[2] for row in TABLE])
def test_each_control_of_the_standard(pod: dict[str, Any], first: str, reason: str, detail: str) -> None:
    """Refused from the level that first forbids it on (restricted overrides two baseline checks with its
    own: `unrestricted capabilities`, `restricted volume types`)."""
    found = violations(pod, first)
    assert any(r == reason and detail in d for r, d in found), found
    assert violations(pod, "restricted") != []
    assert bool(violations(pod, "baseline")) is (first == "baseline")
    assert violations(pod, "privileged") == []


def test_a_compliant_pod_is_admitted_everywhere_and_root_is_fine_for_baseline() -> None:
    assert violations(GOOD, "restricted") == []
    root = changed(
        {"securityContext": {}}, securityContext={"runAsUser": 0, "allowPrivilegeEscalation": True}
    )
    assert violations(root, "baseline") == []
    assert {reason for reason, _ in violations(root, "restricted")} == {
        "allowPrivilegeEscalation != false", "runAsNonRoot != true", "runAsUser=0", "seccompProfile",
    }  # fmt: skip


def test_the_message_lists_every_control_in_upstream_order() -> None:
    bare = {"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "app", "image": "busybox"}]}}
    message = forbidden("bare", "restricted", "latest", violations(bare, "restricted"))
    assert message == (
        'pods "bare" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != '
        'false (container "app" must set securityContext.allowPrivilegeEscalation=false), unrestricted '
        'capabilities (container "app" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot '
        '!= true (pod or container "app" must set securityContext.runAsNonRoot=true), seccompProfile (pod '
        'or container "app" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    )


def test_the_api_server_refuses_with_403_in_an_enforcing_namespace_only() -> None:
    from kubernetes.client.exceptions import ApiException

    labels = {"strict": {ENFORCE: "restricted"}, "lax": {ENFORCE: "baseline"}}
    with FakeCluster(namespaces=("strict", "lax", "open"), namespace_labels=labels) as cluster, \
            serve(cluster) as url:  # fmt: skip
        v1 = core_v1(url)
        bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]}}  # fmt: skip
        with pytest.raises(ApiException) as refused:
            v1.create_namespaced_pod("strict", bare)
        assert refused.value.status == 403
        assert 'violates PodSecurity \\"restricted:latest\\"' in refused.value.body
        assert cluster.get("pods", "bare", "strict") is None
        v1.create_namespaced_pod("lax", bare)
        privileged = copy.deepcopy(bare)
        privileged["metadata"]["name"] = "privileged"
        privileged["spec"]["containers"][0]["securityContext"] = {"privileged": True}
        with pytest.raises(ApiException, match="403"):
            v1.create_namespaced_pod("lax", privileged)
        v1.create_namespaced_pod("open", privileged)
        good = {**GOOD, "metadata": {"name": "good"}}
        v1.create_namespaced_pod("strict", good)
        assert cluster.get("pods", "good", "strict") is not None
