"""Names, labels and the fixed scripts shared by the Kubernetes objects, the backend and the tests.

The scripts are constants: user-controlled values (branch names, clone URLs, the test command) reach
them only as environment variables or positional parameters, always quoted, never as script text.
"""

from __future__ import annotations

from workers.gitops import MERGE_REF  # the one ref of the bundle: the merge commit the build tests

MANAGED_BY = "app.kubernetes.io/managed-by"
BUILD_LABEL = "podci.io/build"
JOB_LABEL = "podci.io/job"
ATTEMPT_LABEL = "podci.io/attempt"
SELECTOR = f"{MANAGED_BY}=podci"

WORKSPACE_VOLUME = "podci-workspace"
CHECKOUT_CONTAINER = "podci-checkout"  # init container: puts the merged code onto the volume
AGENT_CONTAINER = "podci-agent"  # sidecar: ready when setup is complete, exits when the tests have
CLEANUP_CONTAINER = "podci-cleanup"  # the one container of the pod that empties a static workspace
STATE_DIR = ".podci"  # inside the workspace; each pod keeps its own `.podci/<pod name>/` (HOSTNAME)
EXIT_MARK = "PODCI-EXIT"  # the agent's last log line: `PODCI-EXIT <code>`
BUNDLE = f"{STATE_DIR}/code.bundle"  # where the worker's git bundle lands in the workspace

# The checkout init container, when the worker delivers the code (PODCI_KUBE_CODE_DELIVERY=bundle).
# Env: PODCI_WORKSPACE, MERGE_COMMIT, CODE_WAIT (seconds). It waits for the bundle the worker streams
# in over exec (RECEIVE_SCRIPT), then checks the merge commit out of it: the pod never contacts the git
# host. Safe to run again: a relaunched pod finds the volume checked out already. It runs as podci's own
# non-root user: what it writes is group-writable (umask 002), for the pod's other users in the
# workspace's group (fsGroup), and git accepts a workspace owned by another user (`safe.directory`).
CHECKOUT_SCRIPT = f"""set -eu
umask 002
cd "$PODCI_WORKSPACE"
if [ -e {STATE_DIR}/checkout.done ]; then exit 0; fi
mkdir -p {STATE_DIR}
waited=0
while [ ! -e {BUNDLE} ]; do
  if [ "$waited" -ge "$CODE_WAIT" ]; then
    echo "fatal: the code did not arrive from the podci worker within $CODE_WAIT s" >&2; exit 1
  fi
  sleep 1; waited=$((waited + 1))
done
git -c safe.directory='*' init -q .
git -c safe.directory='*' fetch -q --no-tags {BUNDLE} "+{MERGE_REF}:{MERGE_REF}"
git -c safe.directory='*' checkout -q --detach "$MERGE_COMMIT"
rm -f {BUNDLE}
touch {STATE_DIR}/checkout.done
"""

# exec'd in the checkout container while it waits: `sh -c RECEIVE_SCRIPT podci-receive <bytes> <path>`,
# the bundle on stdin. It reads exactly <bytes> (no end-of-input is needed from the exec stream) and
# moves its own file into place only when all arrived, so the checkout never reads half a bundle (and
# two deliveries at once each write their own file).
RECEIVE_SCRIPT = """set -eu
umask 002
mkdir -p "$(dirname "$2")"
part="$2.$$.part"
head -c "$1" > "$part"
got=$(wc -c < "$part")
if [ "$got" -ne "$1" ]; then
  rm -f "$part"; echo "fatal: received $got of $1 bytes of the code" >&2; exit 1
fi
mv "$part" "$2"
"""

