"""What a person may do to one build: retry it, or cancel it. The one place these happen, whoever asks
(`podci retry`/`cancel`, the build page's buttons, a `/podci retest` comment).

A retry is a new build of the same request, pinned to the commits the retried build used, with the
next number of its job; the two records name each other (`retry_of`, `retried_as`). It skips the
original delivery's duplicate check on purpose, and has one of its own: a build has one retry, so two
retries at once, or one repeated, make one new build and answer it. A cancel is the one a merged pull
request uses: the build stops at its next step, `stopped`, and is torn down.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from celery import Celery

from dispatch.app import FIRST_STEP
from dispatch.send import notify, send, send_report, wake
from dispatch.submit import STATUS_REPORTERS
from schemas.action import Acted, NotPossible, UnknownBuild, retry_refusal
from schemas.record import BuildRecord, BuildState, utcnow
from schemas.request import NAME_MAX, BuildRequest
from schemas.settings import Settings
from store import keys
from store.builds import BuildStore, DuplicateBuild


def unknown(build_id: str) -> UnknownBuild:
    return UnknownBuild(f"there is no build {build_id!r}; it may have expired")


def retry_request(record: BuildRecord, by: str) -> BuildRequest:
    """The retried build's request, pinned to the commits it resolved (when it got that far), so a
    retry tests the same code even after the branches moved on."""
    request = record.request
    source = request.source
    if record.source_commit:
        source = source.model_copy(update={"commit": record.source_commit})
    target = request.target
    if target is not None and record.target_commit:
        target = target.model_copy(update={"commit": record.target_commit})
    update = {"source": source, "target": target, "triggered_by": by[:NAME_MAX], "event": "retry",
              "delivery_id": None}  # fmt: skip
    return request.model_copy(update=update)


def retry(app: Celery, store: BuildStore, settings: Settings, build_id: str, by: str) -> Acted:
    """Start the build's retry, or answer the one it has. Raises `UnknownBuild`, `NotPossible`.

    A retry of an untrusted pull request's build runs at once only when that build was approved: the
    approval was for the commit the retry pins. Otherwise it waits for approval again."""
    record = store.get(build_id)
    if record is None:
        raise unknown(build_id)
    if record.retried_as:
        return Acted(record.retried_as, f"build {build_id} was retried already as {record.retried_as}", False)
    if (refusal := retry_refusal(record)) is not None:
        raise NotPossible(refusal)
    request = retry_request(record, by)
    approved_by = "" if request.trusted else record.approved_by
    waiting = not request.trusted and not approved_by
    try:
        new = store.create(
            request,
            log_root=settings.log_store_url,
            due=time.time() + settings.stall_grace,
            dedupe=[keys.retry_dedupe(request.provider, record.id)],
            dedupe_ttl=settings.retention_seconds,
            waiting=waiting,
            retry_of=record.id,
            approved_by=approved_by,
        )
    except DuplicateBuild as dup:  # another retry of it won the race: its build is the answer
        store.link_retry(record.id, dup.build_id)
        return Acted(dup.build_id, f"build {build_id} was retried already as {dup.build_id}", False)
    store.link_retry(record.id, new.id)  # if this process dies first, the next retry call links it
    _start(app, store, new, waiting)
    sentence = f"build {new.id} retries build {build_id}"
    return Acted(new.id, sentence + (" and waits for approval" if waiting else ""), True)


def _start(app: Celery, store: BuildStore, record: BuildRecord, waiting: bool) -> None:
    """As `dispatch.submit.submit` does after writing the record: the first step, or the "waiting for
    approval" report; a pull request shows INPROGRESS at once."""
    if waiting:
        send_report(app, record.id)
        return
    send(app, FIRST_STEP, record.id, record.seq, store=store)
    if record.request.provider in STATUS_REPORTERS:
        notify(app, record.id, record.request.provider)


def cancel(app: Celery, store: BuildStore, build_id: str, by: str) -> Acted:
    """Ask the build to stop (`stopped`, "cancelled by <by>", torn down). Raises `UnknownBuild`;
    a finished build, or one asked already, is left as it is and said so."""
    record = store.get(build_id)
    if record is None:
        raise unknown(build_id)
    if record.complete:
        return Acted(
            build_id, f"build {build_id} already ended ({record.state.label}): nothing to cancel", False
        )
    if record.cancel_requested:
        return Acted(build_id, f"build {build_id} is stopping already ({record.cancel_reason})", False)
    stopped = stop(app, store, record, f"cancelled by {by}")
    return Acted(build_id, f"build {build_id} {'is stopping' if stopped else 'ended meanwhile'}", stopped)


def stop(app: Celery, store: BuildStore, record: BuildRecord, reason: str) -> bool:
    """Ask one unfinished build to stop; False when it had finished or was asked already. One still
    waiting for approval has nothing running: it is stopped here and now, and its status posted."""
    if record.state is BuildState.awaiting_approval:
        waiting = BuildState.awaiting_approval
        done = store.update(record.id, _stopped(reason), expect_state=waiting, due=time.time())
        if done is not None:
            send_report(app, record.id)
            return True
        record = store.get(record.id) or record  # approved meanwhile: stopped like any other
    if record.complete or record.cancel_requested:
        return False
    store.cancel(record.id, reason)
    wake(app, store, record.id)  # a parked build stops now, not at its next look
    return True


def _stopped(reason: str) -> Callable[[BuildRecord], None]:
    def change(record: BuildRecord) -> None:
        record.state, record.reason, record.finished, record.step = BuildState.stopped, reason, utcnow(), None

    return change
