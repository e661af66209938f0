"""The fake's scheduler: which node a pod fits, as the real filters decide it, and what it says when
none does. podci's move off spot capacity is only tested end to end if this is right."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from testkit.fake_k8s import FakeCluster, core_v1, serve
from testkit.fake_k8s.nodes import Node, Taint, fitting, tolerates, unschedulable_message
from tests.test_fake_k8s import NS, QUICK, condition, is_ready, pod, wait_pod

SPOT = Node("spot", {"pool": "spot"}, (Taint.parse("spot=true:NoSchedule"),))
ON_DEMAND = Node("on-demand", {"pool": "on-demand"})
GPU = Node("gpu", {"pool": "gpu"}, (Taint.parse("gpu:NoExecute"),))
SOFT = Node("soft", {"pool": "soft"}, (Taint.parse("busy=yes:PreferNoSchedule"),))
NODES = (SPOT, ON_DEMAND, GPU, SOFT)
SPOT_TOLERATION = {"key": "spot", "operator": "Exists", "effect": "NoSchedule"}
ALL_BUT_GPU = ["spot", "on-demand", "soft"]
UNTAINTED = ["on-demand", "soft"]  # soft's PreferNoSchedule taint keeps no pod off
UNSCHEDULABLE_ON_SPOT = (
    "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
    "1 node(s) had untolerated taint {spot: true}. "
    "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
)


@pytest.mark.parametrize(
    ("spec", "fits"),
    [
        ({}, UNTAINTED),
        ({"nodeSelector": {"pool": "spot"}, "tolerations": [SPOT_TOLERATION]}, ["spot"]),
        ({"nodeSelector": {"pool": "spot"}}, []),
        ({"nodeSelector": {"pool": "on-demand"}, "tolerations": []}, ["on-demand"]),
        ({"nodeSelector": {"pool": "on-demand", "disk": "ssd"}}, []),
        ({"nodeSelector": {"kubernetes.io/hostname": "soft"}}, ["soft"]),
        ({"tolerations": [SPOT_TOLERATION]}, ALL_BUT_GPU),
        ({"tolerations": [{"key": "spot", "operator": "Equal", "value": "true"}]}, ALL_BUT_GPU),
        ({"tolerations": [{"key": "spot", "value": "true", "effect": "NoSchedule"}]}, ALL_BUT_GPU),
        ({"tolerations": [{"key": "spot", "operator": "Equal", "value": "false"}]}, UNTAINTED),
        ({"tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoExecute"}]}, UNTAINTED),
        ({"tolerations": [{"key": "gpu", "operator": "Equal"}]}, ["on-demand", "gpu", "soft"]),
        ({"tolerations": [{"operator": "Exists"}]}, ["spot", "on-demand", "gpu", "soft"]),
        ({"tolerations": [{"operator": "Exists", "effect": "NoSchedule"}]}, ALL_BUT_GPU),
        ({"tolerations": [{"key": "spot", "operator": "Matches"}]}, UNTAINTED),
    ],
    ids=["plain", "spot", "spot-untolerated", "on-demand", "no-such-label", "hostname", "tolerate-spot",
         "equal", "no-operator", "wrong-value", "wrong-effect", "empty-value", "tolerate-all",
         "tolerate-all-noschedule", "unknown-operator"],
)  # fmt: skip
def test_which_nodes_a_pod_fits(spec: dict[str, Any], fits: list[str]) -> None:
    assert [node.name for node in fitting(spec, NODES)] == fits


@pytest.mark.parametrize(
    ("toleration", "taint", "tolerated"),
    [
        ({"key": "spot", "operator": "Exists"}, "spot=true:NoSchedule", True),
        ({"key": "spot", "operator": "Exists"}, "spot:NoExecute", True),
        ({"key": "spot", "operator": "Equal", "value": "true"}, "spot:NoSchedule", False),
        ({"key": "spot", "operator": "Equal"}, "spot:NoSchedule", True),
        ({"key": "other", "operator": "Exists"}, "spot=true:NoSchedule", False),
        ({"operator": "Exists", "effect": "NoExecute"}, "spot=true:NoSchedule", False),
        ({"operator": "Exists"}, "anything=at-all:NoExecute", True),
    ],
)
def test_toleration_matching(toleration: dict[str, str], taint: str, tolerated: bool) -> None:
    assert tolerates(toleration, Taint.parse(taint)) is tolerated


def test_the_scheduler_message_counts_each_node_s_first_refusal() -> None:
    spot_only = {"nodeSelector": {"pool": "spot"}}
    assert unschedulable_message(spot_only, (SPOT, ON_DEMAND)) == UNSCHEDULABLE_ON_SPOT
    assert unschedulable_message({}, ()) == "no nodes available to schedule pods"


@pytest.mark.parametrize("text", ["spot", "=true:NoSchedule", "spot=true:Sometimes"])
def test_a_taint_is_written_as_kubectl_writes_it(text: str) -> None:
    with pytest.raises(ValueError, match="not a taint"):
        Taint.parse(text)


def placed(name: str, selector: dict[str, str] | None, tolerations: list[dict[str, str]]) -> client.V1Pod:
    made = pod(name)
    made.spec.node_selector = selector
    made.spec.tolerations = [client.V1Toleration(**t) for t in tolerations] or None
    return made


def unscheduled(p: client.V1Pod) -> bool:
    scheduled = condition(p, "PodScheduled")
    return scheduled is not None and scheduled.reason == "Unschedulable"


def test_a_pod_no_node_fits_stays_pending_and_a_lost_node_takes_no_more_pods() -> None:
    with FakeCluster(settings=QUICK, nodes=(SPOT, ON_DEMAND), replace_lost_nodes=False) as cluster, \
            serve(cluster) as url:  # fmt: skip
        v1 = core_v1(url)
        v1.create_namespaced_pod(NS, placed("s-1", {"pool": "spot"}, []))
        stuck = wait_pod(v1, "s-1", unscheduled)
        assert stuck.status.phase == "Pending" and stuck.spec.node_name is None
        assert condition(stuck, "PodScheduled").status == "False"
        assert condition(stuck, "PodScheduled").message == UNSCHEDULABLE_ON_SPOT
        events = v1.list_namespaced_event(NS, field_selector="involvedObject.name=s-1").items
        assert [(e.reason, e.message) for e in events] == [("FailedScheduling", UNSCHEDULABLE_ON_SPOT)]

        v1.create_namespaced_pod(NS, placed("s-2", {"pool": "spot"}, [SPOT_TOLERATION]))
        assert wait_pod(v1, "s-2", is_ready).spec.node_name == "spot"
        cluster.lose_node("s-2")
        assert [node.name for node in cluster.nodes] == ["on-demand"]
        v1.create_namespaced_pod(NS, placed("s-3", {"pool": "spot"}, [SPOT_TOLERATION]))
        assert condition(wait_pod(v1, "s-3", unscheduled), "PodScheduled").message == (
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        )
        v1.create_namespaced_pod(NS, placed("s-4", {"pool": "on-demand"}, []))
        assert wait_pod(v1, "s-4", is_ready).spec.node_name == "on-demand"
        assert cluster.self_check() == []


def test_a_lost_node_is_replaced_by_default_and_plain_nodes_take_pods_in_turn() -> None:
    with FakeCluster(settings=QUICK) as cluster, serve(cluster) as url:
        v1 = core_v1(url)
        for n in range(1, 5):
            v1.create_namespaced_pod(NS, pod(f"r-{n}"))
        nodes = [wait_pod(v1, f"r-{n}", is_ready).spec.node_name for n in range(1, 5)]
        assert nodes == ["fake-node-1", "fake-node-2", "fake-node-3", "fake-node-1"]
        cluster.lose_node("r-2")
        assert [node.name for node in cluster.nodes] == ["fake-node-1", "fake-node-3", "fake-node-4"]
        assert cluster.nodes[-1].labels == {"kubernetes.io/hostname": "fake-node-4"}
        v1.create_namespaced_pod(NS, pod("r-5"))
        assert wait_pod(v1, "r-5", is_ready).spec.node_name != "fake-node-2"
