"""Names, labels and the fixed scripts shared by the Kubernetes objects, the backend and the tests.

The scripts are constants: user-controlled values (branch names, clone URLs, the test command) reach
them only as environment variables or positional parameters, always quoted, never as script text.
"""

from __future__ import annotations

MANAGED_BY = "app.kubernetes.io/managed-by"
BUILD_LABEL = "podci.io/build"
JOB_LABEL = "podci.io/job"
ATTEMPT_LABEL = "podci.io/attempt"
SELECTOR = f"{MANAGED_BY}=podci"

WORKSPACE_VOLUME = "podci-workspace"
CHECKOUT_CONTAINER = "podci-checkout"  # init container: re-does the merge onto the volume
AGENT_CONTAINER = "podci-agent"  # sidecar: ready when setup is complete, exits when the tests have
STATE_DIR = ".podci"  # inside the workspace; each pod keeps its own `.podci/<pod name>/` (HOSTNAME)
EXIT_MARK = "PODCI-EXIT"  # the agent's last log line: `PODCI-EXIT <code>`

# Env: PODCI_WORKSPACE, SOURCE_URL, SOURCE_REF, SOURCE_COMMIT, TARGET_URL, TARGET_REF, TARGET_COMMIT.
# Safe to run again (a relaunched pod finds the volume checked out already).
CHECKOUT_SCRIPT = """set -eu
cd "$PODCI_WORKSPACE"
if [ -e .podci/checkout.done ]; then exit 0; fi
git init -q .
git fetch -q --no-tags -- "$SOURCE_URL" "+$SOURCE_REF:refs/podci/source"
if [ -n "$TARGET_REF" ]; then
  git fetch -q --no-tags -- "$TARGET_URL" "+$TARGET_REF:refs/podci/target"
  git checkout -q --detach "$TARGET_COMMIT"
  git -c user.name=podci -c user.email=podci@localhost merge -q --no-ff --no-edit "$SOURCE_COMMIT"
else
  git checkout -q --detach "$SOURCE_COMMIT"
fi
mkdir -p .podci && touch .podci/checkout.done
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

# The agent: `sh -c AGENT_SCRIPT podci-agent <workspace>`. Waits for the tests' exit code, prints the
# test log and `PODCI-EXIT <code>`, and exits: its termination is the watch event that wakes the build.
AGENT_SCRIPT = """cd "$1"
d=".podci/${HOSTNAME:-pod}"
while [ ! -e "$d/tests.exit" ]; do sleep 1; done
cat "$d/tests.log" 2>/dev/null
echo "PODCI-EXIT $(cat "$d/tests.exit")"
"""
