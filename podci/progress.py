"""What `podci run` and `podci status` show: a live step table while a build runs, a summary after."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from schemas.record import BuildRecord, BuildState, StepRecord, StepState

_STYLE = {
    StepState.pending: ("·", "dim"),
    StepState.running: ("▶", "yellow"),
    StepState.succeeded: ("✓", "green"),
    StepState.failed: ("✗", "red"),
    StepState.skipped: ("-", "dim"),
}
_BUILD_STYLE = {
    BuildState.succeeded: "bold green",
    BuildState.failed: "bold red",
    BuildState.error: "bold red",
    BuildState.stopped: "bold yellow",
}


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}s"


def steps_table(record: BuildRecord) -> Table:
    """Cells never wrap: a step's detail is cut with an ellipsis to fit the terminal, and paths are
    printed below the table on lines of their own (`summary`), whole, so they can be copied."""
    table = Table(title=f"build {record.id} — {record.request.repo}", title_justify="left", expand=False)
    widest = max((len(step.name) for step in record.steps), default=4)
    table.add_column("", no_wrap=True, min_width=1)
    table.add_column("step", no_wrap=True, min_width=widest)
    table.add_column("time", no_wrap=True, min_width=len("1000.00s"))
    table.add_column("detail", overflow="ellipsis")
    for step in record.steps:
        mark, style = _STYLE[step.state]
        detail = step.detail.splitlines()[0][:90] if step.detail else ""
        table.add_row(Text(mark, style=style), Text(step.name, style=style), _seconds(step.seconds), detail)
    return table


def headline(record: BuildRecord) -> Text:
    total = (record.finished - record.created).total_seconds() if record.finished else None
    text = Text(f"build {record.id} ")
    text.append(record.state.value, style=_BUILD_STYLE.get(record.state, "bold"))
    if total is not None:
        text.append(f" in {total:.1f}s (attempts: {record.attempts})")
    if record.reason:
        text.append(f"\n{record.reason}")
    return text


def summary(record: BuildRecord) -> Group:
    parts: list[Table | Text] = [steps_table(record), headline(record)]
    if record.tests is not None:
        verdict = "passed" if record.tests.exit_code == 0 else f"failed (exit code {record.tests.exit_code})"
        parts.append(Text(f"tests {verdict}"))
        if record.tests.exit_code != 0 and record.tests.log_tail:
            parts.append(Text(record.tests.log_tail, style="dim"))
    return Group(*parts)


def log_lines(record: BuildRecord) -> list[str]:
    """The logs the build kept (`record.logs`, the log store's list): none for a build that never
    started a container, so nothing is named that does not exist."""
    lines = []
    if record.tests is not None and record.tests.log_path:
        lines.append(f"test log: {record.tests.log_path}")
    others = {name: where for name, where in sorted(record.logs.items()) if where and name != "tests"}
    if others:
        lines.append("logs:")
        lines += [f"  {name}: {where}" for name, where in others.items()]
    return lines


def print_summary(console: Console, record: BuildRecord) -> None:
    """The summary, then the log paths on lines of their own that are never wrapped or cut at the
    console's width, so a terminal's copy (or a CI log) gets each path whole."""
    console.print(summary(record))
    for line in log_lines(record):
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def follow(
    load: Callable[[], BuildRecord], console: Console, wait: Callable[[], None], check: Callable[[], None]
) -> BuildRecord:
    """Show the build's steps until it completes. `check` raises if the worker is gone.

    In a terminal, a table redrawn in place. Anywhere else (`make run > file`, a CI log) a redrawn
    table would print nothing until the end: one line per step change instead, flushed at once."""
    if not console.is_terminal:
        return _follow_plainly(load, console, wait, check)
    record = load()
    with Live(steps_table(record), console=console, refresh_per_second=8, transient=True) as live:
        while not record.complete:
            check()
            wait()
            record = load()
            live.update(steps_table(record))
    return record


def step_line(record: BuildRecord, step: StepRecord) -> str:
    seconds = f" in {step.seconds:.2f}s" if step.seconds is not None and step.finished else ""
    detail = step.detail.splitlines()[0] if step.detail else ""
    return f"build {record.id} {step.name}: {step.state.value}{seconds}{f' — {detail}' if detail else ''}"


def _follow_plainly(
    load: Callable[[], BuildRecord], console: Console, wait: Callable[[], None], check: Callable[[], None]
) -> BuildRecord:
    shown: dict[str, tuple[StepState, str]] = {}
    while True:
        record = load()
        for step in record.steps:
            now = (step.state, step.detail)
            if step.state is not StepState.pending and shown.get(step.name) != now:
                shown[step.name] = now
                console.print(step_line(record, step), soft_wrap=True, markup=False, highlight=False)
        console.file.flush()
        if record.complete:
            return record
        check()
        wait()
