"""The fake's nodes and the scheduler's filters that podci's placement settings rely on.

Why: podci moves a build off spot capacity after a node loss by changing the pod's nodeSelector and
tolerations. That is only tested if the fake, like the real scheduler, refuses a node whose labels
the selector does not match or whose NoSchedule/NoExecute taint the pod does not tolerate, and says
so in the scheduler's own words. Pure functions here; lifecycle.py applies them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

HOSTNAME_LABEL = "kubernetes.io/hostname"
# PreferNoSchedule only steers the scoring; these two keep a pod off the node.
_REPELLING = ("NoSchedule", "NoExecute")
_SELECTOR_MISMATCH = "node(s) didn't match Pod's node affinity/selector"


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str = ""

    @classmethod
    def parse(cls, text: str) -> Taint:
        """`key=value:Effect` or `key:Effect`, as `kubectl taint` writes them."""
        pair, _, effect = text.rpartition(":")
        key, _, value = pair.partition("=")
        if not key or effect not in (*_REPELLING, "PreferNoSchedule"):
            raise ValueError(f"not a taint: {text!r} (key[=value]:NoSchedule|PreferNoSchedule|NoExecute)")
        return cls(key, effect, value)


@dataclass(frozen=True)
class Node:
    """A node as the scheduler sees it; `labels` gets `kubernetes.io/hostname`, as a kubelet sets it."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", {HOSTNAME_LABEL: self.name, **self.labels})

    def renamed(self, name: str) -> Node:
        """The node a node group brings up in place of this one: same labels and taints."""
        labels = {k: v for k, v in self.labels.items() if k != HOSTNAME_LABEL}
        return Node(name, labels, self.taints)


def as_node(node: str | Node) -> Node:
    return node if isinstance(node, Node) else Node(node)


def tolerates(toleration: Obj, taint: Taint) -> bool:
    """Kubernetes' ToleratesTaint: an empty effect matches every effect, an empty key every key;
    `Exists` ignores the value, `Equal` (or no operator) must match it."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.effect:
        return False
    key = toleration.get("key") or ""
    if key and key != taint.key:
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == taint.value


def why_not(spec: Obj, node: Node) -> str | None:
    """Why the pod does not fit the node, in the filter's words; None when it fits. Taints come
    first, as the TaintToleration filter runs before NodeAffinity and the first refusal is reported."""
    tolerations = [t for t in spec.get("tolerations") or [] if isinstance(t, dict)]
    for taint in node.taints:
        if taint.effect in _REPELLING and not any(tolerates(t, taint) for t in tolerations):
            return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"
    selector = spec.get("nodeSelector") or {}
    if any(node.labels.get(key) != value for key, value in selector.items()):
        return _SELECTOR_MISMATCH
    return None


def fitting(spec: Obj, nodes: Sequence[Node]) -> list[Node]:
    return [node for node in nodes if why_not(spec, node) is None]


def unschedulable_message(spec: Obj, nodes: Sequence[Node]) -> str:
    """The FailedScheduling message of a pod no node fits: each reason counted, sorted, and the
    preemption verdict (these filters' refusals cannot be resolved by preempting anything)."""
    if not nodes:
        return "no nodes available to schedule pods"
    reasons = Counter(why_not(spec, node) or "" for node in nodes)
    counted = sorted(f"{count} {reason}" for reason, count in reasons.items() if reason)
    total = len(nodes)
    return (
        f"0/{total} nodes are available: {', '.join(counted)}. "
        f"preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
    )


def replacement_name(lost: str, taken: set[str]) -> str:
    """A fresh name in the lost node's series (`fake-node-1` -> `fake-node-4` when 1-3 exist)."""
    stem = lost.rstrip("0123456789") or f"{lost}-"
    number = 1
    while f"{stem}{number}" in taken:
        number += 1
    return f"{stem}{number}"
