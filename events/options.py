"""The few settings the pure parsers need, so they do not depend on the whole `Settings` object."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class ParseOptions:
    # Repository full names (shell patterns, e.g. `team/*`) whose branch pushes are built.
    branch_builds: tuple[str, ...] = ()
    # The Jenkins Notification plugin phase that starts a build.
    jenkins_phase: str = "STARTED"
    # Bitbucket Server/Data Center base URL, e.g. `https://bitbucket.example.com`, used to make a
    # clone URL (`{base}/scm/{project}/{slug}.git`) when a payload carries no clone link.
    server_base_url: str | None = None

    def builds_branches_of(self, repo: str) -> bool:
        return any(fnmatchcase(repo, pattern) for pattern in self.branch_builds)
