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
    # Hosts a clone URL may be on (`schemas.urls`); none: every clone URL is refused.
    clone_hosts: tuple[str, ...] = ()
    # URL prefixes a Jenkins `callback_url` must start with; none: every callback URL is refused.
    jenkins_urls: tuple[str, ...] = ()
    # Who may start a build without approval (`trusts`), and whose `/podci ok-to-test` counts.
    trusted_authors: tuple[str, ...] = ()
    trusted_repos: tuple[str, ...] = ()
    trust_everyone: bool = False

    def builds_branches_of(self, repo: str) -> bool:
        return any(fnmatchcase(repo, pattern) for pattern in self.branch_builds)

    def trusted_person(self, identities: tuple[str, ...]) -> bool:
        """Is one of a user's stable identities (Cloud account id or `{uuid}`, Server user name) listed?
        Display names and Cloud nicknames are not identities: anyone can choose them."""
        return self.trust_everyone or any(
            fnmatchcase(identity, pattern)
            for identity in identities
            if identity
            for pattern in self.trusted_authors
        )

    def trusts(self, author: tuple[str, ...], repo: str, fork: bool) -> bool:
        """May this pull request build without approval? Its author is trusted, or it comes from a
        trusted repository itself (whoever pushed its branch there already has write access); a
        fork's pull request only by its author."""
        if self.trusted_person(author):
            return True
        return not fork and any(fnmatchcase(repo, pattern) for pattern in self.trusted_repos)
