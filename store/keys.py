"""Every Redis key podci uses, in one place (as arq keeps its keys in one module).

A reader looking at `redis-cli --scan` output finds each key family here, with what it holds and who
writes it. Nothing else in the project spells a key: code asks this module for one. All keys start
with `podci:`; Celery's own keys (the queues `podci.steps` and `podci.new`, `unacked*`, `_kombu*`) are
the broker's and not listed.
"""

from __future__ import annotations

PREFIX = "podci"

# --- builds (store/builds.py) --------------------------------------------------------------------------
BUILDS = f"{PREFIX}:builds"  # zset: build id -> creation time (the builds list, newest first)
DUE = f"{PREFIX}:due"  # zset: build id -> when its next step should have run (the reconciler's work list)
REPORT_DUE = f"{PREFIX}:report-due"  # zset: completed builds whose final reports are not confirmed yet
TICKETS = f"{PREFIX}:queue-tickets"  # counter: the ticket of each marked message, in sending order
WAKES = f"{PREFIX}:wakes"  # list: build ids the local backend's watchers want woken


def build(build_id: str) -> str:
    """string: the build record as JSON, the single source of truth of one build."""
    return f"{PREFIX}:build:{build_id}"


def woken(build_id: str) -> str:
    """string: something the build waits for happened while it was not parked (a look was running);
    the look takes it before parking, so the wake-up is not lost."""
    return f"{PREFIX}:woken:{build_id}"


def parked(build_id: str) -> str:
    """string `step:seq`: the build is parked at that step with no message in flight. A wake-up takes
    it and sends the step, so however many wake-ups come, one message goes (see `BuildStore.wake`).
    A look whose answer rested on what its wake source signs adds ` sign until` (`wait_sign`)."""
    return f"{PREFIX}:parked:{build_id}"


def wait_sign(build_id: str) -> str:
    """string: what a waiting build's wake source last saw, as it signs it (the Kubernetes watch:
    `pod:digest` of the build's newest pod, `pod_state.sign_of`). While it equals the sign its parked
    look kept, a safety look would decide the same: `BuildStore.look_quietly`."""
    return f"{PREFIX}:wait-sign:{build_id}"


def job_number(provider: str, job: str) -> str:
    """counter: the last build number handed out for a job of one source (numbers never repeat)."""
    return f"{PREFIX}:job:{provider}:{job}:number"


def queued(build_id: str) -> str:
    """string `step:seq:ticket`: the build's message waits in a queue (cleared when a worker takes it)."""
    return f"{PREFIX}:queued:{build_id}"


def repo_queue(repo: str) -> str:
    """list: a repository's unfinished builds in arrival order (admission, `PODCI_REPO_CONCURRENCY`)."""
    return f"{PREFIX}:repo:{repo}:queue"


def pull_request(pr_key: str) -> str:
    """set: the builds of one pull request of one source (`bitbucket-cloud:team/webapp#12`), for
    superseding and cancelling."""
    return f"{PREFIX}:pr:{pr_key}"


def retry_dedupe(provider: str, build_id: str) -> str:
    """The dedupe key (`dedupe`) of the one retry of a build: a second retry of it, even at the same
    moment, answers the build the first one made."""
    return f"retry:{provider}:{build_id}"


def dedupe(key: str) -> str:
    """string: the build a delivery id or a pull request head already started, or what a delivery
    that started no build did (`cancel`), so a redelivery does it once (expires)."""
    return f"{PREFIX}:dedupe:{key}"


# --- live test logs (store/live.py) --------------------------------------------------------------------
LIVE_WANTED = f"{PREFIX}:live:wanted"  # set: builds whose running tests a worker should follow


def live_text(build_id: str) -> str:
    """string: the last part (at most `live.MAX_BYTES`) of the build's test output so far, masked."""
    return f"{PREFIX}:live:{build_id}"


def live_meta(build_id: str) -> str:
    """hash: `start` (where `live_text` begins in the whole output), `source` (the attempt followed),
    `raw` (bytes of that attempt's log taken so far: a follower resumes there), `ended` (an attempt
    followed to its end)."""
    return f"{PREFIX}:live-meta:{build_id}"


def live_claim(build_id: str) -> str:
    """lock: the worker following the build's test log (renewed while it follows)."""
    return f"{PREFIX}:lock:live:{build_id}"


# --- test history and flaky tests (store/flaky.py) ---------------------------------------------------
def test_runs(repo: str, test: str) -> str:
    """zset: one test's last outcomes in a repository, member `{run}:{p|f}` (`run`: the build id, or
    `{build}#rerun` for its rerun), score the build's creation time; the last `flaky.KEEP_RUNS` are kept."""
    return f"{PREFIX}:tests:{repo}:runs:{test}"


