"""Keeping a podci process's secrets from the other processes of its user (a local build's)."""

from __future__ import annotations

import ctypes

PR_SET_DUMPABLE = 4


def keep_memory_private() -> None:
    """podci's processes hold its secrets (their environment, the settings): marked non-dumpable, no
    other process of the same user, such as a local build's, may read their /proc/<pid>/environ or
    memory, or ptrace them. What they exec (a build's command, git) starts dumpable again, and is
    given none of the settings. Linux only; root's processes can read anything regardless."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass
