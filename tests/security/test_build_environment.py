"""What a build's code finds of podci's settings (issue 13, the first finding: a test command read the
secrets from /proc/*/environ): nothing in its own environment, nothing in the processes podci starts
for it (the launcher, git). The worker's own /proc entry is the operating system's to protect: a local
build runs as the worker's user (docs/security.md), and an untrusted one only after approval."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dispatch.submit import submit
from schemas.record import BuildState
from testkit.gitrepo import EXAMPLE, Repo
from tests.helpers import wait_for
from tests.test_builds import request

pytestmark = pytest.mark.usefixtures("worker")

# Exits 1 when the test command's environment, or its parent's (podci's launcher), holds any podci
# setting: PODCI_REDIS_URL stands for them all (the session's worker has it, and no secret).
SNOOP = """
import os, sys
given = ("PODCI_BUILD", "PODCI_WORKSPACE", "PODCI_HOST", "PODCI_PORT_")  # what a container is told
own = [k for k in os.environ if k.startswith("PODCI_") and not k.startswith(given)]
parent = open(f"/proc/{os.getppid()}/environ", "rb").read()
print("own:", own, "parent holds PODCI_REDIS_URL:", b"PODCI_REDIS_URL=" in parent)
sys.exit(1 if own or b"PODCI_REDIS_URL=" in parent else 0)
"""


def test_a_build_inherits_none_of_podci_s_settings(app, store, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = yaml.safe_load((EXAMPLE / ".podci.yml").read_text())
    config["test"]["command"] = ["python3", "-c", SNOOP]
    repo = Repo(tmp_path / "snoop", {".podci.yml": yaml.safe_dump(config)})
    done = wait_for(store, submit(app, store, settings, request(repo.path, "main", target=None)).id)
    assert done.tests is not None, done.reason
    assert done.state is BuildState.succeeded, done.tests.log_tail
