"""Shared helpers for the webhook parsers: walk parsed JSON, and build Decisions.

A webhook body is untrusted input, so the parsers never index it directly: a `Node` carries each value
with its dotted path (`pullrequest.source.commit.hash`, `changes[0].toHash`), and every lookup that
fails raises `PayloadError` naming that path. A malformed body therefore becomes a 400 with a sentence
the sender can act on, never a KeyError or TypeError (a 500).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from events.errors import PayloadError
from events.options import ParseOptions
from schemas.errors import describe
from schemas.event import Action, Decision
from schemas.request import BuildRequest, Provider, Revision, check_ref
from schemas.urls import clone_url_problem

NO_EVENT_KEY = "the request has no X-Event-Key header; is this a Bitbucket webhook?"
# What a trusted person comments to start the builds of a pull request waiting for approval, on a line
# of its own (as Prow's `/ok-to-test`).
OK_TO_TEST = re.compile(r"(?mi)^\s*/podci\s+ok-to-test\s*$")
# What a trusted person comments to test a pull request's head again (an infrastructure failure, a
# flaky service), on a line of its own.
RETEST = re.compile(r"(?mi)^\s*/podci\s+retest\s*$")

# The same rule as `Revision.commit`; `fullmatch` so that a trailing newline is refused too.
_COMMIT = re.compile(r"[0-9a-f]{7,40}")


def show(value: Any) -> str:
    """Quote a bad value in an error sentence: JSON spelling, short, never a whole object."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + '..."'


