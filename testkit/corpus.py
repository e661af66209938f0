"""Loads podci's own webhook corpus (tests/fixtures, see its README.md): one delivery per case.

Kept apart from the tests so that the event-agreement, receiver and fuzz tests read the same cases the
decision table does, with the same headers and parse options, instead of each guessing them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from events.options import ParseOptions

ROOT = Path(__file__).resolve().parent.parent
# podci's own webhook corpus, written for it (see its README.md); every clone has it.
OWN_FIXTURES = ROOT / "tests" / "fixtures"
# The third-party payload corpus beside the checkout (`../shared/fixtures`), when there is one: the
# tests over it are extra and skip without it.
SHARED_FIXTURES = Path(os.environ.get("PODCI_FIXTURES") or ROOT.parent / "shared" / "fixtures")

Sender = Literal["bitbucket-cloud", "bitbucket-server", "jenkins"]
SENDERS: tuple[Sender, ...] = ("bitbucket-cloud", "bitbucket-server", "jenkins")
BODY, HEADERS, EXPECTED = ".json", ".headers.json", ".expected.json"
# The options every case is decided with unless its expectation names others (README.md).
DEFAULT_OPTIONS: dict[str, Any] = {
    "branch_builds": ["team/webapp", "TEAM/webapp"],
    "jenkins_phase": "STARTED",
    "server_base_url": None,
    "clone_hosts": ["bitbucket.org", "bitbucket.example.com"],
    "jenkins_urls": ["https://jenkins.example.com/"],
    # Alice and Bruno are the team (Cloud account ids, Server user names); Chen's forks wait.
    "trusted_authors": ["712020:5e8a7c1d-44b2", "712020:9b3e2f6a-07c8", "alice", "bruno"],
    "trusted_repos": [],
    "trust_everyone": False,
}


@dataclass(frozen=True)
class Case:
    sender: Sender
    name: str
    folder: Path

    @property
    def id(self) -> str:
        return f"{self.sender}/{self.name}"

    @property
    def body_path(self) -> Path:
        return self.folder / f"{self.name}{BODY}"

    @cached_property
    def raw(self) -> bytes:
        """The body exactly as stored: signatures are computed over these bytes."""
        return self.body_path.read_bytes()

    @cached_property
    def headers(self) -> dict[str, str]:
        """As the sender spells them; the receiver lowercases the names before anything reads them."""
        loaded: dict[str, str] = json.loads((self.folder / f"{self.name}{HEADERS}").read_bytes())
        return loaded

    @property
    def lowered(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    @cached_property
    def expected(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.folder / f"{self.name}{EXPECTED}").read_bytes())
        return loaded

    @property
    def options(self) -> ParseOptions:
        chosen = {**DEFAULT_OPTIONS, **self.expected.get("options", {})}
        return ParseOptions(
            branch_builds=tuple(chosen["branch_builds"]),
            jenkins_phase=chosen["jenkins_phase"],
            server_base_url=chosen["server_base_url"],
            clone_hosts=tuple(chosen["clone_hosts"]),
            jenkins_urls=tuple(chosen["jenkins_urls"]),
            trusted_authors=tuple(chosen["trusted_authors"]),
            trusted_repos=tuple(chosen["trusted_repos"]),
            trust_everyone=chosen["trust_everyone"],
        )

    @property
    def source(self) -> Literal["bitbucket", "jenkins"]:
        """The `--source` of `podci event`, i.e. which endpoint the sender posts to."""
        return "jenkins" if self.sender == "jenkins" else "bitbucket"

    @property
    def hook(self) -> str:
        return f"/hooks/{self.source}"

    @property
    def auth(self) -> dict[str, str] | None:
        auth: dict[str, str] | None = self.expected.get("auth")
        return auth

    def body(self) -> Any:
        """The parsed body; only `is_json` cases have one."""
        return json.loads(self.raw)

    @property
    def is_json(self) -> bool:
        try:
            self.body()
        except ValueError:
            return False
        return True


def load(root: Path = OWN_FIXTURES) -> list[Case]:
    """Every case, named by its body file (a case without one shows up in `stray_files`)."""
    cases = []
    for sender in SENDERS:
        folder = root / sender
        for path in sorted(folder.glob(f"*{BODY}")):
            if not path.name.endswith((HEADERS, EXPECTED)):
                cases.append(Case(sender, path.name.removesuffix(BODY), folder))
    return cases


def stray_files(root: Path = OWN_FIXTURES) -> list[str]:
    """Files that are not one of the three parts of a complete case, and parts whose case is incomplete."""
    problems = []
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            if path.parent != root or path.name not in SENDERS:
                problems.append(f"{path.relative_to(root)}/: not a sender folder")
            continue
        if path.parent == root:
            if path.name != "README.md":
                problems.append(f"{path.name}: only README.md belongs at the top")
            continue
        name = path.name
        for suffix in (HEADERS, EXPECTED, BODY):
            if name.endswith(suffix):
                stem = name.removesuffix(suffix)
                break
        else:
            problems.append(f"{path.relative_to(root)}: not a body, headers or expected file")
            continue
        missing = [s for s in (BODY, HEADERS, EXPECTED) if not (path.parent / f"{stem}{s}").is_file()]
        if missing:
            problems.append(f"{path.relative_to(root)}: its case has no {', '.join(missing)} file")
    return problems
