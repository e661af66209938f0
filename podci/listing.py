"""What `podci builds` lists: which records, and how each reads as a row (pure, tested with tables).

The command reads the builds index newest first; a filter is applied while reading, so `--limit`
counts the builds shown, not the builds read."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from itertools import islice

from rich.table import Table
from rich.text import Text

from schemas.record import BuildRecord, BuildState, utcnow

COLUMNS = ("id", "repo", "branch/PR", "state", "reason", "started", "duration")
STATE_STYLE = {
    BuildState.succeeded: "green",
    BuildState.failed: "red",
    BuildState.error: "red",
    BuildState.stopped: "yellow",
}
REASON_MAX = 80  # a reason can be a paragraph; the table shows its first line, cut here


def select(
    records: Iterable[BuildRecord], repo: str | None, state: str | None, limit: int
) -> list[BuildRecord]:
    """The first `limit` records (in the order given) of `repo` in `state`; None matches any."""
    wanted = (r for r in records if repo in (None, r.request.repo) and state in (None, r.state.value))
    return list(islice(wanted, limit))


def branch_or_pr(record: BuildRecord) -> str:
    """`#12 topic → main` for a pull request, `topic → main` for a merge, else the branch."""
    request = record.request
    refs = f"{request.source.ref} → {request.target.ref}" if request.target else request.source.ref
    return f"#{request.pull_request} {refs}" if request.pull_request else refs


def started(record: BuildRecord) -> str:
    """When it started running, in this machine's time; a queued build shows when it arrived."""
    moment = record.started or record.created
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(record: BuildRecord, now: datetime | None = None) -> str:
    """From arrival to the end (or to now while unfinished), as the pages count it."""
    seconds = int(((record.finished or now or utcnow()) - record.created).total_seconds())
    minutes, seconds = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def reason(record: BuildRecord) -> str:
    first = record.reason.splitlines()[0] if record.reason else ""
    return first if len(first) <= REASON_MAX else first[: REASON_MAX - 1] + "…"


def row(record: BuildRecord, now: datetime | None = None) -> tuple[str, ...]:
    return (record.id, record.request.repo, branch_or_pr(record), record.state.label, reason(record),
            started(record), duration(record, now))  # fmt: skip


def table(records: list[BuildRecord]) -> Table:
    shown = Table(expand=False)
    for column in COLUMNS:
        shown.add_column(column, overflow="fold", no_wrap=column in ("id", "started"))
    now = utcnow()
    for record in records:
        cells = row(record, now)
        state = Text(cells[3], style=STATE_STYLE.get(record.state, ""))
        shown.add_row(*cells[:3], state, *cells[4:])
    return shown
