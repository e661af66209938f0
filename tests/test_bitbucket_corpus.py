"""events/bitbucket*.py against the third-party payload corpus in ../shared/fixtures (PROVENANCE.md there).

One explicit row per fixture file. Every expected value was read off the payload by hand, never
computed by the code under test, so a parser change that alters a decision shows up as a failing row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from events import bitbucket, bitbucket_cloud
from events.errors import PayloadError
from events.options import ParseOptions
from events.payload import NO_EVENT_KEY
from schemas.event import Action, Decision
from testkit.corpus import SHARED_FIXTURES

BASE = "https://bitbucket.example.com"
# Any host: the clone URLs here come from everywhere; which hosts are allowed is tested in test_urls.py.
ANY_HOST = ("*",)
OPTIONS = ParseOptions(branch_builds=("*",), server_base_url=BASE, clone_hosts=ANY_HOST)
NO_BRANCH_BUILDS = ParseOptions(server_base_url=BASE, clone_hosts=ANY_HOST)
ADDON = "not a native Bitbucket webhook"

pytestmark = pytest.mark.skipif(
    not SHARED_FIXTURES.is_dir(), reason=f"extra: no shared webhook corpus at {SHARED_FIXTURES}"
)

Rev = tuple[str, str, str]  # (clone_url, ref, commit)


@dataclass(frozen=True)
class Row:
    file: str
    action: Action | None  # None: a PayloadError is the expected answer
    reason: str = ""  # part of Decision.reason, or of the PayloadError message
    repo: str | None = None
    pr: int | None = None
    source: Rev | None = None
    target: Rev | None = None
    fork: bool = False
    by: str | None = None

    @property
    def provider(self) -> str:
        return "bitbucket-cloud" if self.file.startswith("bitbucket-cloud/") else "bitbucket-server"


def pr_build(file: str, repo: str, pr: int, source: Rev, target: Rev, by: str, *, fork: bool = False,
             reason: str = "") -> Row:  # fmt: skip
    return Row(file, Action.build, reason or f"pull request #{pr}", repo, pr, source, target, fork, by)


def push_build(file: str, repo: str, source: Rev, by: str) -> Row:
    return Row(file, Action.build, f"branch {source[1]} was pushed", repo, None, source, None, False, by)


def cancel(file: str, repo: str, pr: int, reason: str) -> Row:
    return Row(file, Action.cancel, reason, repo, pr)


def ignored(file: str, reason: str) -> Row:
    return Row(file, Action.ignored, reason)


def error(file: str, message: str) -> Row:
    return Row(file, None, message)


C, S = "bitbucket-cloud/", "bitbucket-server/"
TEMP, TEMP_FORK = "https://bitbucket.org/cloudbeers/temp.git", "https://bitbucket.org/stephenc/temp-fork.git"
AMUNIZ_C, NFALCO_C = (
    "https://bitbucket.org/amuniz/test-repos.git",
    "https://bitbucket.org/nfalco79/test-repos.git",
)
BPPR_C, FOO = (
    "https://bitbucket.org/some-repo-namespace/some-repo.git",
    "https://bitbucket.org/brydzewski/foo.git",
)
TEMPLATE = "https://api.bitbucket.org/bitbucket/bitbucket.git"  # the doc template's links.html.href + .git
AMUNIZ_S, AMUNIZ_S_ROOT = (
    "http://localhost:7990/bitbucket/scm/amuniz/test-repos.git",
    "http://localhost:7990/scm/amuniz/test-repos.git",
)
BPPR_S, GOPHER = (
    "https://example.org/scm/some-namespace/some-repo.git",
    "https://server.bitbucket.local/scm/~gopher/webhook-test.git",
)
PRJ_LINK, PRJ_BASE = "http://example.com:7990/scm/prj/my-repo.git", f"{BASE}/scm/prj/my-repo.git"
BB_S, BC_S = "Stephen Connolly", "Brad Rydzewski"
TAGS, NOTHING = "tags are not built", "the push lists no ref changes"

ROWS = [
    # --- Bitbucket Cloud: pull requests opened or updated -> build source merged into destination
    pr_build(C + "pullrequest-created-bbsp-fork.json", "cloudbeers/temp", 3,
             (TEMP_FORK, "main", "1c48041a96db"), (TEMP, "main", "1986c2284946"), BB_S, fork=True),
    pr_build(C + "pullrequest-created-bbsp-origin.json", "cloudbeers/temp", 1,
             (TEMP, "foo", "a72355f35fde"), (TEMP, "main", "f612156eff2c"), BB_S),
    pr_build(C + "pullrequest-created-bbsp-webhook.json", "amuniz/test-repos", 735,
             (AMUNIZ_C, "feature/test", "d31df3425c5b"), (AMUNIZ_C, "master", "320cc39764dc"),
             "Nikolas Falco"),
    pr_build(C + "pullrequest-created-bppr.json", "some-repo-namespace/some-repo", 198,
             (BPPR_C, "feature/do-not-merge", "01a3337e3abc"), (BPPR_C, "develop", "a421e461dabd"),
             "me display name"),
    # Documentation template: placeholder names, but every field the build needs is well formed.
    pr_build(C + "pullrequest-created-goplayground.json", "team_name/repo_name", 1,
             (TEMPLATE, "branch2", "d3022fc0ca3d"), (TEMPLATE, "master", "ce5965ddd289"), "Emma"),
    pr_build(C + "pullrequest-created-goscm.json", "brydzewski/foo", 1,
             (FOO, "develop", "507a576e59b3"), (FOO, "master", "7d1a175411ef"), BC_S, reason="#1 was opened"),
    pr_build(C + "pullrequest-created-jxgoscm-slash-branch.json", "brydzewski/foo", 1,
             (FOO, "feature/develop", "507a576e59b3"), (FOO, "master", "7d1a175411ef"), BC_S),
    pr_build(C + "pullrequest-updated-bbsp-new-commit.json", "cloudbeers/temp", 3,
             (TEMP_FORK, "main", "63e3d18dca4c"), (TEMP, "main", "1986c2284946"), BB_S, fork=True),
    pr_build(C + "pullrequest-updated-bbsp-new-destination-commit.json", "cloudbeers/temp", 3,
             (TEMP_FORK, "main", "63e3d18dca4c"), (TEMP, "main", "5449b752db4f"), BB_S, fork=True),
    pr_build(C + "pullrequest-updated-bbsp-new-destination.json", "cloudbeers/temp", 3,
             (TEMP_FORK, "main", "63e3d18dca4c"), (TEMP, "stable", "1986c2284946"), BB_S, fork=True),
    pr_build(C + "pullrequest-updated-bbsp-webhook.json", "nfalco79/test-repos", 1,
             (NFALCO_C, "release/release-1", "f945c96c71d0"), (NFALCO_C, "master", "174561d625c9"),
             "Nikolas Falco"),
    pr_build(C + "pullrequest-updated-bppr.json", "some-repo-namespace/some-repo", 198,
             (BPPR_C, "feature/do-not-merge", "123db174babc"), (BPPR_C, "develop", "a421e461dabd"),
             "me display name", reason="#198 was updated"),
    pr_build(C + "pullrequest-updated-goscm.json", "brydzewski/foo", 1,
             (FOO, "develop", "0704fc5beccc"), (FOO, "master", "7d1a175411ef"), BC_S),
    # --- Bitbucket Cloud: pull requests merged or declined -> cancel
    cancel(C + "pullrequest-fulfilled-bbsp.json", "cloudbeers/temp", 2, "pull request #2 was merged"),
    cancel(C + "pullrequest-fulfilled-bppr.json", "some-repo-namespace/some-repo", 198, "#198 was merged"),
    cancel(C + "pullrequest-fulfilled-goplayground.json", "team_name/repo_name", 1, "#1 was merged"),
    cancel(C + "pullrequest-fulfilled-goscm.json", "brydzewski/foo", 1, "#1 was merged"),
    cancel(C + "pullrequest-rejected-bbsp-webhook.json", "amuniz/test-repos", 735,
           "pull request #735 was declined"),
    cancel(C + "pullrequest-rejected-bbsp.json", "cloudbeers/temp", 3, "#3 was declined"),
    cancel(C + "pullrequest-rejected-bppr.json", "some-repo-namespace/some-repo", 198, "#198 was declined"),
    cancel(C + "pullrequest-rejected-goscm.json", "brydzewski/foo", 2, "#2 was declined"),
    # --- Bitbucket Cloud: what our own status reports cause -> ignored
    ignored(C + "repo-commit-status-created-goscm.json", "repo:commit_status_created"),
    ignored(C + "repo-commit-status-updated-goscm.json", "repo:commit_status_updated"),
    # --- Bitbucket Cloud: pushes (branch builds on for every repository in OPTIONS)
    ignored(C + "repo-push-bbsp-annotated-tag-created.json", TAGS),
    push_build(C + "repo-push-bbsp-branch-create.json", "cloudbeers/temp",
               (TEMP, "main", "501bf5b99365d1d870882254b9360c17172bda0e"), BB_S),
    push_build(C + "repo-push-bbsp-branch-created.json", "amuniz/test-repos",
               (AMUNIZ_C, "feature/test", "174561d625c9623b60d8aba09b7f08ddc9df45cd"), "Nikolas Falco"),
    ignored(C + "repo-push-bbsp-branch-deleted.json", "the push only deletes branch feature/test"),
    push_build(C + "repo-push-bbsp-commit-created.json", "amuniz/test-repos",
               (AMUNIZ_C, "feature/issue-819", "5ecffa3874e96920f24a2b3c0d0038e47d5cd1a4"), "Nikolas Falco"),
    ignored(C + "repo-push-bbsp-empty.json", NOTHING),
    # main, then new branch manchu, then tag v0.1: the last branch change wins.
    push_build(C + "repo-push-bbsp-multiple-changes.json", "cloudbeers/temp",
               (TEMP, "manchu", "e22fcb49645b4586a845938afac5eb3ac1950586"), BB_S),
    ignored(C + "repo-push-bbsp-new-tag.json", TAGS),
    push_build(C + "repo-push-bbsp-signed.json", "nfalco79/test-repos",
               (NFALCO_C, "feature/webhook", "d7f300a32270053bdfd97a6d64113f58202c33e7"), "Nikolas Falco"),
    ignored(C + "repo-push-bbsp-tag-created.json", TAGS),
    ignored(C + "repo-push-bbsp-tag-deleted.json", "the push only deletes tag test"),
    push_build(C + "repo-push-bbsp-update.json", "cloudbeers/temp",
               (TEMP, "main", "e42fac24456e4a56f1b7f9358afc3070e3b7ddec"), BB_S),
    # Its `old.target.hash` is not hex, but only the new commit matters.
    push_build(C + "repo-push-bppr.json", "some-repository/some-repo",
               ("https://bitbucket.org/some-repository/some-repo.git", "feature/do-not-merge",
                "09c4367c5bdbef7d7a28ba4cc2638488c2088d6b"), "me van me display name"),
    push_build(C + "repo-push-goplayground.json", "team_name/repo_name",
               (TEMPLATE, "name-of-branch", "709d658dc5b6d6afcd46049c2f332ee3f515a67d"), "Emma"),
    push_build(C + "repo-push-goscm-branch-create.json", "brydzewski/foo",
               (FOO, "develop", "141977fedf5cf35aa290ac87d4b5177ac4cd9de1"), BC_S),
    ignored(C + "repo-push-goscm-branch-delete.json", "the push only deletes branch develop"),
    ignored(C + "repo-push-goscm-tag-create.json", "tags are not built (the push changed tag feature/x)"),
    ignored(C + "repo-push-goscm-tag-delete.json", "the push only deletes tag feature/x"),
    push_build(C + "repo-push-goscm.json", "brydzewski/foo",
               (FOO, "master", "141977fedf5cf35aa290ac87d4b5177ac4cd9de1"), BC_S),
    # --- Bitbucket Server: the connection test
    Row(S + "diagnostics-ping-bbsp.json", Action.ping, "Bitbucket Server connection test"),
    # --- Bitbucket Server: mirrors and comments -> ignored, naming the event
    ignored(S + "mirror-repo-synchronized-bbsp-ref-limit-exceeded.json", "mirror:repo_synchronized"),
    ignored(S + "mirror-repo-synchronized-bbsp.json", "mirror:repo_synchronized"),
    ignored(S + "repo-comment-added-gwt-signed.json", "repo:comment:added"),
    # --- Bitbucket Server: declined, deleted, merged -> cancel (the repository is toRef's)
    cancel(S + "pr-declined-bppr.json", "PPRPLUG/hellophp", 7, "pull request #7 was declined"),
    cancel(S + "pr-declined-goplayground.json", "~gopher/webhook-test", 2, "#2 was declined"),
    cancel(S + "pr-declined-goscm-iso-dates.json", "PRJ/my-repo", 2, "#2 was declined"),
    cancel(S + "pr-declined-goscm.json", "PRJ/my-repo", 2, "#2 was declined"),
    cancel(S + "pr-deleted-bbsp.json", "AMUNIZ/test-repos", 1, "#1 was deleted"),
    cancel(S + "pr-deleted-goplayground.json", "~gopher/webhook-test", 2, "#2 was deleted"),
    # eventKey pr:deleted while pullRequest.state says DECLINED: the event key decides.
    cancel(S + "pr-deleted-goscm.json", "PRJ/my-repo", 2, "pull request #2 was deleted"),
    cancel(S + "pr-deleted-jxgoscm.json", "PRJ/my-repo", 2, "#2 was deleted"),
    cancel(S + "pr-merged-bppr.json", "ABC/some-repo-slug", 61, "pull request #61 was merged"),
    cancel(S + "pr-merged-goplayground.json", "~gopher/webhook-test", 5, "#5 was merged"),
    cancel(S + "pr-merged-goscm-iso-dates.json", "PRJ/my-repo", 3, "#3 was merged"),
    cancel(S + "pr-merged-goscm.json", "PRJ/my-repo", 3, "#3 was merged"),
    # --- Bitbucket Server: new source commits -> build
    # latestCommit has 39 hex digits here (hand-made test data); the Revision pattern accepts 7 to 40.
    pr_build(S + "pr-from-ref-updated-bppr.json", "ABC/some-repo", 1,
             (BPPR_S, "develop", "522764f1602ae7d4abcd18197827cafdb3aef11"),
             (BPPR_S, "master", "522764f1602ae7d4abcd18197827cafdb3aef11"), "me display name",
             reason="pull request #1 has new commits"),
    pr_build(S + "pr-from-ref-updated-goscm.json", "PRJ/my-repo", 2,
             (PRJ_LINK, "feature-2", "c00d0f269a9844dd168f72f6a9d78a9cff49a318"),
             (PRJ_LINK, "master", "823b2230a56056231c9425d63758fa87078a66b4"), "Jane Citizen"),
    pr_build(S + "pr-from-ref-updated-jxgoscm.json", "PRJ/my-repo", 2,
             (PRJ_BASE, "develop", "208b0a5c05eddadad01f2aed8802fe0c3b3eaf5e"),
             (PRJ_BASE, "master", "823b2230a56056231c9425d63758fa87078a66b4"), "Jane Citizen"),
    # --- Bitbucket Server: pr:modified builds only when the target branch changed
    ignored(S + "pr-modified-bppr.json", "its target did not"),
    ignored(S + "pr-modified-goplayground.json", "its target did not"),
    ignored(S + "pr-modified-goscm-meta.json", "the pull request's title or description changed"),
    pr_build(S + "pr-modified-goscm-toref.json", "PRJ/my-repo", 2,
             (PRJ_LINK, "feature-2", "c00d0f269a9844dd168f72f6a9d78a9cff49a318"),
             (PRJ_LINK, "master", "0667def9e377a8fa76ce67b6d4e53e21b246f030"), "Jane Citizen",
             reason="pull request #2 now targets master instead of wrong"),
    ignored(S + "pr-modified-jxgoscm.json", "its target did not"),
    # --- Bitbucket Server: pull requests opened -> build
    pr_build(S + "pr-opened-bbsp-from-tag.json", "AMUNIZ/test-repos", 1,
             ("http://localhost:7990/bitbucket/scm/AMUNIZ/test-repos.git", "v1.0",
              "f0d122cd8b8bc393eb1953f4127a4addeae8fe97"),
             ("http://localhost:7990/bitbucket/scm/AMUNIZ/test-repos.git", "master",
              "ff55824c164c4c785810cb49f7aa44d8d68789e3"), "amuniz", reason="pull request #1 was opened"),
    pr_build(S + "pr-opened-bbsp.json", "AMUNIZ/test-repos", 1,
             (AMUNIZ_S, "feature/diffstat", "251fce291f086cdde68ae2a896148abb5b58033e"),
             (AMUNIZ_S, "master", "174561d625c9623b60d8aba09b7f08ddc9df45cd"), "Administrator"),
    # No links.clone: the clone URL comes from server_base_url (see also test_server_clone_url_*).
    pr_build(S + "pr-opened-bppr-no-clone-property.json", "ABC/some-repo-slug", 61,
             (f"{BASE}/scm/abc/some-repo-slug.git", "develop", "2a3416062a594c4a89d3459aef11b10a25e4d28a"),
             (f"{BASE}/scm/abc/some-repo-slug.git", "master", "04051a3ea93c401264e4c0a288e75f544e4c8aa0"),
             "me display name"),
    pr_build(S + "pr-opened-bppr.json", "ABC/some-repo-slug", 61,
             (BPPR_S, "develop", "2a3416062a594c4a89d3459aef11b10a25e4d28a"),
             (BPPR_S, "master", "04051a3ea93c401264e4c0a288e75f544e4c8aa0"), "me display name"),
    pr_build(S + "pr-opened-goplayground.json", "~gopher/webhook-test", 5,
             (GOPHER, "feature/wip", "32a0b8a740c2963c6f56bd8baf3dc05683d299e0"),
             (GOPHER, "master", "cde6c45a4210afe81638aa1f3aa960d633c66a90"), "Foo Bar"),
    pr_build(S + "pr-opened-goscm-iso-dates.json", "PRJ/my-repo", 2,
             (PRJ_BASE, "develop", "208b0a5c05eddadad01f2aed8802fe0c3b3eaf5e"),
             (PRJ_BASE, "master", "823b2230a56056231c9425d63758fa87078a66b4"), "Jane Citizen"),
    pr_build(S + "pr-opened-goscm.json", "PRJ/my-repo", 2,
             (PRJ_BASE, "develop", "208b0a5c05eddadad01f2aed8802fe0c3b3eaf5e"),
             (PRJ_BASE, "master", "823b2230a56056231c9425d63758fa87078a66b4"), "Jane Citizen"),
    # --- Bitbucket Server: repo:refs_changed (branch builds on for every repository in OPTIONS)
    ignored(S + "repo-refs-changed-bbsp-annotated-tag-created.json", TAGS),
    ignored(S + "repo-refs-changed-bbsp-branch-deleted.json", "the push only deletes branch feature/BB-1"),
    ignored(S + "repo-refs-changed-bbsp-empty.json", NOTHING),
    push_build(S + "repo-refs-changed-bbsp-push-v10.json", "AMUNIZ/test-repos",
               (AMUNIZ_S, "feature/BB-1", "fb522a6f08c7c7df337312e4e65ec1b57710672e"), "Administrator"),
    push_build(S + "repo-refs-changed-bbsp-push.json", "AMUNIZ/test-repos",
               (AMUNIZ_S_ROOT, "main", "9fdd7b96d3f5c276d0b9e0bf38c879eb112d889a"), "Antonio Muniz"),
    ignored(S + "repo-refs-changed-bbsp-signed.json", "the push only deletes branch feature/BB-1"),
    ignored(S + "repo-refs-changed-bbsp-tag-created.json",
            "tags are not built (the push changed tag simple-tag)"),
    ignored(S + "repo-refs-changed-bbsp-tag-deleted.json", "the push only deletes tag simple-tag"),
    # toHash has 41 hex digits (hand-made test data): no git commit id is that long.
    error(S + "repo-refs-changed-bppr.json", 'changes[0].toHash must be a commit id (7 to 40 lowercase hex '
          'digits), not "2857aa1131679a1c46d79a1097ebab06a6d6291a3"'),
    ignored(S + "repo-refs-changed-goplayground.json", "the push only deletes branch feature/wip"),
    push_build(S + "repo-refs-changed-goscm-branch-create.json", "PRJ/my-repo",
               (PRJ_BASE, "develop", "208b0a5c05eddadad01f2aed8802fe0c3b3eaf5e"), "Jane Citizen"),
    ignored(S + "repo-refs-changed-goscm-branch-delete.json", "the push only deletes branch develop"),
    ignored(S + "repo-refs-changed-goscm-tag-create.json",
            "tags are not built (the push changed tag v1.1.0)"),
    ignored(S + "repo-refs-changed-goscm-tag-delete.json", "the push only deletes tag v1.1.0"),
    push_build(S + "repo-refs-changed-goscm-v5.json", "ISCLOUD/transamerica.cloud.individual.tftest",
               (f"{BASE}/scm/iscloud/transamerica.cloud.individual.tftest.git",
                "trangineni/devtfvars-1685475548410", "51a33664b6d7fb5aa15063064eb230362cd02e9e"),
               "Rangineni, Tanuja"),
    push_build(S + "repo-refs-changed-goscm.json", "PRJ/my-repo",
               (PRJ_BASE, "master", "823b2230a56056231c9425d63758fa87078a66b4"), "Jane Citizen"),
    # --- Third-party "Post Webhooks for Bitbucket" add-on: not a native webhook -> ignored
    ignored(S + "post-webhooks-plugin/commit-update-bbsp.json", ADDON),
    ignored(S + "post-webhooks-plugin/pullrequest-created-bbsp.json", ADDON),
    ignored(S + "post-webhooks-plugin/pullrequest-merged-bbsp.json", ADDON),
    ignored(S + "post-webhooks-plugin/pullrequest-updated-bbsp.json", ADDON),
]  # fmt: skip

# Cloud files without a .headers.json: the event key follows from the file name.
CLOUD_KEYS = {
    "pullrequest-created-": "pullrequest:created",
    "pullrequest-updated-": "pullrequest:updated",
    "pullrequest-fulfilled-": "pullrequest:fulfilled",
    "pullrequest-rejected-": "pullrequest:rejected",
    "repo-commit-status-created-": "repo:commit_status_created",
    "repo-commit-status-updated-": "repo:commit_status_updated",
    "repo-push-": "repo:push",
}
# The add-on sends Cloud-style keys and `X-Bitbucket-Type: server` (PROVENANCE.md).
ADDON_KEYS = {
    "commit-update-": "repo:push",
    "pullrequest-created-": "pullrequest:created",
    "pullrequest-merged-": "pullrequest:fulfilled",
    "pullrequest-updated-": "pullrequest:updated",
}


def load(file: str) -> Any:
    return json.loads((SHARED_FIXTURES / file).read_bytes())


def key_from_name(name: str, keys: dict[str, str]) -> str:
    return next(key for prefix, key in keys.items() if name.startswith(prefix))


def headers_for(file: str) -> dict[str, str]:
    """The fixture's .headers.json (names lowercased, as the receiver passes them), else realistic ones."""
    path = SHARED_FIXTURES / file
    sidecar = path.with_name(path.name.removesuffix(".json") + ".headers.json")
    if sidecar.exists():
        return {name.lower(): value for name, value in json.loads(sidecar.read_bytes()).items()}
    delivery = str(uuid.uuid5(uuid.NAMESPACE_URL, file))
    if "/post-webhooks-plugin/" in file:
        return {"x-event-key": key_from_name(path.name, ADDON_KEYS), "x-bitbucket-type": "server"}
    if file.startswith(C):
        return {"x-event-key": key_from_name(path.name, CLOUD_KEYS), "x-request-uuid": delivery}
    return {"x-event-key": load(file)["eventKey"], "x-request-id": delivery}


