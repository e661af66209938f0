"""The last lines of a log file, for build records and error reasons."""

from __future__ import annotations

from pathlib import Path


def log_files(log_dir: Path) -> dict[str, Path]:
    """Every log kept for a build, by name relative to its log directory (`containers/web`)."""
    return {str(p.relative_to(log_dir).with_suffix("")): p for p in sorted(log_dir.rglob("*.log"))}


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
