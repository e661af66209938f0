"""What a record and a kept log may hold: bounded free text, masked secrets, expiring logs (pure
functions and files, no Redis)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from schemas.record import BuildState, Step
from schemas.settings import Settings
from store.logstore import DirLogStore
from tests.test_pipeline import NOW, record
from workers.gc import expired_logs
from workers.logfiles import TAIL_MAX, mask_file, tail
from workers.pipeline import DETAIL_MAX, REASON_MAX, Stop, Wait, apply
from workers.repo_config import FILE_MAX, ConfigError, load


def test_a_step_s_words_are_bounded_in_the_record() -> None:
    rec = record(Step.wait_setup)
    apply(rec, Step.wait_setup, Wait("w" * 50_000), NOW)
    assert len(rec.step_record(Step.wait_setup).detail) == DETAIL_MAX
    apply(rec, Step.wait_setup, Stop(BuildState.error, "git said: " + "e" * 50_000), NOW)
    assert len(rec.reason) == REASON_MAX and rec.reason.startswith("git said: ")
    apply(rec, Step.teardown, Stop(BuildState.error, "teardown: " + "t" * 50_000), NOW)
    assert len(rec.reason) == REASON_MAX


def test_a_config_or_template_over_the_limit_is_refused() -> None:
    config = "test: {container: app, command: pytest}\n"
    with pytest.raises(ConfigError, match=r"\.podci\.yml is .* characters long"):
        load(config + "#" * FILE_MAX, lambda path: None)
    with pytest.raises(ConfigError, match=r"pod template `\.podci/pod\.yaml` is .* characters"):
        load(config, lambda path: "#" * (FILE_MAX + 1))


def test_a_tail_is_bounded_and_masked(tmp_path: Path) -> None:
    log = tmp_path / "tests.log"
    log.write_text("\n".join(["x" * 10_000] * 3 + ["token: hunter2-but-longer-secret"]))
    shown = tail(log, 40, ("hunter2-but-longer-secret",))
    assert len(shown) == TAIL_MAX and shown.endswith("token: ****")


def test_a_kept_log_is_masked_in_place(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"start\nthe secret is s3cret-value-of-16+ and again s3cret-value-of-16+\n\xff end\n")
    mask_file(log, ("s3cret-value-of-16+",))
    assert log.read_bytes() == b"start\nthe secret is **** and again ****\n\xff end\n"


def test_logs_outliving_the_retention_are_collected(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, retention_days=1)
    for name, age_days in (("old-1", 2), ("young-1", 0), ("running-1", 2)):
        folder = settings.logs_dir / name
        folder.mkdir(parents=True)
        then = time.time() - age_days * 86400
        os.utime(folder, (then, then))
    running = SimpleNamespace(complete=False)
    store = SimpleNamespace(get=lambda name: running if name == "running-1" else None)
    logs = DirLogStore(settings.logs_dir)
    assert expired_logs(settings, store, logs, time.time()) == ["old-1"]  # type: ignore[arg-type]