def corpus_files() -> set[str]:
    return {
        str(path.relative_to(SHARED_FIXTURES))
        for folder in ("bitbucket-cloud", "bitbucket-server")
        for path in (SHARED_FIXTURES / folder).rglob("*.json")
        if not path.name.endswith(".headers.json") and "build-status" not in path.parts
    }


def decide(file: str, options: ParseOptions = OPTIONS) -> Decision:
    return bitbucket.parse(headers_for(file), load(file), options)


def test_every_fixture_has_exactly_one_row() -> None:
    files = [row.file for row in ROWS]
    assert len(files) == len(set(files))
    assert set(files) == corpus_files()


@pytest.mark.parametrize("row", ROWS, ids=[row.file for row in ROWS])
def test_corpus(row: Row) -> None:
    headers = headers_for(row.file)
    if row.action is None:
        with pytest.raises(PayloadError) as caught:
            decide(row.file)
        assert row.reason in str(caught.value)
        return
    decision = decide(row.file)
    assert (decision.action, decision.provider) == (row.action, row.provider)
    assert row.reason in decision.reason
    assert decision.event == headers["x-event-key"]
    assert decision.delivery_id == headers.get(
        "x-request-uuid" if row.provider.endswith("cloud") else "x-request-id"
    )
    assert (decision.repo, decision.pull_request) == (row.repo, row.pr)
    if row.action is not Action.build:
        assert decision.request is None
        return
    request = decision.request
    assert request is not None
    assert (request.repo, request.pull_request, request.fork, request.triggered_by) == (
        row.repo,
        row.pr,
        row.fork,
        row.by,
    )
    assert row.source is not None
    assert (request.source.clone_url, request.source.ref, request.source.commit) == row.source
    target = request.target
    assert (None if target is None else (target.clone_url, target.ref, target.commit)) == row.target
    job = f"{row.repo}-pr{row.pr}" if row.pr else f"{row.repo}-{row.source[1]}"
    assert request.job == job
    assert (request.provider, request.event, request.delivery_id) == (
        row.provider,
        decision.event,
        decision.delivery_id,
    )


