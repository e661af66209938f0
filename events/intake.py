"""What the receiver does with a decision: start a build exactly once, stop superseded ones, cancel.

Kept apart from HTTP so `podci serve` and tests share it. Nothing here touches git or a cluster:
a build is a record and one queued message; the workers do the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from dispatch.send import notify, wake
from dispatch.submit import submit
from schemas.event import Action, Decision
from schemas.request import BuildRequest
from schemas.settings import Settings
from store.builds import BuildStore, DuplicateBuild

log = logging.getLogger("podci.intake")
# The providers whose builds get a status at once: their reporters are named after them.
STATUS_REPORTERS = ("bitbucket-cloud", "bitbucket-server")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


def dedupe_keys(decision: Decision, request: BuildRequest) -> list[str]:
    """A redelivery has the same delivery id; a second event about the same pull request head (say
    `pullrequest:updated` right after `created`) has the same source commit and target branch."""
    keys = []
    if decision.delivery_id:
        keys.append(f"delivery:{decision.provider}:{decision.delivery_id}")
    if request.pr_key and request.source.commit:
        target = request.target.ref if request.target else ""
        keys.append(f"head:{request.pr_key}:{request.source.commit}:{target}")
    return keys


class Intake:
    def __init__(self, settings: Settings, store: BuildStore, app: Celery) -> None:
        self.settings, self.store, self.app = settings, store, app

    def handle(self, decision: Decision) -> Reply:
        reply = self._act(decision)
        log.info(
            "provider=%s event=%s delivery=%s action=%s build=%s",
            decision.provider, decision.event, decision.delivery_id, reply.body.get("action"),
            reply.body.get("build_id", "-"),
        )  # fmt: skip
        return reply

    def _act(self, decision: Decision) -> Reply:
        if decision.action is Action.build and decision.request is not None:
            return self._build(decision, decision.request)
        if decision.action is Action.cancel and decision.repo and decision.pull_request:
            stopped = self.stop_pull_request(f"{decision.repo}#{decision.pull_request}", decision.reason)
            reason = f"{decision.reason}: stopping {len(stopped)} running build(s)"
            return Reply(200, {"action": "cancel", "reason": reason, "builds": stopped})
        return Reply(200, {"action": decision.action.value, "reason": decision.reason})

    def _build(self, decision: Decision, request: BuildRequest) -> Reply:
        try:
            record = submit(self.app, self.store, self.settings, request, dedupe_keys(decision, request))
        except DuplicateBuild as dup:
            reason = f"this delivery or pull request head already started build {dup.build_id}"
            return Reply(200, {"action": "duplicate", "build_id": dup.build_id, "reason": reason})
        if request.provider in STATUS_REPORTERS:
            notify(self.app, record.id, request.provider)  # INPROGRESS on the pull request at once
        superseded = []
        if request.pr_key:
            superseded = self.stop_pull_request(
                request.pr_key, f"superseded by build {record.id}", keep=record.id
            )
        return Reply(202, {"build_id": record.id, "action": "build", "superseded": superseded})

    def stop_pull_request(self, pr_key: str, reason: str, keep: str | None = None) -> list[str]:
        """Ask every unfinished build of the pull request (but `keep`) to stop; returns their ids."""
        stopped = []
        for record in self.store.builds_of_pull_request(pr_key, but=keep):
            if not record.complete and not record.cancel_requested:
                self.store.cancel(record.id, reason)
                wake(self.app, self.store, record.id)  # a parked build stops now, not at its next look
                stopped.append(record.id)
        return stopped
