"""Bitbucket Server / Data Center webhooks → a Decision. Pure: no I/O; the signature is checked before.

Server bodies repeat the event key as `eventKey`, except the "Test connection" ping (`{"test": true}`),
so the `x-event-key` header wins and the body is the fallback. Dates are never read: they are epoch
milliseconds in older payloads and ISO-8601 strings from Data Center 10.3 on (API-NOTES a). People
are known by their user name (unique on a server), never by a display name.
"""

from __future__ import annotations

import re
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
    unicode_text,
)
from schemas.event import Decision
from schemas.request import NAME_MAX, Provider

PROVIDER: Provider = "bitbucket-server"
_BUILDS = {"pr:opened": "was opened", "pr:from_ref_updated": "has new commits"}
_CANCELS = {"pr:merged": "was merged", "pr:declined": "was declined", "pr:deleted": "was deleted"}
# `…/projects/KEY/repos/SLUG/browse` or, for a personal repository, `…/users/NAME/repos/SLUG/browse`.
_BROWSE = re.compile(
    r"(?P<base>https?://.+?)/(?:projects/(?P<key>[^/]+)|users/(?P<user>[^/]+))/repos/(?P<slug>[^/]+)/browse/?"
)


def parse(headers: Mapping[str, str], body: Any, options: ParseOptions) -> Decision:
    """Decide what one Server/Data Center delivery asks for; headers have lowercase names."""
    envelope = Envelope(PROVIDER, _event_key(headers, body), headers.get("x-request-id") or None)
    event = envelope.event
    if event in _BUILDS:
        return _pull_request_build(envelope, Node(body), options)
    if event == "pr:modified":
        return _pull_request_modified(envelope, Node(body), options)
    if event in _CANCELS:
        return _pull_request_cancel(envelope, Node(body))
    if event == "repo:refs_changed":
        return _refs_changed(envelope, Node(body), options)
    if event == "diagnostics:ping":
        return envelope.ping("Bitbucket Server connection test")
    if event == "pr:comment:added":
        return _comment(envelope, Node(body), options)
    return envelope.ignored(f"the Bitbucket Server event {clip(event)} does not start or stop builds")


def _event_key(headers: Mapping[str, str], body: Any) -> str:
    event = headers.get("x-event-key", "")
    if not event and isinstance(body, dict) and isinstance(body.get("eventKey"), str):
        event = unicode_text(body["eventKey"], "eventKey")
    if not event:
        raise PayloadError(NO_EVENT_KEY)
    return event


def _pull_request_build(envelope: Envelope, body: Node, options: ParseOptions, reason: str = "") -> Decision:
    """Build fromRef merged into toRef, at the commits the event names."""
    pr = body.get("pullRequest")
    number = pr_number(pr.get("id"))
    from_ref, to_ref = pr.get("fromRef"), pr.get("toRef")
    from_repo, to_repo = from_ref.get("repository"), to_ref.get("repository")
    repo = _full_name(to_repo)
    fork = _full_name(from_repo).casefold() != repo.casefold()
    author = _person(pr.find("author", "user"))
    return envelope.build(
        reason or f"pull request #{number} {_BUILDS[envelope.event]}",
        job=f"{repo}-pr{number}",
        repo=repo,
        source=revision(
            _clone_url(from_repo, options), _ref(from_ref), from_ref.get("latestCommit"), options.clone_hosts
        ),
        target=revision(
            _clone_url(to_repo, options), _ref(to_ref), to_ref.get("latestCommit"), options.clone_hosts
        ),
        pull_request=number,
        fork=fork,
        triggered_by=_actor(body),
        author=next(iter(author), ""),
        trusted=options.trusts(author, repo, fork),
    )


def _pull_request_modified(envelope: Envelope, body: Node, options: ParseOptions) -> Decision:
    """`pr:modified` also fires for title and description edits; only a new target needs a build."""
    to_ref = body.get("pullRequest", "toRef")
    previous = body.find("previousTarget")
    new = _ref(to_ref).text()
    old = None if previous is None else _ref(previous).text()
    if old is None or old == new:
        return envelope.ignored("the pull request's title or description changed; its target did not")
    number = pr_number(body.get("pullRequest", "id"))
    reason = f"pull request #{number} now targets {new} instead of {old}"
    return _pull_request_build(envelope, body, options, reason)