PUSH_BUILDS = [row for row in ROWS if row.action is Action.build and row.pr is None]


@pytest.mark.parametrize("row", PUSH_BUILDS, ids=[row.file for row in PUSH_BUILDS])
def test_push_without_branch_builds_is_ignored(row: Row) -> None:
    decision = decide(row.file, NO_BRANCH_BUILDS)
    assert decision.action is Action.ignored
    assert (
        decision.reason
        == f"branch builds are off for {row.repo}; list it in PODCI_BRANCH_BUILDS to build pushes"
    )


def test_branch_builds_follow_the_repository_patterns() -> None:
    only_temp = ParseOptions(branch_builds=("cloudbeers/*",), clone_hosts=ANY_HOST)
    assert decide(C + "repo-push-bbsp-update.json", only_temp).action is Action.build
    assert decide(C + "repo-push-goscm.json", only_temp).action is Action.ignored
    # The bad toHash is never looked at when the push is not built.
    assert decide(S + "repo-refs-changed-bppr.json", NO_BRANCH_BUILDS).action is Action.ignored


def test_server_clone_url_from_the_browse_link_when_no_base_url() -> None:
    decision = decide(S + "pr-opened-bppr-no-clone-property.json", ParseOptions(clone_hosts=ANY_HOST))
    assert decision.request is not None
    # links.self is http://example.org/projects/ABC/repos/some-repo/browse (its slug differs from `slug`).
    assert decision.request.source.clone_url == "http://example.org/scm/abc/some-repo.git"