@dataclass(frozen=True)
class Node:
    """One JSON value and the dotted path it was found at; the path goes into every error."""

    value: Any
    path: str = ""

    @property
    def name(self) -> str:
        return self.path or "the request body"

    def _child(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def obj(self) -> dict[str, Any]:
        """This value as a JSON object."""
        if not isinstance(self.value, dict):
            raise PayloadError(f"{self.name} must be a JSON object, not {show(self.value)}")
        return self.value

    def find(self, *keys: str) -> Node | None:
        """The value under `keys`, or None when any step is absent or null (optional fields)."""
        node: Node = self
        for key in keys:
            mapping = node.obj()
            if mapping.get(key) is None:
                return None
            node = Node(mapping[key], node._child(key))
        return node

    def get(self, *keys: str) -> Node:
        """The value under `keys`; absent or null is an error naming the first missing step."""
        node: Node = self
        for key in keys:
            found = node.find(key)
            if found is None:
                state = "null" if key in node.obj() else "missing"
                raise PayloadError(f"{node._child(key)} is {state}")
            node = found
        return node

    def text(self) -> str:
        if not isinstance(self.value, str):
            raise PayloadError(f"{self.name} must be a string, not {show(self.value)}")
        return unicode_text(self.value, self.name)

    def integer(self) -> int:
        # bool is an int in Python but `true` is not an id in JSON.
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise PayloadError(f"{self.name} must be an integer, not {show(self.value)}")
        return self.value

    def items(self) -> list[Node]:
        """This value as a JSON array, each element with its `[i]` path."""
        if not isinstance(self.value, list):
            raise PayloadError(f"{self.name} must be an array, not {show(self.value)}")
        return [Node(item, f"{self.name}[{i}]") for i, item in enumerate(self.value)]

    def first_text(self, *keys: str) -> str | None:
        """The first of `keys` holding a non-empty string (e.g. the best display name of a user)."""
        for key in keys:
            found = self.find(key)
            if found is not None and found.text():
                return found.text()
        return None


def is_unicode(value: str) -> bool:
    """False when `value` holds a lone surrogate. JSON may spell one (`"\\ud83d"`, half an emoji, as a
    client that cuts UTF-16 text short sends it) and Python keeps it, but it cannot be written as UTF-8:
    it would break the reply and any Redis key it reached (a 500), so the parsers refuse it."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unicode_text(value: str, name: str) -> str:
    if not is_unicode(value):
        raise PayloadError(f"{name} is not valid Unicode text: it holds a lone surrogate ({show(value)})")
    return value


def pr_number(node: Node) -> int:
    number = node.integer()
    if number < 1:
        raise PayloadError(f"{node.name} must be a positive integer, not {number}")
    return number


def ref_name(node: Node) -> str:
    """A branch or tag name that git accepts; anything else is refused before it reaches git."""
    value = node.text()
    try:
        return check_ref(value)
    except ValueError:
        raise PayloadError(f"{node.name} is not a usable git ref name: {show(value)}") from None


def commit_id(node: Node) -> str:
    value = node.text()
    if not _COMMIT.fullmatch(value):
        raise PayloadError(
            f"{node.name} must be a commit id (7 to 40 lowercase hex digits), not {show(value)}"
        )
    return value


def clone_url(node: Node, hosts: tuple[str, ...]) -> str:
    """Refuse URLs git would read as an option or that hide control characters (as Revision does),
    and any but http(s) or ssh on one of `hosts` (`schemas.urls`)."""
    value = node.text()
    if not value or value.startswith("-") or any(ord(ch) < 32 for ch in value):
        raise PayloadError(f"{node.name} does not give a usable clone URL: {show(value)}")
    problem = clone_url_problem(value, hosts)
    if problem is not None:
        raise PayloadError(f"{node.name} gives the clone URL {show(value)}, which {problem}")
    return value


def revision(url: Node, ref: Node, commit: Node, hosts: tuple[str, ...]) -> Revision:
    """A Revision whose every bad part is reported by the JSON field it came from."""
    try:
        return Revision(clone_url=clone_url(url, hosts), ref=ref_name(ref), commit=commit_id(commit))
    except ValidationError as error:  # a rule added to Revision later; still a 400
        raise PayloadError(describe(error, "the revision")) from None


def identities(user: Node | None, *names: str) -> tuple[str, ...]:
    """A user's stable identities, in the order given (`account_id`, `uuid` on Cloud; `name`, `slug` on
    Server); empty when the payload names no user."""
    if user is None or not isinstance(user.value, dict):
        return ()
    found = (user.find(name) for name in names)
    return tuple(clip(node.text(), 200) for node in found if node is not None and isinstance(node.value, str))


def clip(text: str, limit: int = 60) -> str:
    """A name from the request inside a reason: whole when short, else cut. A sender controls its
    length, and the reason goes back in the reply and into the log."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _listed(names: list[str], most: int = 5) -> str:
    """`a, b, c`; past `most` names, `and N more`."""
    shown = ", ".join(clip(name) for name in names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


def push_ignored_reason(refs: list[tuple[str, str, bool]]) -> str:
    """Why a push with no buildable branch is ignored; `refs` holds (kind, name, deleted) per change."""
    if not refs:
        return "the push lists no ref changes; there is nothing to build"
    if all(deleted for _, _, deleted in refs):
        names = _listed([f"{clip(kind, 20)} {name}" for kind, name, _ in refs])
        return f"the push only deletes {names}; there is nothing to build"
    tags = [name for kind, name, deleted in refs if "tag" in kind and not deleted]
    if tags:
        return f"tags are not built (the push changed tag {_listed(tags)})"
    return "the push changes no git branch; there is nothing to build"


def branch_builds_off(repo: str) -> str:
    return f"branch builds are off for {clip(repo, 120)}; list it in PODCI_BRANCH_BUILDS to build pushes"


@dataclass(frozen=True)
class Envelope:
    """Who sent the event and how it is named: the part every Decision of one delivery shares."""

    provider: Provider
    event: str
    delivery_id: str | None

    def ignored(self, reason: str) -> Decision:
        return self._decide(Action.ignored, reason)

    def ping(self, reason: str) -> Decision:
        return self._decide(Action.ping, reason)

    def cancel(self, reason: str, repo: str, pull_request: int) -> Decision:
        return self._decide(Action.cancel, reason, repo=repo, pull_request=pull_request)

    def comment(
        self, text: str, repo: str, pull_request: int, actor: tuple[str, ...], options: ParseOptions
    ) -> Decision:
        """A pull request comment: `approve` when it is a trusted person's `/podci ok-to-test`,
        `retest` when it is a trusted person's `/podci retest` (an approval wins over a retest)."""
        command = (
            "/podci ok-to-test" if OK_TO_TEST.search(text) else "/podci retest" if RETEST.search(text) else ""
        )
        if not command:
            return self.ignored(
                "the comment does not say /podci ok-to-test on a line of its own (nor /podci retest)"
            )
        # a payload's name may be blank or padded: the sentence starts with a name, never with spaces
        who = next((identity.strip() for identity in actor if identity.strip()), "unknown")
        if not options.trusted_person(actor):
            return self.ignored(
                f"{clip(who)} is not trusted (PODCI_TRUSTED_AUTHORS): only a trusted person's "
                f"{command} starts a build"
            )
        if command == "/podci retest":
            reason = f"{clip(who)} asked for a retest of pull request #{pull_request} (/podci retest)"
            action = Action.retest
        else:
            reason = f"{clip(who)} approved pull request #{pull_request} (/podci ok-to-test)"
            action = Action.approve
        return self._decide(action, reason, repo=repo, pull_request=pull_request, actor=clip(who, 200))

    def build(
        self,
        reason: str,
        *,
        job: str,
        repo: str,
        source: Revision,
        target: Revision | None = None,
        pull_request: int | None = None,
        fork: bool = False,
        triggered_by: str = "unknown",
        author: str = "",
        trusted: bool = True,
    ) -> Decision:
        try:
            request = BuildRequest(
                job=job,
                repo=repo,
                source=source,
                target=target,
                pull_request=pull_request,
                fork=fork,
                triggered_by=triggered_by,
                author=author,
                trusted=trusted,
                provider=self.provider,
                event=self.event,
                delivery_id=self.delivery_id,
            )
        except ValidationError as error:  # e.g. a job name over the length limit
            raise PayloadError(describe(error, "the build request made from this event")) from None
        return self._decide(Action.build, reason, request=request, repo=repo, pull_request=pull_request)

    def _decide(self, action: Action, reason: str, **extra: Any) -> Decision:
        return Decision(
            action=action,
            reason=reason,
            provider=self.provider,
            event=self.event,
            delivery_id=self.delivery_id,
            **extra,
        )