def test_builds(repo: str) -> str:
    """zset: the builds whose outcomes a repository's history holds, member `{build} {source} {merge}`
    (the commits, 12 characters each), score its creation time: what "the same commit" is judged by."""
    return f"{PREFIX}:tests:{repo}:builds"


def test_failures(repo: str) -> str:
    """zset: a repository's tests that failed lately, member the test's name, score its last failure:
    the only tests that can be flaky, so the flaky list reads these histories and no others."""
    return f"{PREFIX}:tests:{repo}:failed"


# --- reports (workers/notify.py) -----------------------------------------------------------------------
def report_lock(build_id: str, reporter: str) -> str:
    """lock: one post at a time per (build, reporter)."""
    return f"{PREFIX}:lock:notify:{build_id}:{reporter}"


def report_sending(build_id: str, reporter: str) -> str:
    """string: the state a post of (build, reporter) was sending when last tried. When the record does
    not say it was shown, that post's answer was lost: the next one asks the other end first."""
    return f"{PREFIX}:sending:{build_id}:{reporter}"


# --- metrics (store/metrics.py) ------------------------------------------------------------------------
METRICS = f"{PREFIX}:metrics"


def counter(name: str) -> str:
    """hash: label -> count."""
    return f"{METRICS}:c:{name}"


def histogram_labels(name: str) -> str:
    """set: the labels a histogram has seen."""
    return f"{METRICS}:h:{name}"


def histogram(name: str, label: str) -> str:
    """hash: bucket index -> count, plus `sum` and `count`."""
    return f"{METRICS}:h:{name}:{label}"


# --- the Kubernetes backend (workers/backends/kubernetes/) --------------------------------------------
K8S = f"{PREFIX}:k8s"
PODS_LIVE = f"{K8S}:pods-live"  # set: pods the watch cache holds as existing


def pod(name: str) -> str:
    """string: the pod's last JSON from the watch, or `gone` once deleted."""
    return f"{K8S}:pod:{name}"


def code_delivered(pod_name: str) -> str:
    """string `sending` | `sent`: the worker's code was streamed into the pod's checkout container."""
    return f"{K8S}:code-delivered:{pod_name}"


def tests_started(pod_name: str) -> str:
    """string `starting` | `started`: the exec that starts a pod's tests ran (once per pod)."""
    return f"{K8S}:tests-started:{pod_name}"


def agent_log(pod_name: str) -> str:
    """string: the agent container's log once read (the tests' output and exit code)."""
    return f"{K8S}:agent-log:{pod_name}"


def agent_log_claim(pod_name: str) -> str:
    """string: one look at a time reads the agent's log."""
    return f"{K8S}:agent-log-claim:{pod_name}"


def container_logs_saved(build_name: str) -> str:
    """string: the build's container logs were saved before teardown."""
    return f"{K8S}:logs:{build_name}"


def teardown_sent(build_name: str) -> str:
    """string: the deletes of the build's objects were sent (expires, so a killed worker's are re-sent)."""
    return f"{K8S}:teardown:{build_name}"


def teardown_pods(build_name: str) -> str:
    """set: the pods teardown deleted and waits to see gone."""
    return f"{K8S}:teardown-pods:{build_name}"


def teardown_node(build_name: str) -> str:
    """string: the node the build's pods ran on (where a hostPath workspace is)."""
    return f"{K8S}:teardown-node:{build_name}"


def workspace_removed(build_name: str) -> str:
    """string: the cleanup pod removed the build's directory from its static volume."""
    return f"{K8S}:workspace-removed:{build_name}"


def teardown_check(build_name: str) -> str:
    """string: one look at a time lists what is left of the build."""
    return f"{K8S}:teardown-check:{build_name}"


def teardown_done(build_name: str) -> str:
    """string: teardown's final detail, once nothing of the build is left."""
    return f"{K8S}:teardown-done:{build_name}"


def bounded_without_expiry(key: str) -> bool:
    """The keys that never expire, each bounded by something else: the builds index is trimmed by age
    on every create, the due lists, the live pods and the followed builds hold only what is
    unfinished, the ticket counter is one number, and the metrics are a handful of counters per
    label. Every other key of podci expires (PODCI_RETENTION_DAYS, or sooner)."""
    return key in (BUILDS, DUE, REPORT_DUE, TICKETS, PODS_LIVE, LIVE_WANTED) or key.startswith(f"{METRICS}:")