def test_server_clone_url_of_a_personal_repository_from_its_browse_link() -> None:
    body = load(S + "pr-opened-goplayground.json")
    for side in ("fromRef", "toRef"):
        del body["pullRequest"][side]["repository"]["links"]["clone"]
    decision = bitbucket.parse({"x-event-key": "pr:opened"}, body, ParseOptions(clone_hosts=ANY_HOST))
    assert decision.request is not None and decision.request.target is not None
    assert decision.request.target.clone_url == "https://server.bitbucket.local/scm/~gopher/webhook-test.git"


def test_server_without_any_link_asks_for_the_base_url() -> None:
    with pytest.raises(
        PayloadError, match=r"pullRequest\.fromRef\.repository has no clone link.*PODCI_BITBUCKET_SERVER_URL"
    ):
        decide(S + "pr-opened-goscm.json", ParseOptions(clone_hosts=ANY_HOST))


def test_server_ref_without_display_id_falls_back_to_the_id() -> None:
    body = load(S + "pr-opened-bbsp-from-tag.json")
    del body["pullRequest"]["fromRef"]["displayId"], body["pullRequest"]["toRef"]["displayId"]
    request = bitbucket.parse({"x-event-key": "pr:opened"}, body, OPTIONS).request
    assert request is not None and request.target is not None
    assert (request.source.ref, request.target.ref) == ("v1.0", "master")


