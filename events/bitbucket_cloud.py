"""Bitbucket Cloud webhooks → a Decision. Pure: no I/O; the caller has verified the signature.

The Cloud body carries no event name, so routing uses the `x-event-key` header alone (API-NOTES a).
Pull request events build or cancel; pushes build only for repositories listed for branch builds;
a trusted person's `/podci ok-to-test` comment approves a pull request's waiting builds. People are
known by their account id and `{uuid}`, never by a display name or nickname (anyone picks those).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from events.errors import PayloadError
from events.options import ParseOptions
from events.payload import (
    NO_EVENT_KEY,
    Envelope,
    Node,
    branch_builds_off,
    clip,
    identities,
    pr_number,
    push_ignored_reason,
    ref_name,
    revision,
)
from schemas.event import Decision
from schemas.request import NAME_MAX, Provider

PROVIDER: Provider = "bitbucket-cloud"
_BUILDS = {"pullrequest:created": "was opened", "pullrequest:updated": "was updated"}
_CANCELS = {"pullrequest:fulfilled": "was merged", "pullrequest:rejected": "was declined"}


def parse(headers: Mapping[str, str], body: Any, options: ParseOptions) -> Decision:
    """Decide what one Cloud delivery asks for; headers have lowercase names."""
    envelope = Envelope(PROVIDER, headers.get("x-event-key", ""), headers.get("x-request-uuid") or None)
    event = envelope.event
    if not event:
        raise PayloadError(NO_EVENT_KEY)
    if event in _BUILDS:
        return _pull_request_build(envelope, Node(body), options)
    if event in _CANCELS:
        return _pull_request_cancel(envelope, Node(body))
    if event == "repo:push":
        return _push(envelope, Node(body), options)
    if event == "pullrequest:comment_created":
        return _comment(envelope, Node(body), options)
    return envelope.ignored(f"the Bitbucket Cloud event {clip(event)} does not start or stop builds")


def _pull_request_build(envelope: Envelope, body: Node, options: ParseOptions) -> Decision:
    """Build the source branch merged into the destination, from the commits the event names."""
    pr = body.get("pullrequest")
    number = pr_number(pr.get("id"))
    destination, source = pr.get("destination"), pr.get("source")
    target_repo = destination.get("repository")
    repo = target_repo.get("full_name").text()
    # Only a fork's source repository differs from the destination; a missing one means the same repository.
    source_repo = source.find("repository")
    fork = source_repo is not None and source_repo.get("full_name").text().casefold() != repo.casefold()
    author = _person(pr.find("author"))
    return envelope.build(
        f"pull request #{number} {_BUILDS[envelope.event]}",
        job=f"{repo}-pr{number}",
        repo=repo,
        source=revision(
            _clone_url(source_repo or target_repo),
            source.get("branch", "name"),
            source.get("commit", "hash"),
            options.clone_hosts,
        ),
        target=revision(
            _clone_url(target_repo),
            destination.get("branch", "name"),
            destination.get("commit", "hash"),
            options.clone_hosts,
        ),
        pull_request=number,
        fork=fork,
        triggered_by=_actor(body),
        author=next(iter(author), ""),
        trusted=options.trusts(author, repo, fork),
    )


def _comment(envelope: Envelope, body: Node, options: ParseOptions) -> Decision:
    pr = body.get("pullrequest")
    number = pr_number(pr.get("id"))
    repo = pr.get("destination", "repository", "full_name").text()
    text = body.get("comment", "content", "raw").text()
    return envelope.comment(text, repo, number, _person(body.find("actor")), options)


def _person(user: Node | None) -> tuple[str, ...]:
    return identities(user, "account_id", "uuid")


def _pull_request_cancel(envelope: Envelope, body: Node) -> Decision:
    pr = body.get("pullrequest")
    number = pr_number(pr.get("id"))
    repo = pr.get("destination", "repository", "full_name").text()
    return envelope.cancel(f"pull request #{number} {_CANCELS[envelope.event]}", repo, number)


def _push(envelope: Envelope, body: Node, options: ParseOptions) -> Decision:
    """Build the last branch the push moved; tags, deletions and empty pushes build nothing."""
    repository = body.get("repository")
    repo = repository.get("full_name").text()
    changes = body.get("push", "changes").items()
    branches = [
        new for new in (change.find("new") for change in changes) if new is not None and _is_branch(new)
    ]
    if not branches:
        return envelope.ignored(push_ignored_reason(_described(changes)))
    if not options.builds_branches_of(repo):
        return envelope.ignored(branch_builds_off(repo))
    new = branches[-1]
    branch = ref_name(new.get("name"))
    return envelope.build(
        f"branch {branch} was pushed",
        job=f"{repo}-{branch}",
        repo=repo,
        source=revision(
            _clone_url(repository), new.get("name"), new.get("target", "hash"), options.clone_hosts
        ),
        triggered_by=_actor(body),
        author=next(iter(_person(body.find("actor"))), ""),  # the pusher, who has write access
    )


def _is_branch(new: Node) -> bool:
    """A branch moved or created (`new` is null when the push deleted the ref; tags have type `tag`)."""
    return new.get("type").text() == "branch"


def _described(changes: list[Node]) -> list[tuple[str, str, bool]]:
    """(kind, name, deleted) of each change, for the sentence saying why nothing is built."""
    out = []
    for change in changes:
        new, old = change.find("new"), change.find("old")
        ref = new or old
        if ref is not None:
            out.append((ref.get("type").text(), ref.get("name").text(), new is None))
    return out


def _clone_url(repository: Node) -> Node:
    """The repository's web address plus `.git`, as Bitbucket Cloud serves git over HTTPS there."""
    href = repository.find("links", "html", "href")
    if href is not None:
        return Node(href.text().rstrip("/") + ".git", href.path)
    full_name = repository.get("full_name")
    return Node(f"https://bitbucket.org/{full_name.text()}.git", full_name.path)


def _actor(body: Node) -> str:
    actor = body.find("actor")
    name = None if actor is None else actor.first_text("display_name", "nickname", "username")
    return clip(name, NAME_MAX) if name else "unknown"  # a display name is not worth a refused build
