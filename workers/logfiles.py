"""A build's log files: written whole, listed, and their last lines for records and error reasons."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from schemas.public import mask


def log_files(log_dir: Path) -> dict[str, Path]:
    """Every log kept for a build, by name relative to its log directory (`containers/web`)."""
    return {str(p.relative_to(log_dir).with_suffix("")): p for p in sorted(log_dir.rglob("*.log"))}


TAIL_MAX = 8000  # characters of a tail kept in a record, however long its lines


def tail(path: Path, lines: int, secrets: tuple[str, ...] = ()) -> str:
    """The last `lines` lines (at most TAIL_MAX characters), with `secrets` masked."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    shown = mask("\n".join(text.splitlines()[-lines:]), secrets)
    return shown[-TAIL_MAX:]


def mask_file(path: Path, secrets: tuple[str, ...]) -> None:
    """Mask `secrets` in a log file in place (line by line: a log can be large), as every log podci
    keeps or shows is masked. A reader sees the old file or the masked one."""
    if not secrets or not path.is_file():
        return
    wanted = [secret.encode() for secret in secrets]
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.masked")
    with open(path, "rb") as source, open(tmp, "wb") as target:
        for line in source:
            for secret in wanted:
                line = line.replace(secret, b"****")
            target.write(line)
    os.replace(tmp, path)


_ERROR_PREFIXES = ("fatal:", "error:", "ERROR:", "Error:", "FATAL:")


def first_error_line(text: str) -> str:
    """The line that says what went wrong: git and most tools print the cause first (`fatal: ...`)
    and hints or context after it, so the first line that reads as an error, else the first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith(_ERROR_PREFIXES)), lines[0] if lines else "")


def write_atomic(path: Path, text: str) -> None:
    """Readers see the old content or the new, never a half-written file; two writers may race."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