ADDON_FILES = sorted(row.file for row in ROWS if "/post-webhooks-plugin/" in row.file)


@pytest.mark.parametrize("file", ADDON_FILES)
@pytest.mark.parametrize(
    "extra", [{"x-bitbucket-type": "server"}, {}, {"x-request-uuid": "u"}, {"x-request-id": "r"}]
)
def test_post_webhooks_addon_is_never_mistaken_for_a_native_webhook(file: str, extra: dict[str, str]) -> None:
    headers = {"x-event-key": key_from_name(Path(file).name, ADDON_KEYS), **extra}
    decision = bitbucket.parse(headers, load(file), OPTIONS)
    assert decision.action is Action.ignored
    assert ADDON in decision.reason


@pytest.mark.parametrize("file", ADDON_FILES)
def test_post_webhooks_addon_straight_into_the_cloud_parser_is_a_payload_error(file: str) -> None:
    headers = {"x-event-key": key_from_name(Path(file).name, ADDON_KEYS)}
    with pytest.raises(PayloadError):
        bitbucket_cloud.parse(headers, load(file), OPTIONS)


# --- Telling Cloud from Server, and requests that are not Bitbucket webhooks at all


@pytest.mark.parametrize(
    ("headers", "body", "provider", "event"),
    [({"x-event-key": "repo:comment:added", "x-request-id": "r"}, {}, "bitbucket-server",
      "repo:comment:added"),
     ({"x-event-key": "repo:comment:added", "x-request-uuid": "u"}, {}, "bitbucket-cloud",
      "repo:comment:added"),
     ({"x-event-key": "repo:comment:added"}, {"eventKey": "repo:comment:added"}, "bitbucket-server",
      "repo:comment:added"),
     ({"x-event-key": "pr:comment:edited"}, {}, "bitbucket-server", "pr:comment:edited"),
     ({"x-event-key": "mirror:repo_synchronized"}, {}, "bitbucket-server", "mirror:repo_synchronized"),
     ({"x-event-key": "repo:fork"}, {}, "bitbucket-cloud", "repo:fork"),
     ({"x-event-key": "issue:created"}, {}, "bitbucket-cloud", "issue:created"),
     ({"X-Event-Key": "repo:fork", "X-Request-Id": "r"}, {}, "bitbucket-server", "repo:fork"),
     ({}, {"eventKey": "pr:reviewer:approved"}, "bitbucket-server", "pr:reviewer:approved")],
)  # fmt: skip
def test_cloud_or_server(headers: dict[str, str], body: Any, provider: str, event: str) -> None:
    decision = bitbucket.parse(headers, body, OPTIONS)
    assert (decision.action, decision.provider, decision.event) == (Action.ignored, provider, event)
    assert f"event {event} does not start or stop builds" in decision.reason


