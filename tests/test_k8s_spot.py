"""Spot, end to end: a build whose spot node is lost is relaunched on on-demand nodes and passes.

Real parts: a real Redis, a real worker, the official client and the fake API server, whose scheduler
places a pod only on a node its nodeSelector and tolerations allow. The spot node is not replaced once
lost, so a relaunch that still asked for spot capacity would stay Pending and the build would end in
`error`: the test fails unless podci really switched to the on-demand placement.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.record import BuildState
from schemas.settings import Settings
from testkit.fake_k8s import FakeCluster
from testkit.fake_k8s.nodes import Node, Taint
from testkit.gitrepo import Repo
from tests.helpers import wait_for, wait_until
from tests.test_k8s_backend import NAMESPACE, Kube, leftovers, new_build, running, start
from workers.backends.kubernetes.names import START_TESTS_SCRIPT

SPOT_TOLERATION = {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
SPOT_NODE = Node("spot-1", {"pool": "spot"}, (Taint.parse("spot=true:NoSchedule"),))
ON_DEMAND_NODE = Node("on-demand-1", {"pool": "on-demand"})
PLACEMENT = {
    "PODCI_KUBE_NODE_SELECTOR": json.dumps({"pool": "spot"}),
    "PODCI_KUBE_TOLERATIONS": json.dumps([SPOT_TOLERATION]),
    "PODCI_KUBE_ON_DEMAND_NODE_SELECTOR": json.dumps({"pool": "on-demand"}),
    "PODCI_KUBE_ON_DEMAND_TOLERATIONS": "[]",
}
KINDS = ("pods", "services", "persistentvolumeclaims", "persistentvolumes")


@pytest.fixture  # a cluster of its own per test: the spot node lost in one is not replaced
def spot(
    settings: Settings, worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kube]:
    cluster = FakeCluster(nodes=(SPOT_NODE, ON_DEMAND_NODE), replace_lost_nodes=False)
    with running(cluster, settings, worker_env, tmp_path_factory.mktemp("spot"), db=10, **PLACEMENT) as kube:
        yield kube


def sent(kube: Kube, pod: str) -> dict[str, Any]:
    """The pod as podci sent it (what the fake validated), before the server's defaults."""
    return next(o for o in kube.cluster.validated if o["kind"] == "Pod" and o["metadata"]["name"] == pod)


def scheduled_on(kube: Kube, pod: str) -> list[str]:
    """Where the scheduler put the pod, from its `Scheduled` events (they outlive the pod)."""
    events = kube.cluster.objects("events", NAMESPACE)
    return [e["message"].rsplit(" to ", 1)[1] for e in events
            if e["involvedObject"]["name"] == pod and e["reason"] == "Scheduled"]  # fmt: skip


def started_its_tests(kube: Kube, pod: str) -> bool:
    return any(e.pod == pod and START_TESTS_SCRIPT in e.command for e in kube.cluster.execs)


def a_repo(path: Path) -> Repo:
    """The example, waiting for a node for 20 s at most: a relaunch left Pending ends the build soon."""
    config = (Path(__file__).parent.parent / "examples/webapp/.podci.yml").read_text()
    return Repo(path, {".podci.yml": config.replace("timeouts:\n", "timeouts:\n  unscheduled: 20\n")})


@pytest.mark.parametrize("gone_after", [5, 0], ids=["terminating-a-while", "deleted-at-once"])
def test_a_build_whose_spot_node_is_lost_passes_on_demand(
    spot: Kube, tmp_path: Path, gone_after: float
) -> None:
    # The first pod's tests outlast its node. A lost node's kubelet never confirms a deletion: the pod
    # stays Terminating until the pod GC removes it, a while or at once. Deleted at once, only the
    # DELETED event's last state tells the watch that the node went (and the relaunch must avoid spot).
    name = new_build(spot, f"k8s-spot-{int(gone_after)}", test_duration=3600, terminate_delay=gone_after)
    build = start(spot, name, repo=a_repo(tmp_path / "repo"))
    wait_until(lambda: started_its_tests(spot, name), timeout=120)
    assert scheduled_on(spot, name) == ["spot-1"]
    assert sent(spot, name)["spec"]["nodeSelector"] == {"pool": "spot"}
    assert sent(spot, name)["spec"]["tolerations"] == [SPOT_TOLERATION]

    spot.cluster.configure(name, test_duration=0.3)  # before the relaunch exists: its tests pass at once
    spot.cluster.lose_node(name)
    spot.cluster.configure(name, terminate_delay=0.1)  # the relaunch is deleted at teardown, as usual
    record = wait_for(spot.store, build.id, timeout=180)

    assert record.state is BuildState.succeeded, record.reason
    assert record.attempts == 2
    relaunched = f"{name}-a2"
    assert [p.pod for p in record.pods] == [name, relaunched]
    assert "DeletionByTaintManager" in record.pods[0].ended
    assert sent(spot, relaunched)["spec"]["nodeSelector"] == {"pool": "on-demand"}
    assert "tolerations" not in sent(spot, relaunched)["spec"]
    assert scheduled_on(spot, relaunched) == ["on-demand-1"]
    assert [node.name for node in spot.cluster.nodes] == ["on-demand-1"]
    assert leftovers(spot, name) == []
    assert [o["metadata"]["name"] for kind in KINDS for o in spot.cluster.objects(kind)] == []
    assert spot.cluster.self_check() == []