def _comment(envelope: Envelope, body: Node, options: ParseOptions) -> Decision:
    pr = body.get("pullRequest")
    number = pr_number(pr.get("id"))
    repo = _full_name(pr.get("toRef", "repository"))
    text = body.get("comment", "text").text()
    return envelope.comment(text, repo, number, _person(body.find("actor")), options)


def _person(user: Node | None) -> tuple[str, ...]:
    return identities(user, "name", "slug")


def _pull_request_cancel(envelope: Envelope, body: Node) -> Decision:
    pr = body.get("pullRequest")
    number = pr_number(pr.get("id"))
    repo = _full_name(pr.get("toRef", "repository"))
    return envelope.cancel(f"pull request #{number} {_CANCELS[envelope.event]}", repo, number)


def _refs_changed(envelope: Envelope, body: Node, options: ParseOptions) -> Decision:
    """Build the last branch the push added or moved; tags, deletions and empty pushes build nothing."""
    repository = body.get("repository")
    repo = _full_name(repository)
    changes = body.get("changes").items()
    branches = [c for c in changes if c.get("ref", "type").text() == "BRANCH" and not _deleted(c)]
    if not branches:
        return envelope.ignored(push_ignored_reason([_described(change) for change in changes]))
    if not options.builds_branches_of(repo):
        return envelope.ignored(branch_builds_off(repo))
    change = branches[-1]
    branch = ref_name(_ref(change.get("ref")))
    return envelope.build(
        f"branch {branch} was pushed",
        job=f"{repo}-{branch}",
        repo=repo,
        source=revision(
            _clone_url(repository, options),
            _ref(change.get("ref")),
            change.get("toHash"),
            options.clone_hosts,
        ),
        triggered_by=_actor(body),
        author=next(iter(_person(body.find("actor"))), ""),  # the pusher, who has write access
    )


def _deleted(change: Node) -> bool:
    return change.get("type").text() == "DELETE"


def _described(change: Node) -> tuple[str, str, bool]:
    """(kind, name, deleted) of a change, for the sentence saying why nothing is built."""
    ref = change.get("ref")
    return ref.get("type").text().lower(), _ref(ref).text(), _deleted(change)


def _ref(ref: Node) -> Node:
    """The branch or tag name: `displayId`, else `id` without `refs/heads/` or `refs/tags/`."""
    display = ref.find("displayId")
    if display is not None:
        return display
    ident = ref.get("id")
    for prefix in ("refs/heads/", "refs/tags/"):
        if ident.text().startswith(prefix):
            return Node(ident.text().removeprefix(prefix), ident.path)
    return ident


def _full_name(repository: Node) -> str:
    """`PROJECT/slug`; personal projects keep their `~user` key so they never clash with a project."""
    return f"{repository.get('project', 'key').text()}/{repository.get('slug').text()}"


def _clone_url(repository: Node, options: ParseOptions) -> Node:
    """The HTTP clone link; else one made from the configured base URL; else from the browse link."""
    link = _clone_link(repository)
    if link is not None:
        return link
    key, slug = repository.get("project", "key").text(), repository.get("slug").text()
    if options.server_base_url:
        base = options.server_base_url.rstrip("/")
        return Node(f"{base}/scm/{key.lower()}/{slug}.git", "PODCI_BITBUCKET_SERVER_URL")
    derived = _from_browse_link(repository)
    if derived is not None:
        return derived
    raise PayloadError(
        f"{repository.name} has no clone link (links.clone) and no browse link to make one from; "
        "set PODCI_BITBUCKET_SERVER_URL to the server's base URL, e.g. https://bitbucket.example.com"
    )


def _clone_link(repository: Node) -> Node | None:
    clones = repository.find("links", "clone")
    for link in [] if clones is None else clones.items():
        if link.find("name") is not None and link.get("name").text() in ("http", "https"):
            return link.get("href")
    return None


def _from_browse_link(repository: Node) -> Node | None:
    """`…/projects/KEY/repos/SLUG/browse` → `…/scm/key/slug.git`, the server's HTTP clone path."""
    links = repository.find("links", "self")
    for link in [] if links is None else links.items():
        href = link.get("href")
        match = _BROWSE.fullmatch(href.text())
        if match is not None:
            owner = match["key"] or f"~{match['user']}"
            return Node(f"{match['base']}/scm/{owner.lower()}/{match['slug']}.git", href.path)
    return None


def _actor(body: Node) -> str:
    actor = body.find("actor")
    name = None if actor is None else actor.first_text("displayName", "name")
    return clip(name, NAME_MAX) if name else "unknown"  # a display name is not worth a refused build