def test_ping_without_request_id() -> None:
    decision = bitbucket.parse(
        {"x-event-key": "diagnostics:ping"}, {"test": True}, ParseOptions(clone_hosts=ANY_HOST)
    )
    assert (decision.action, decision.provider, decision.reason) == (
        Action.ping, "bitbucket-server", "Bitbucket Server connection test")  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "body"),
    [({}, {}), ({}, []), ({}, None), ({"x-request-uuid": "u"}, {"pullrequest": {}}),
     ({"x-event-key": ""}, {"eventKey": 7}), ({"content-type": "application/json"}, "text")],
)  # fmt: skip
def test_not_a_bitbucket_webhook(headers: dict[str, str], body: Any) -> None:
    with pytest.raises(PayloadError) as caught:
        bitbucket.parse(headers, body, OPTIONS)
    assert str(caught.value) == NO_EVENT_KEY


# --- Malformed bodies: always a PayloadError that names the field

DELETE = object()


def changed(file: str, path: str, value: Any) -> Any:
    """A copy of a fixture with the dotted `path` (list indexes as numbers) replaced or deleted."""
    body = load(file)
    *parents, last = path.split(".")
    node = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return body


PR_C, PUSH_C = C + "pullrequest-created-goscm.json", C + "repo-push-goscm.json"
PR_S, PUSH_S = S + "pr-opened-goplayground.json", S + "repo-refs-changed-goscm.json"

