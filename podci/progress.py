"""What `podci run` and `podci status` show: a live step table while a build runs, a summary after."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from schemas.record import BuildRecord, BuildState, StepState

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
    table = Table(title=f"build {record.id} — {record.request.repo}", title_justify="left", expand=False)
    for column in ("", "step", "time", "detail"):
        table.add_column(column, overflow="fold")
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
        parts.append(Text(f"tests {verdict}; full log: {record.tests.log_path}"))
        if record.tests.exit_code != 0 and record.tests.log_tail:
            parts.append(Text(record.tests.log_tail, style="dim"))
    parts.append(Text(f"logs of every container: {record.log_dir}/", style="dim"))
    return Group(*parts)


def follow(
    load: Callable[[], BuildRecord], console: Console, wait: Callable[[], None], check: Callable[[], None]
) -> BuildRecord:
    """Redraw the step table until the build completes. `check` raises if the worker is gone."""
    record = load()
    with Live(steps_table(record), console=console, refresh_per_second=8, transient=True) as live:
        while not record.complete:
            check()
            wait()
            record = load()
            live.update(steps_table(record))
    return record
