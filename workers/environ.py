"""Which of the worker's environment variables stay in the worker: podci's settings (its secrets) and
the credentials of the log store, which boto3 reads from AWS_* variables. A build's code, git and the
local backend's launcher get none of them: a pull request could print them into its log, or use them."""

from __future__ import annotations

from collections.abc import Mapping

WORKER_ONLY = ("PODCI_", "AWS_")


def for_children(environ: Mapping[str, str], *also: str) -> dict[str, str]:
    """`environ` without the worker's own variables, nor any whose name starts with one of `also`."""
    dropped = WORKER_ONLY + also
    return {name: value for name, value in environ.items() if not name.startswith(dropped)}