# The checkout init container when the pod fetches the code itself (PODCI_KUBE_CODE_DELIVERY=clone,
# for repositories too large to stream). Env: PODCI_WORKSPACE, SOURCE_URL, SOURCE_REF, SOURCE_COMMIT,
# TARGET_URL, TARGET_REF, TARGET_COMMIT, and GIT_CREDENTIALS (a git-credential-store file, when a
# Secret holds one). Re-does the merge the worker checked, pinned to the same commits.
CLONE_SCRIPT = f"""set -eu
umask 002
cd "$PODCI_WORKSPACE"
if [ -e {STATE_DIR}/checkout.done ]; then exit 0; fi
set -- -c safe.directory='*' -c user.name=podci -c user.email=podci@localhost
if [ -n "${{GIT_CREDENTIALS:-}}" ]; then set -- "$@" -c credential.helper="store --file=$GIT_CREDENTIALS"; fi
git "$@" init -q .
git "$@" fetch -q --no-tags -- "$SOURCE_URL" "+$SOURCE_REF:refs/podci/source"
if [ -n "$TARGET_REF" ]; then
  git "$@" fetch -q --no-tags -- "$TARGET_URL" "+$TARGET_REF:refs/podci/target"
  git "$@" checkout -q --detach "$TARGET_COMMIT"
  git "$@" merge -q --no-ff --no-edit "$SOURCE_COMMIT"
else
  git "$@" checkout -q --detach "$SOURCE_COMMIT"
fi
mkdir -p {STATE_DIR} && touch {STATE_DIR}/checkout.done
"""

# The cleanup pod's container: `sh -c CLEANUP_SCRIPT podci-cleanup <directory>`. Removes one build's
# workspace from a static volume (hostPath or NFS), which Kubernetes never deletes by itself.
CLEANUP_SCRIPT = """set -eu
rm -rf -- "$1"
if [ -e "$1" ]; then echo "fatal: $1 is still there" >&2; exit 1; fi
"""

# exec'd in the test container: `sh -c START_TESTS_SCRIPT podci-tests <workspace> <test argv...>`.
# Returns at once; the tests run detached and leave their exit code in .podci/<pod>/tests.exit. The
# state is per pod (HOSTNAME is the pod's name): a relaunched pod shares the volume with the lost one.
START_TESTS_SCRIPT = """cd "$1" && shift
d=".podci/${HOSTNAME:-pod}"
mkdir -p "$d"
if [ -e "$d/tests.started" ]; then exit 0; fi
touch "$d/tests.started"
( "$@" > "$d/tests.log" 2>&1; echo $? > "$d/tests.exit.tmp"
  mv "$d/tests.exit.tmp" "$d/tests.exit" ) < /dev/null > /dev/null 2>&1 &
"""

# The agent: `sh -c AGENT_SCRIPT podci-agent <workspace>`. Prints the test log as it grows (a worker
# follows the agent's log for the build page), then `PODCI-EXIT <code>` once the tests have ended, and
# exits: its termination is the watch event that wakes the build. The exit file is looked at before the
# last read, so whatever the tests wrote before it is printed; the log is printed whole, in order, once.
AGENT_SCRIPT = """cd "$1"
d=".podci/${HOSTNAME:-pod}"
printed=0
while :; do
  ended=0; if [ -e "$d/tests.exit" ]; then ended=1; fi
  size=0
  if [ -e "$d/tests.log" ]; then size=$(($(wc -c < "$d/tests.log") + 0)); fi
  if [ "$size" -gt "$printed" ]; then
    tail -c +$((printed + 1)) "$d/tests.log" | head -c $((size - printed))
    printed=$size
  fi
  if [ "$ended" = 1 ]; then break; fi
  sleep 1
done
echo "PODCI-EXIT $(cat "$d/tests.exit")"
"""


# The rerun of known-flaky failed tests: `sh -c RERUN_SCRIPT podci-rerun <workspace> <argv...>`, in
# the test container, its output the exec's. The tests' names are arguments, never part of a script.
RERUN_SCRIPT = 'cd "$1" || exit 125; shift; exec "$@" 2>&1'
RERUN_NOT_RUN = 125  # the exit code of a rerun that could not start (the pod went, say)