MALFORMED = [
    # (fixture, path, new value or DELETE, a part of the error message)
    (PR_C, "pullrequest", DELETE, "pullrequest is missing"),
    (PR_C, "pullrequest", [], "pullrequest must be a JSON object, not an array"),
    (PR_C, "pullrequest.id", "abc", 'pullrequest.id must be an integer, not "abc"'),
    (PR_C, "pullrequest.id", True, "pullrequest.id must be an integer, not true"),
    (PR_C, "pullrequest.id", 1.5, "pullrequest.id must be an integer, not 1.5"),
    (PR_C, "pullrequest.id", 0, "pullrequest.id must be a positive integer, not 0"),
    (PR_C, "pullrequest.source.commit.hash", DELETE, "pullrequest.source.commit.hash is missing"),
    (PR_C, "pullrequest.source.commit.hash", None, "pullrequest.source.commit.hash is null"),
    (PR_C, "pullrequest.source.commit.hash", 123, "pullrequest.source.commit.hash must be a string, not 123"),
    (PR_C, "pullrequest.source.commit.hash", "HEAD", 'pullrequest.source.commit.hash must be a commit id'),
    (PR_C, "pullrequest.source.commit.hash", "abc1234\n",
     "pullrequest.source.commit.hash must be a commit id"),
    (PR_C, "pullrequest.source.commit", None, "pullrequest.source.commit is null"),
    (PR_C, "pullrequest.source.branch.name", "--upload-pack=evil",
     'pullrequest.source.branch.name is not a usable git ref name: "--upload-pack=evil"'),
    (PR_C, "pullrequest.destination.branch.name", "a..b",
     "pullrequest.destination.branch.name is not a usable git ref name"),
    (PR_C, "pullrequest.destination", "master",
     'pullrequest.destination must be a JSON object, not "master"'),
    (PR_C, "pullrequest.destination.repository.full_name", DELETE,
     "pullrequest.destination.repository.full_name is missing"),
    (PR_C, "pullrequest.source.repository.full_name", 7,
     "pullrequest.source.repository.full_name must be a string, not 7"),
    (PR_C, "pullrequest.source.repository.links.html.href", "-uevil",
     "pullrequest.source.repository.links.html.href does not give a usable clone URL"),
    (PR_C, "actor.display_name", 5, "actor.display_name must be a string, not 5"),
    (C + "pullrequest-fulfilled-goscm.json", "pullrequest.id", "7",
     'pullrequest.id must be an integer, not "7"'),
    (C + "pullrequest-rejected-goscm.json", "pullrequest.destination", DELETE,
     "pullrequest.destination is missing"),
    (PUSH_C, "push", DELETE, "push is missing"),
    (PUSH_C, "push.changes", {}, "push.changes must be an array, not an object"),
    (PUSH_C, "push.changes.0", "x", 'push.changes[0] must be a JSON object, not "x"'),
    (PUSH_C, "push.changes.0.new.type", None, "push.changes[0].new.type is null"),
    (PUSH_C, "push.changes.0.new.target.hash", DELETE, "push.changes[0].new.target.hash is missing"),
    (PUSH_C, "push.changes.0.new.name", "bad ref", "push.changes[0].new.name is not a usable git ref name"),
    (PUSH_C, "repository.full_name", 42, "repository.full_name must be a string, not 42"),
    (PR_S, "pullRequest", [], "pullRequest must be a JSON object, not an array"),
    (PR_S, "pullRequest.id", "abc", 'pullRequest.id must be an integer, not "abc"'),
    (PR_S, "pullRequest.toRef.repository.project", DELETE, "pullRequest.toRef.repository.project is missing"),
    (PR_S, "pullRequest.fromRef.latestCommit", 5, "pullRequest.fromRef.latestCommit must be a string, not 5"),
    (PR_S, "pullRequest.fromRef.latestCommit", "HEAD",
     'pullRequest.fromRef.latestCommit must be a commit id (7 to 40 lowercase hex digits), not "HEAD"'),
    (PR_S, "pullRequest.fromRef.displayId", "bad ref",
     'pullRequest.fromRef.displayId is not a usable git ref name: "bad ref"'),
    (PR_S, "pullRequest.toRef.repository.links.clone", "x",
     'pullRequest.toRef.repository.links.clone must be an array, not "x"'),
    (PR_S, "pullRequest.toRef.repository.links.clone.1.href", None,
     "pullRequest.toRef.repository.links.clone[1].href is null"),
    (S + "pr-merged-goscm.json", "pullRequest", DELETE, "pullRequest is missing"),
    (S + "pr-declined-goscm.json", "pullRequest.toRef.repository.slug", None,
     "pullRequest.toRef.repository.slug is null"),
    (S + "pr-modified-goscm-toref.json", "previousTarget", "wrong",
     'previousTarget must be a JSON object, not "wrong"'),
    (PUSH_S, "changes", None, "changes is null"),
    (PUSH_S, "changes.0.ref", "refs/heads/master",
     'changes[0].ref must be a JSON object, not "refs/heads/master"'),
    (PUSH_S, "changes.0.toHash", None, "changes[0].toHash is null"),
    (PUSH_S, "repository.slug", ["x"], "repository.slug must be a string, not an array"),
]  # fmt: skip


