"""`PODCI_*` variables podci does not know. Settings ignore unknown variables, so a misspelt one
(`PODCI_REDIS_ULR`) silently leaves its setting at the default: the command names it at start, with
the setting it probably meant."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from schemas.settings import Settings, env_name

# Set by podci for the processes it starts, never read as settings: a build's containers and tests
# (`PODCI_WORKSPACE`, `PODCI_BUILD`, `PODCI_HOST`, `PODCI_PORT_<NAME>`), the local launcher and
# watcher (`PODCI_WAKE_REDIS*`); and read by the test kit (`PODCI_FIXTURES`, `PODCI_FUZZ_EXAMPLES`).
# A `podci` run inside a build (podci testing itself) sees them and must not complain.
FOR_CHILDREN = frozenset(
    {
        "PODCI_WORKSPACE", "PODCI_BUILD", "PODCI_HOST", "PODCI_WAKE_REDIS", "PODCI_WAKE_REDIS_MASTER",
        "PODCI_FIXTURES", "PODCI_FUZZ_EXAMPLES",
    }
)  # fmt: skip
FOR_CHILDREN_PREFIXES = ("PODCI_PORT_",)


def setting_names() -> set[str]:
    return {env_name(field) for field in Settings.model_fields}


def unknown_variables(environ: Mapping[str, str], known: Iterable[str]) -> list[str]:
    """One sentence per unknown `PODCI_*` variable, naming the closest known one when there is one."""
    known = set(known)
    choices = sorted(known)
    warnings = []
    for name in sorted(environ):
        if not name.startswith("PODCI_") or name in known or name in FOR_CHILDREN:
            continue
        if name.startswith(FOR_CHILDREN_PREFIXES):
            continue
        close = difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"warning: {name} is not a podci setting and is ignored{hint}")
    return warnings
