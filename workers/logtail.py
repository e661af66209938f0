"""The last lines of a log file, for build records and error reasons."""

from __future__ import annotations

from pathlib import Path


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