@pytest.mark.parametrize(("file", "path", "value", "message"), MALFORMED, ids=[m[3] for m in MALFORMED])
def test_malformed_body_names_the_field(file: str, path: str, value: Any, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        bitbucket.parse(headers_for(file), changed(file, path, value), OPTIONS)
    assert message in str(caught.value)


@pytest.mark.parametrize("file", [PR_C, PUSH_C, PR_S, PUSH_S])
@pytest.mark.parametrize("body", [[], "text", None, 7, ["x"]])
def test_body_that_is_not_an_object(file: str, body: Any) -> None:
    with pytest.raises(PayloadError, match=r"^the request body must be a JSON object, not "):
        bitbucket.parse(headers_for(file), body, OPTIONS)


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, child in children:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


@pytest.mark.parametrize("file", sorted(row.file for row in ROWS))
def test_no_damage_to_a_fixture_escapes_as_another_exception(file: str) -> None:
    """Replace each value (and drop each key) in turn: the answer is a Decision or a PayloadError."""
    headers, body = headers_for(file), load(file)
    for path in list(_paths(body)):
        parent = body
        for part in path[:-1]:
            parent = parent[part]
        last, original = path[-1], parent[path[-1]]
        for replacement in (None, 7, "x", [], {}, DELETE):
            if replacement is DELETE and isinstance(parent, dict):
                del parent[last]
            elif replacement is not DELETE:
                parent[last] = replacement
            try:
                bitbucket.parse(headers, body, OPTIONS)
            except PayloadError:
                pass
            parent[last] = original
    assert body == load(file)
