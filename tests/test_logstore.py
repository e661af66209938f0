"""store/logstore.py and store/s3logs.py: the same table of operations on a directory and on a real
S3 HTTP API (moto's server), and the settings that name a store."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from podci.embedded import free_port
from schemas.settings import Settings
from store.logstore import DirLogStore, LogStore, LogStoreUnavailable, open_log_store
from tests.s3 import make_bucket

SECRET = "hunter2-is-the-password-here"
_buckets = itertools.count()


def new_bucket(endpoint: str) -> str:
    bucket = f"logs-{os.getpid()}-{next(_buckets)}"
    make_bucket(endpoint, bucket)
    return bucket


@pytest.fixture(params=["dir", "s3"])
def logstore(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogStore]:
    if request.param == "dir":
        yield open_log_store(str(tmp_path / "logs"))
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        yield open_log_store(f"s3://{new_bucket(endpoint)}/podci/logs", endpoint)


def files(tmp_path: Path, **texts: str) -> dict[str, Path]:
    """Scratch log files as a worker leaves them, by log name (`containers/web`)."""
    out = {}
    for index, (name, text) in enumerate(texts.items()):
        path = tmp_path / "scratch" / f"{index}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out[name.replace("__", "/")] = path
    return out


def test_put_then_list_and_read_masked(logstore: LogStore, tmp_path: Path) -> None:
    logstore.check()
    given = files(tmp_path, tests=f"ok\npassword={SECRET}\n", containers__web="web says hi\n")
    logstore.put("job-7", given, secrets=(SECRET,))
    assert logstore.names("job-7") == ["containers/web", "tests"]
    assert logstore.read("job-7", "tests") == b"ok\npassword=****\n"
    assert logstore.read("job-7", "containers/web") == b"web says hi\n"
    assert logstore.where("job-7", "tests").endswith("job-7/tests.log")


def test_put_twice_changes_nothing_and_keeps_the_rest(logstore: LogStore, tmp_path: Path) -> None:
    given = files(tmp_path, tests="first\n", app="app log\n")
    logstore.put("job-8", given)
    logstore.put("job-8", given)
    logstore.put("job-8", {"tests": given["tests"]})
    assert logstore.names("job-8") == ["app", "tests"]
    assert logstore.read("job-8", "app") == b"app log\n"


def test_tail_gives_the_last_bytes_and_the_whole_size(logstore: LogStore, tmp_path: Path) -> None:
    text = "".join(f"line {n}\n" for n in range(1000))
    logstore.put("job-9", files(tmp_path, tests=text, empty=""))
    tail = logstore.tail("job-9", "tests", 9)
    assert tail is not None and (tail.data, tail.size) == (b"line 999\n", len(text))
    whole = logstore.tail("job-9", "tests", 10 * len(text))
    assert whole is not None and whole.data == text.encode()
    empty = logstore.tail("job-9", "empty", 100)
    assert empty is not None and (empty.data, empty.size) == (b"", 0)


def test_missing_logs_are_none_not_errors(logstore: LogStore) -> None:
    assert logstore.read("no-build-1", "tests") is None
    assert logstore.tail("no-build-1", "tests", 10) is None
    assert logstore.names("no-build-1") == []


def test_delete_removes_one_build_only(logstore: LogStore, tmp_path: Path) -> None:
    logstore.put("job-10", files(tmp_path, tests="ten\n", containers__db="db\n"))
    logstore.put("job-11", files(tmp_path, tests="eleven\n"))
    assert {"job-10", "job-11"} <= set(logstore.builds())
    logstore.delete("job-10")
    logstore.delete("job-10")  # twice: nothing left is not an error
    assert logstore.names("job-10") == []
    assert "job-10" not in logstore.builds()
    assert logstore.read("job-11", "tests") == b"eleven\n"


BAD_NAMES = [("job-1", "../x"), ("job-1", "/etc/passwd"), ("../x", "tests"), ("job-1", "a//b"),
             ("Job 1", "tests"), ("job-1", "..")]  # fmt: skip


@pytest.mark.parametrize(("build", "name"), BAD_NAMES)
def test_names_that_would_leave_the_build_are_refused(logstore: LogStore, build: str, name: str) -> None:
    with pytest.raises(ValueError, match="is not a"):
        logstore.read(build, name)


def test_an_unreachable_store_is_unavailable_not_lost(tmp_path: Path, s3_endpoint: str) -> None:
    nowhere = open_log_store("s3://podci-logs/x", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(LogStoreUnavailable, match="cannot be reached"):
        nowhere.check()
    with pytest.raises(LogStoreUnavailable, match="cannot be reached"):
        nowhere.put("job-12", files(tmp_path, tests="t\n"))


def test_a_missing_bucket_says_to_create_it(tmp_path: Path, s3_endpoint: str) -> None:
    store = open_log_store("s3://no-such-bucket-here/logs", s3_endpoint)
    with pytest.raises(LogStoreUnavailable, match="create it"):
        store.check()
    with pytest.raises(LogStoreUnavailable, match="NoSuchBucket; create it"):
        store.put("job-13", files(tmp_path, tests="t\n"))


def test_a_directory_store_that_cannot_be_written_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LogStoreUnavailable, match="cannot"):
        DirLogStore(blocker / "logs").check()
    with pytest.raises(LogStoreUnavailable, match="cannot write logs"):
        DirLogStore(blocker / "logs").put("job-14", files(tmp_path, tests="t\n"))


def test_the_default_store_is_the_state_directory_s_logs(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    assert settings.log_store_url == str(tmp_path / "logs")
    assert isinstance(open_log_store(settings.log_store_url), DirLogStore)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("s3://", "names no bucket"),
        ("s3:///logs", "names no bucket"),
        ("gs://bucket/logs", "a gs:// URL; podci keeps logs in a directory"),
        ("https://minio:9000/logs", "a https:// URL"),
        ("s3://Bad_Bucket/logs", "not a valid S3 bucket name"),
    ],
)
def test_a_bad_store_url_is_refused(value: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        Settings(log_store=value)


def test_a_bad_endpoint_is_refused() -> None:
    with pytest.raises(ValidationError, match="PODCI_S3_ENDPOINT_URL"):
        Settings(log_store="s3://bucket/logs", s3_endpoint_url="minio:9000")


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_bad_store_url_stops_the_start_with_a_sentence(command: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODCI_")}
    env.update(
        PODCI_LOG_STORE="s3://", PODCI_STATE_DIR=str(tmp_path), PODCI_REDIS_URL="redis://127.0.0.1:1/0"
    )
    done = subprocess.run([sys.executable, "-m", "podci", command], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "PODCI_LOG_STORE holds 's3://', which names no bucket" in done.stderr
