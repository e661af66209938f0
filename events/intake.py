"""What the receiver does with a decision: start a build exactly once, stop superseded ones, cancel.

Kept apart from HTTP so `podci serve` and tests share it. Nothing here touches git or a cluster:
a build is a record and one queued message; the workers do the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from dispatch.actions import retry, stop
from dispatch.send import notify
from dispatch.submit import STATUS_REPORTERS, start_approved, submit
from schemas.action import Acted, ActionRefused
from schemas.event import Action, Decision
from schemas.record import BuildState
from schemas.request import BuildRequest, pr_key
from schemas.settings import Settings
from store.builds import BuildStore, DuplicateBuild, NameTaken

log = logging.getLogger("podci.intake")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


def delivery_key(decision: Decision) -> str | None:
    return f"delivery:{decision.provider}:{decision.delivery_id}" if decision.delivery_id else None


def dedupe_keys(decision: Decision, request: BuildRequest) -> list[str]:
    """A redelivery has the same delivery id; a second event about the same pull request head (say
    `pullrequest:updated` right after `created`) has the same source commit and target branch. Both
    are per source: another sender's ids and pull requests are its own."""
    keys = []
    if (delivery := delivery_key(decision)) is not None:
        keys.append(delivery)
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
            if (first := self._seen(decision, "cancel")) is not None:
                return first
            key = pr_key(decision.provider, decision.repo, decision.pull_request)
            stopped = self.stop_pull_request(key, decision.reason)
            reason = f"{decision.reason}: stopping {len(stopped)} running build(s)"
            return Reply(200, {"action": "cancel", "reason": reason, "builds": stopped})
        if decision.action is Action.approve and decision.repo and decision.pull_request:
            return self._approve(decision, pr_key(decision.provider, decision.repo, decision.pull_request))
        if decision.action is Action.retest and decision.repo and decision.pull_request:
            return self._retest(decision, pr_key(decision.provider, decision.repo, decision.pull_request))
        return Reply(200, {"action": decision.action.value, "reason": decision.reason})

    def _approve(self, decision: Decision, key: str) -> Reply:
        """Start the pull request's builds that wait for approval (its newest head, normally: a new
        head supersedes the older ones). An approval is for what waits now: a later commit of an
        untrusted author waits again."""
        if (first := self._seen(decision, "approve")) is not None:
            return first
        waiting = [
            r.id for r in self.store.builds_of_pull_request(key) if r.state is BuildState.awaiting_approval
        ]
        started = [
            build_id
            for build_id in waiting
            if start_approved(self.app, self.store, self.settings, build_id, decision.actor or "unknown")
        ]
        reason = decision.reason
        if not started:
            reason += f", but no build of pull request #{decision.pull_request} waits for approval"
        return Reply(200, {"action": "approve", "reason": reason, "builds": started})

    def _retest(self, decision: Decision, key: str) -> Reply:
        """Retry the pull request's newest build, which tested its current head: only once it has
        finished (a running one is testing already). A retest is not an approval: the retry of a build
        that was never approved waits for one again."""
        if (first := self._seen(decision, "retest")) is not None:
            return first
        acted, why = self._retry_newest(decision, key)
        if acted is None:  # the decision's reason first: what was asked, then why nothing started
            return Reply(200, {"action": "ignored", "reason": f"{decision.reason}, but {why}"})
        reason = f"{decision.reason}: {acted.sentence}"
        body = {"action": "retest", "reason": reason, "build_id": acted.build_id}
        return Reply(202 if acted.changed else 200, body)

    def _retry_newest(self, decision: Decision, key: str) -> tuple[Acted | None, str]:
        """The retry, or None and why not. The newest build is the head's: an older one may test a
        commit the pull request has left behind."""
        builds = self.store.builds_of_pull_request(key)
        number = decision.pull_request
        if not builds:
            return None, f"pull request #{number} has no build to retest"
        newest = builds[-1]
        if not newest.complete:
            return None, f"its build {newest.id} is {newest.state.label}: nothing to retest yet"
        try:
            return retry(self.app, self.store, self.settings, newest.id, decision.actor or "unknown"), ""
        except ActionRefused as refused:
            return None, refused.sentence

    def _seen(self, decision: Decision, what: str) -> Reply | None:
        """A redelivered cancel does nothing the second time: it could stop a newer build that the
        pull request got since (a captured, signed delivery replayed days later)."""
        key = delivery_key(decision)
        if key is None or self.store.remember(key, what, self.settings.delivery_ttl) is None:
            return None
        reason = f"this delivery was received before ({what}); nothing is done twice"
        return Reply(200, {"action": "duplicate", "reason": reason})

    def _build(self, decision: Decision, request: BuildRequest) -> Reply:
        try:
            record = submit(self.app, self.store, self.settings, request, dedupe_keys(decision, request))
        except DuplicateBuild as dup:
            reason = f"this delivery or pull request head already started build {dup.build_id}"
            return Reply(200, {"action": "duplicate", "build_id": dup.build_id, "reason": reason})
        except NameTaken as taken:
            error = (f"the build name {taken.name} is taken by a build from another source; "
                     "use another job name or build number")  # fmt: skip
            return Reply(409, {"error": error})
        if request.provider in STATUS_REPORTERS and record.state is not BuildState.awaiting_approval:
            notify(self.app, record.id, request.provider)  # INPROGRESS on the pull request at once
        superseded = []
        if request.pr_key:
            superseded = self.stop_pull_request(
                request.pr_key, f"superseded by build {record.id}", keep=record.id
            )
        return Reply(202, {"build_id": record.id, "action": "build", "superseded": superseded})

    def stop_pull_request(self, pr_key: str, reason: str, keep: str | None = None) -> list[str]:
        """Ask every unfinished build of the pull request (but `keep`) to stop; returns their ids. One
        still waiting for approval has nothing running: it is stopped here and now."""
        builds = self.store.builds_of_pull_request(pr_key, but=keep)
        return [record.id for record in builds if stop(self.app, self.store, record, reason)]
