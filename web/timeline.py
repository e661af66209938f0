"""Where a build's time went, as an inline SVG drawn from its record alone.

The pipeline has seven steps, but a reader asks coarser questions ("was it stuck in the queue, in
setup, or in the tests?"), so steps are grouped into phases. Everything here is a pure function of
the record (and of `now`, for builds still running), so the drawing is table-tested without a
browser, a server or Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

from schemas.record import BuildRecord, Step, StepRecord, StepState, utcnow

# The page draws it this wide, and its live updates redraw it the same (CSS scales it to the column).
TIMELINE_WIDTH = 1100

# Phase name -> the pipeline steps it covers, in pipeline order. "queued" covers no step: it is the
# time from the build's creation until its first step started.
PHASE_STEPS: tuple[tuple[str, tuple[Step, ...]], ...] = (
    ("queued", ()),
    ("checkout", (Step.checkout,)),
    ("provisioning", (Step.create_service, Step.create_volume, Step.create_pod)),
    ("setup", (Step.wait_setup,)),
    ("tests", (Step.run_tests,)),
    ("teardown", (Step.teardown,)),
)

# A phase's state is a step state, except that a finished wait in the queue is "waited": it neither
# succeeded nor failed, and colouring it green would read as progress.
COLOURS: dict[str, str] = {
    "failed": "#c62828",
    "succeeded": "#2e7d32",
    "running": "#f9a825",
    "skipped": "#9e9e9e",
    "waited": "#90a4ae",
}


@dataclass(frozen=True)
class Phase:
    """One bar of the timeline: seconds are counted from the build's creation."""

    name: str
    start_seconds: float
    end_seconds: float
    state: str

    @property
    def seconds(self) -> float:
        return self.end_seconds - self.start_seconds


def format_seconds(seconds: float) -> str:
    """Durations as people read them: "4.2 s", "3 min 05 s", "1 h 02 min"."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _offset(record: BuildRecord, moment: datetime) -> float:
    return max(0.0, (moment - record.created).total_seconds())


def _group_state(record: BuildRecord, steps: list[StepRecord]) -> str:
    started = [s for s in steps if s.started is not None]
    if any(s.state is StepState.failed for s in started):
        return "failed"
    # Between two steps of a phase (the next one queued, not yet started) the phase is still going.
    in_between = record.finished is None and record.step in {s.name for s in steps if s.started is None}
    if in_between or any(s.state is StepState.running or s.finished is None for s in started):
        return "running"
    if all(s.state is StepState.skipped for s in started):
        return "skipped"
    return "succeeded"


def phases(record: BuildRecord, now: datetime | None = None) -> list[Phase]:
    """The phases that started, in pipeline order; a phase still going ends at `now`.

    `now` defaults to the current time; tests pass it so that a running build draws the same way
    every time.
    """
    end_of_build = record.finished or now or utcnow()
    checkout = record.step_record(Step.checkout)
    if checkout.started is not None:
        queued = Phase("queued", 0.0, _offset(record, checkout.started), "waited")
    elif record.finished is not None:  # stopped while still in the queue
        queued = Phase("queued", 0.0, _offset(record, record.finished), "waited")
    else:
        queued = Phase("queued", 0.0, _offset(record, end_of_build), "running")
    found = [queued]
    for name, step_names in PHASE_STEPS[1:]:
        steps = [record.step_record(s) for s in step_names]
        starts = [s.started for s in steps if s.started is not None]
        if not starts:
            continue
        state = _group_state(record, steps)
        ends = [s.finished for s in steps if s.started is not None and s.finished is not None]
        end = end_of_build if state == "running" or not ends else max(ends)
        start = _offset(record, min(starts))
        found.append(Phase(name, start, max(start, _offset(record, end)), state))
    return found


def timeline_svg(record: BuildRecord, width: int = 720, now: datetime | None = None) -> str:
    """An inline SVG: one labelled bar per started phase on a shared axis from creation to the end.

    It carries its own `viewBox`, so CSS may shrink it to a narrow column without distorting it.
    Every piece of text is escaped, since the job name comes from whoever sent the webhook.
    """
    drawn = phases(record, now)
    end_of_build = record.finished or now or utcnow()
    total = max(_offset(record, end_of_build), *(p.end_seconds for p in drawn), 0.001)
    label_width, duration_width, row, bar, top = 100, 90, 24, 16, 6
    plot = max(width - label_width - duration_width, 50)
    axis_y = top + row * len(drawn) + 4
    height = axis_y + 22
    scale = plot / total
    title = f"timeline of {record.job} #{record.number}: {format_seconds(total)}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        'font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
    ]
    for index, phase in enumerate(drawn):
        y = top + index * row
        x = label_width + phase.start_seconds * scale
        bar_width = max(phase.seconds * scale, 2.0)
        tip = f"{phase.name}: {format_seconds(phase.seconds)} ({phase.state})"
        parts += [
            f'<text x="{label_width - 8}" y="{y + bar - 3}" text-anchor="end" class="label">'
            f"{escape(phase.name)}</text>",
            f'<rect class="bar {escape(phase.state)}" data-phase="{escape(phase.name)}" x="{x:.1f}" '
            f'y="{y}" width="{bar_width:.1f}" height="{bar}" rx="2" fill="{COLOURS[phase.state]}">'
            f"<title>{escape(tip)}</title></rect>",
            f'<text x="{label_width + plot + 8}" y="{y + bar - 3}" class="duration">'
            f"{escape(format_seconds(phase.seconds))}</text>",
        ]
    parts.append(
        f'<line x1="{label_width}" y1="{axis_y}" x2="{label_width + plot}" y2="{axis_y}" stroke="#777"/>'
    )
    for fraction, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        x = label_width + plot * fraction
        parts.append(
            f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="{anchor}" class="tick">'
            f"{escape(format_seconds(total * fraction))}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
