"""Where in the repository a failed test failed: pure, so every rule is table-tested.

A code review annotation is worth most on the line that failed, in the diff the reviewer reads. The
failure text knows it best (a Python traceback's `File "tests/test_x.py", line 12, in test_y`, pytest's
`tests/test_x.py:12: in test_y`); the JUnit `file`/`line` attributes name the test, not the failing line,
so they come second. A place outside the repository (site-packages, the interpreter's own library) is no
place for an annotation, and an absolute path is made relative to the workspace it was run in, or to
its first `tests`/`test` directory, or dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

_TRACEBACK = re.compile(r'File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>[\w<>.]+))?')
_PYTEST = re.compile(r"^(?P<path>[^\s:][^:\n]*\.\w+):(?P<line>\d+):(?: in (?P<func>[\w<>.]+))?", re.M)
_NOT_OURS = re.compile(r"site-packages|dist-packages|/lib/python\d|^<|/usr/lib/|/usr/local/lib/")
_TEST_DIRS = ("tests", "test")


@dataclass(frozen=True)
class Place:
    path: str
    line: int | None


@dataclass(frozen=True)
class _Frame:
    path: str
    line: int
    func: str


def relative(path: str, roots: Sequence[str] = ()) -> str | None:
    """`path` relative to the repository root, or None when it cannot be told (or is not in it)."""
    if not path or _NOT_OURS.search(path):
        return None
    pure = PurePosixPath(path.replace("\\", "/"))
    if not pure.is_absolute():
        parts = [p for p in pure.parts if p not in (".", "")]
        return None if ".." in parts or not parts else "/".join(parts)
    for root in roots:
        if root and pure.is_relative_to(root):
            rest = pure.relative_to(root).as_posix()
            return rest if rest != "." else None
    for index, part in enumerate(pure.parts):
        if part in _TEST_DIRS:
            return "/".join(pure.parts[index:])
    return None


def _frames(text: str) -> list[_Frame]:
    found = [_Frame(m["path"], int(m["line"]), m["func"] or "") for m in _TRACEBACK.finditer(text)]
    if found:
        return found
    return [_Frame(m["path"], int(m["line"]), m["func"] or "") for m in _PYTEST.finditer(text)]


def _short(name: str) -> str:
    return re.split(r"[.:/]", name)[-1]


def from_text(text: str, test_name: str, roots: Sequence[str] = ()) -> Place | None:
    """The failing line the failure text names: the test's own frame when it shows one, else the
    deepest frame in the repository (Python tracebacks list the innermost last)."""
    ours = [(f, path) for f in _frames(text) if (path := relative(f.path, roots)) is not None]
    if not ours:
        return None
    short = _short(test_name)
    own = [(f, path) for f, path in ours if f.func == short]
    frame, path = own[-1] if own else ours[-1]
    return Place(path, frame.line)


def place(
    test_name: str, text: str, file: str = "", line: int | None = None, roots: Sequence[str] = ()
) -> Place | None:
    """Where the annotation of a failed test goes; None: nowhere in particular (report level)."""
    found = from_text(text, test_name, roots)
    if found is not None:
        return found
    path = relative(file, roots)
    if path is None:
        return None
    return Place(path, line if line is not None and line > 0 else None)
