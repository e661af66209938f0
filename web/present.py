"""How the pages word a record's facts: pure functions of the record (and `now`), table-tested.

A page read during an incident must not mislead: a finished build has no "current" pod and nothing
"yet" to come, and the three unhappy endings (the code's fault, podci's or the cluster's, nobody's)
must be told apart by text and shape as well as by colour, for readers who cannot tell red from grey.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.record import BuildRecord, BuildState, PodAttempt, utcnow

REASON_SHOWN = 90


@dataclass(frozen=True)
class Look:
    icon: str  # beside the state's name, never instead of it
    hint: str  # a tooltip: whose problem it is


LOOKS: dict[BuildState, Look] = {
    BuildState.awaiting_approval: Look("⏸", "waits for a trusted person's /podci ok-to-test"),
    BuildState.queued: Look("◷", "waits for a worker or a free slot of its repository"),
    BuildState.running: Look("▶", "running"),
    BuildState.succeeded: Look("✓", "the tests passed"),
    BuildState.failed: Look("✗", "the code's fault: the tests or the merge failed"),
    BuildState.error: Look("⚠", "podci's or the cluster's fault: the build could not run to the end"),
    BuildState.stopped: Look("■", "stopped: superseded by a newer commit, or cancelled"),
}


def clip(text: str, limit: int = REASON_SHOWN) -> str:
    """One line, at most `limit` characters: a list row is no place for a traceback."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _not_there(record: BuildRecord) -> str:
    return "none yet" if record.finished is None else "not created"


def pod_fact(record: BuildRecord) -> tuple[str, bool]:
    """(what to say, whether it is an object's name) for the build's pod."""
    return (record.pods[-1].pod, True) if record.pods else (_not_there(record), False)


def service_fact(record: BuildRecord) -> tuple[str, bool]:
    return (record.service, True) if record.service else (_not_there(record), False)


def attempt_end(record: BuildRecord, attempt: PodAttempt, now: datetime | None = None) -> tuple[str, bool]:
    """(what ended a pod attempt, whether it is still going). Only the last attempt of a build that
    has not finished (or whose failed pod is kept to debug in) is current."""
    if attempt.ended:
        return attempt.ended, False
    if record.pods and attempt is not record.pods[-1] and attempt.attempt != record.pods[-1].attempt:
        return "replaced by a later attempt", False
    if record.finished is None:
        return "current", True
    kept = record.pod_kept_until
    if kept is not None and (now or utcnow()) < kept:
        return f"kept for debugging until {kept.strftime('%H:%M %Z').strip()}", True
    return f"ended with the build ({record.state.label})", False


def reporting(record: BuildRecord) -> str:
    """What was posted where (`record.reported`), never the build's outcome in its place: a status
    that Bitbucket refused, or that is still being retried, must not read as delivered."""
    if record.reported:
        return ", ".join(f"{name}: {state}" for name, state in sorted(record.reported.items()))
    return "nothing posted yet" if record.finished is None else "nothing posted"
