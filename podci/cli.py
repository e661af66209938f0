"""The `podci` command. Each subcommand reads `Settings` from the environment once and passes it on."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError
from rich.console import Console

from dispatch.app import QUEUES, make_app
from dispatch.send import wake
from dispatch.submit import submit
from podci import up_file
from podci.embedded import EmbeddedRedisError, child_process, child_worker, embedded_redis
from podci.env_check import setting_names, unknown_variables
from podci.example import example_repo
from podci.orphan import end_orphaned
from podci.progress import follow, print_summary
from schemas.action import Acted, ActionRefused
from schemas.errors import describe
from schemas.record import BuildRecord, BuildState
from schemas.request import BuildRequest, Revision
from schemas.settings import HOOK_SECRETS, Settings, env_name
from store.builds import BuildStore
from store.connection import connect
from workers.private import keep_memory_private

if TYPE_CHECKING:
    from celery import Celery

EXIT_CODES = {BuildState.succeeded: 0, BuildState.failed: 1}


class Failed(click.ClickException):
    """A command that could not do its work: exit 2. Status 1 means only that a build's tests (or its
    merge) failed (README, "Running builds"), so a script can tell a red build from a broken run."""

    exit_code = 2


class Unusable(Failed):
    """The configured backend cannot run builds (no cluster, unreachable, missing rights): exit 2, as a
    build ending in `error` does, with the sentence that says why."""

    exit_code = 2


def check_backend(settings: Settings) -> str:
    """Before anything else, so a command that cannot work says so at once instead of hanging."""
    from workers.backends import backend_type
    from workers.errors import PermanentError, TransientError

    try:
        return backend_type(settings.backend).check(settings)
    except (PermanentError, TransientError) as exc:
        raise Unusable(str(exc)) from None


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        raise click.UsageError(describe(exc, "the podci configuration (PODCI_* variables)")) from None


@contextmanager
def redis_url(settings: Settings, *, join_up: bool = True) -> Iterator[tuple[str, bool]]:
    """The configured Redis; else the Redis of a `podci up` running on this state directory (with
    `join_up`), whose workers then run the builds; else an embedded one. Yields (url, embedded)."""
    if settings.redis_url:
        yield settings.redis_url, False
        return
    if join_up and (found := up_file.running(settings.state_dir)) is not None:
        yield found.redis_url, False
        return
    data = settings.state_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        try:
            url = stack.enter_context(embedded_redis(data))
        except EmbeddedRedisError as exc:
            raise Failed(str(exc)) from None
        yield url, True


@click.group()
@click.version_option(package_name="podci", prog_name="podci", message="%(prog)s %(version)s")
def cli() -> None:
    """podci: every pull request tested in its own throwaway environment."""
    keep_memory_private()
    for warning in unknown_variables(os.environ, setting_names() | option_env_names()):
        click.echo(warning, err=True)


def option_env_names() -> set[str]:
    """Variables that options of podci's commands read themselves (PODCI_FLOWER_BASIC_AUTH)."""
    names: set[str] = set()
    for command in cli.commands.values():
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            names.update([envvar] if isinstance(envvar, str) else envvar or [])
    return names


def _current_branch(repo: Path) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), "symbolic-ref", "--quiet", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise click.UsageError(f"{repo} is not a git repository on a branch; pass --source REF")
    return proc.stdout.strip()


def _request(settings: Settings, repo: Path | None, source: str | None, target: str | None,
             job: str | None) -> BuildRequest:  # fmt: skip
    if repo is None:
        repo = example_repo(settings.state_dir / "example-repo")
        source, target = source or "feature", target or "main"
        job = job or "example"
        name = "example"
    else:
        name = repo.resolve().name
    repo = repo.resolve()
    if not (repo / ".git").exists() and not (repo / "HEAD").exists():
        raise click.UsageError(f"{repo} is not a git repository")
    url = _clone_url(repo, settings)
    try:
        return BuildRequest(
            job=job or settings.job_default,
            repo=name,
            source=Revision(clone_url=url, ref=source or _current_branch(repo)),
            target=Revision(clone_url=url, ref=target) if target else None,
            triggered_by=os.environ.get("USER", "unknown"),
        )
    except ValidationError as exc:
        raise click.UsageError(describe(exc, "the build request")) from None


def _clone_url(repo: Path, settings: Settings) -> str:
    from workers.backends import backend_type

    return backend_type(settings.backend).local_repo_url(settings, repo)


@cli.command()
@click.option(
    "--repo", type=click.Path(exists=True, file_okay=False, path_type=Path), help="default: the example"
)
@click.option("--source", help="the branch to test (default: the repository's current branch)")
@click.option("--target", help="the branch to merge it into first (default: none)")
@click.option("--backend", type=click.Choice(["local", "kubernetes"]), help="default: PODCI_BACKEND or local")
@click.option("--job", help="JOB_NAME of the build (default: PODCI_JOB_DEFAULT)")
@click.option("--json", "as_json", is_flag=True, help="print the final build record as JSON on stdout")
def run(repo: Path | None, source: str | None, target: str | None, backend: str | None, job: str | None,
        as_json: bool) -> None:  # fmt: skip
    """Run one build from start to finish through the queue and a worker.

    Exit code 0: succeeded, 1: the tests (or the merge) failed, 2: error or stopped.
    """
    settings = load_settings(backend=backend)
    console = Console(stderr=as_json)
    check_backend(settings)
    request = _request(settings, repo, source, target, job)
    if repo is not None:
        _warn_uncommitted(repo, source)
    with ExitStack() as stack:
        stack_up = None if settings.redis_url else up_file.running(settings.state_dir)
        url, embedded = stack.enter_context(redis_url(settings))
        settings = settings.model_copy(update={"redis_url": url})
        worker = None
        if stack_up is not None and url == stack_up.redis_url:
            console.print(
                f"[dim]sent to the podci up (pid {stack_up.pid}) on {settings.state_dir}[/dim]",
                soft_wrap=True,
            )
        elif embedded:
            env = {**os.environ, "PODCI_REDIS_URL": url, "PODCI_BACKEND": settings.backend,
                   "PODCI_STATE_DIR": str(settings.state_dir)}  # fmt: skip
            log_path = settings.state_dir / "worker.log"
            worker = stack.enter_context(child_worker(env, log_path, settings.worker_concurrency))
            console.print(f"[dim]embedded Redis at {url}; worker log: {log_path}[/dim]", soft_wrap=True)
        app = make_app(settings)
        store = BuildStore(connect(url, master=settings.redis_sentinel_master), settings.retention_seconds)
        record = submit(app, store, settings, request)
        if stack_up is not None and url == stack_up.redis_url:
            click.echo(f"build page: {stack_up.page_of(record.id)}", err=as_json)

        def check() -> None:
            if worker is not None and worker.poll() is not None:
                _worker_died(settings, store, record.id, worker.returncode, console, as_json)
            if stack_up is not None and not stack_up.alive():
                raise Failed(
                    f"podci up (pid {stack_up.pid}) stopped; build {record.id} is left to the next one"
                )

        def watch() -> BuildRecord:
            return follow(lambda: _get(store, record.id), console, lambda: time.sleep(0.2), check)

        signal.signal(signal.SIGTERM, _interrupt)
        try:
            final = watch()
        except KeyboardInterrupt:
            console.print("cancelling: the build stops at its next step and is torn down (again to abort) …")
            store.cancel(record.id)
            wake(app, store, record.id)  # a waiting build stops now, not at its next look
            try:
                final = watch()
            except KeyboardInterrupt:
                console.print(f"aborted: removing what build {record.id} left on this machine")
                _abort(settings, store, record)
                sys.exit(2)
    _finish(final, console, as_json)


def _worker_died(
    settings: Settings, store: BuildStore, build_id: str, code: int, console: Console, as_json: bool
) -> None:
    """The embedded worker was the build's only one: end the build here (`podci.orphan`), show it, exit 2."""
    log_path = settings.state_dir / "worker.log"
    reason = f"the worker exited with code {code} (see {log_path})"
    final = end_orphaned(settings, store, build_id, reason)
    if final is None:
        raise Failed(f"{reason}; build {build_id} is gone from Redis")
    _finish(final, console, as_json, exit_code=2)


def _warn_uncommitted(repo: Path, source: str | None) -> None:
    """`podci run --repo .` builds commits: edits not yet committed are silently left out, unless told."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=normal"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    changed = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not changed:
        return
    if source is not None and source != _current_branch_or_none(repo):
        return  # another branch is built: this working tree's edits are not its business
    click.echo(
        f"warning: {repo} has uncommitted changes ({len(changed)} file(s), see `git status`); they are "
        "not in the build, which uses the last commit: commit them to test them",
        err=True,
    )


def _current_branch_or_none(repo: Path) -> str | None:
    try:
        return _current_branch(repo)
    except click.UsageError:
        return None


def _abort(settings: Settings, store: BuildStore, record: BuildRecord) -> None:
    """Tear the build down from here, the worker having been told to stop caring (second Ctrl-C)."""
    import shutil

    from workers.backends import make_backend

    try:
        make_backend(settings, store.redis).teardown(record.name)
    except Exception as exc:  # the user is leaving: say what could not be removed, never a traceback
        click.echo(f"could not remove everything of build {record.id}: {exc}; `podci gc` will", err=True)
    shutil.rmtree(settings.checkouts_dir / record.name, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM is handled like Ctrl-C, so the build is cancelled and torn down, not left running."""
    raise KeyboardInterrupt


def _get(store: BuildStore, build_id: str) -> BuildRecord:
    record = store.get(build_id)
    if record is None:
        raise Failed(f"build {build_id} disappeared from Redis")
    return record


def _finish(record: BuildRecord, console: Console, as_json: bool, exit_code: int | None = None) -> None:
    print_summary(console, record)
    if as_json:
        click.echo(record.model_dump_json(indent=2))
    sys.exit(EXIT_CODES.get(record.state, 2) if exit_code is None else exit_code)


def generated_secrets(settings: Settings) -> dict[str, str]:
    """Random secrets for a try-out: one per receiver that is on and has none, and a page token when
    nobody can log in otherwise. Printed once by `podci up`, never stored."""
    made: dict[str, str] = {}
    for hook in settings.enabled_hooks:
        names = HOOK_SECRETS[hook]
        if hook not in settings.insecure_hooks and all(getattr(settings, n) is None for n in names):
            made[env_name(names[0])] = secrets.token_hex(16)
    if settings.ui_tokens is None and not settings.trusted_proxy_header:
        made["PODCI_UI_TOKENS"] = secrets.token_hex(16)
    return made


def _paste_here(settings: Settings, made: dict[str, str], url: str) -> list[str]:
    """What to paste into Bitbucket and Jenkins, and how to read the pages."""

    def shown(name: str) -> str:
        return made.get(name, f"(your {name})")

    lines = []
    for hook in settings.enabled_hooks:
        if hook.startswith("bitbucket"):
            name = env_name(HOOK_SECRETS[hook][0])
            lines.append(f"{hook} webhook: {url}/hooks/bitbucket   secret: {shown(name)}")
        else:
            token = shown("PODCI_JENKINS_TOKEN")
            lines.append(f"jenkins: {url}/hooks/jenkins   X-Podci-Token: {token}")
            if "PODCI_JENKINS_TOKEN" in made:
                host = url.split("://", 1)[1]
                lines.append(f"  (Notification plugin endpoint: http://podci:{token}@{host}/hooks/jenkins)")
    if "PODCI_UI_TOKENS" in made:
        lines.append(f"build pages: {url}/builds   log in with the token {made['PODCI_UI_TOKENS']}")
    else:
        lines.append(f"build pages: {url}/builds")
    if not (settings.trusted_authors or settings.trusted_repos or settings.trust_everyone):
        lines.append("pull requests wait for a trusted person's /podci ok-to-test: set PODCI_TRUSTED_AUTHORS")
    return lines


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="the receiver and build pages")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--flower-port", default=5555, show_default=True, type=int)
def up(host: str, port: int, flower_port: int) -> None:
    """The whole stack on this machine until Ctrl-C: receiver, worker with beat, Flower, and an embedded
    Redis when PODCI_REDIS_URL is not set. Receivers without a secret get a random one, printed here."""
    settings = load_settings()
    made = generated_secrets(settings)
    console = Console()
    check_backend(settings)
    with ExitStack() as stack:
        url, embedded = stack.enter_context(redis_url(settings, join_up=False))
        env = {**os.environ, **made, "PODCI_REDIS_URL": url, "PODCI_STATE_DIR": str(settings.state_dir)}
        logs = settings.state_dir / "up"
        commands = {
            "worker": ["worker", "--beat"],
            "serve": ["serve", "--host", host, "--port", str(port)],
            "flower": ["flower", "--port", str(flower_port)],
        }
        children = {name: stack.enter_context(child_process(argv, env, logs / f"{name}.log"))
                    for name, argv in commands.items()}  # fmt: skip
        console.print(f"Redis {url}{' (embedded)' if embedded else ''}; logs in {logs}/")
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - compared, not bound
        pages = f"http://{shown_host}:{port}"
        _announce_up(stack, settings, url, pages)
        for line in _paste_here(settings, made, pages):
            click.echo(line)  # whole lines, never wrapped: they are copied from here
        click.echo(f"Flower: http://127.0.0.1:{flower_port}")
        if made:
            console.print("[dim]secrets made for this run only: set them in PODCI_* to keep them[/dim]")
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            while all(child.poll() is None for child in children.values()):
                time.sleep(0.5)  # the CLI's own foreground loop, not a worker
        except KeyboardInterrupt:
            console.print("stopping …")
            return
        dead = [name for name, child in children.items() if child.poll() is not None]
        raise Failed(f"{', '.join(dead)} exited; see {logs}/")


def _announce_up(stack: ExitStack, settings: Settings, url: str, pages: str) -> None:
    """Tell `podci run` and `podci status` on this state directory where this stack's Redis is, until
    it stops (`podci.up_file`)."""
    me = os.getpid()
    found = up_file.UpStack(
        redis_url=url, pid=me, pages=pages, sentinel_master=settings.redis_sentinel_master
    )
    up_file.write(settings.state_dir, found)
    stack.callback(up_file.remove, settings.state_dir, me)


@cli.command()
@click.argument("build_id")
@click.option("--json", "as_json", is_flag=True, help="print the build record as JSON")
def status(build_id: str, as_json: bool) -> None:
    """Show one build: its steps, result and where its logs are."""
    settings = load_settings()
    with redis_url(settings) as (url, _):
        redis = connect(url, master=settings.redis_sentinel_master)
        record = BuildStore(redis, settings.retention_seconds).get(build_id)
    if record is None:
        raise Failed(f"no build {build_id!r} in {'this Redis' if settings.redis_url else settings.state_dir}")
    if as_json:
        click.echo(record.model_dump_json(indent=2))
    else:
        print_summary(Console(), record)


@cli.command()
@click.option("--concurrency", type=int, help="parallel steps (default: PODCI_WORKER_CONCURRENCY)")
@click.option("--beat", is_flag=True, help="also run the periodic reconciler in this process")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency: int | None, beat: bool, loglevel: str) -> None:
    """A Celery worker for the pipeline (needs PODCI_REDIS_URL)."""
    from workers.app import make_worker_app

    settings = load_settings(worker_concurrency=concurrency)
    check_backend(settings)
    app = make_worker_app(settings)
    argv = [
        "worker", "--queues", ",".join(QUEUES), "--loglevel", loglevel,
        "--concurrency", str(settings.worker_concurrency), "--events", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    if beat:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--beat", "--schedule", str(settings.state_dir / "celerybeat-schedule")]
    run_celery(app, argv)


def run_celery(app: Celery, argv: list[str]) -> None:
    """`celery <argv>` on `app`, ending with its exit status. Celery's own `app.start` and
    `app.worker_main` drop the status (they run the command line without letting it exit), so a
    worker that stopped on an "Unrecoverable error" ended `podci worker` with status 0, which
    `restart: on-failure` and anyone reading the status take for a clean stop."""
    from celery.bin.celery import celery as command

    command.params[0].default = app  # the `--app` option, as `Celery.start` sets it
    code = command.main(args=argv, prog_name="celery", standalone_mode=False)
    if code:
        raise SystemExit(code if isinstance(code, int) else 1)


@cli.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """The periodic reconciler and garbage collector alone (run exactly one per Redis)."""
    from workers.app import make_worker_app

    settings = load_settings()
    app = make_worker_app(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    run_celery(
        app, ["beat", "--loglevel", loglevel, "--schedule", str(settings.state_dir / "celerybeat-schedule")]
    )


@cli.command()
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", default=5555, show_default=True, type=int)
@click.option(
    "--basic-auth", envvar="PODCI_FLOWER_BASIC_AUTH", help="user:password (or PODCI_FLOWER_BASIC_AUTH)"
)
def flower(address: str, port: int, basic_auth: str | None) -> None:
    """Flower, the Celery monitor, on the pipeline's broker (needs PODCI_REDIS_URL)."""
    settings = load_settings()
    argv = ["flower", f"--address={address}", f"--port={port}"]
    if basic_auth:
        argv.append(f"--basic-auth={basic_auth}")
    make_app(settings).start(argv)


@cli.command()
@click.option("--host", default="0.0.0.0", show_default=True)  # noqa: S104 - a server for webhooks
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="server processes sharing the port; each webhook costs CPU in one of them, so about one per core",
)
def serve(host: str, port: int, log_level: str, workers: int) -> None:
    """The webhook receiver: POST /hooks/bitbucket and /hooks/jenkins (needs PODCI_REDIS_URL)."""
    import uvicorn

    from podci.http_protocol import CappedHttpToolsProtocol
    from podci.server import create_app

    settings = load_settings()
    require_serving(settings)
    # One process serves the app built here. Several need an import path instead: each worker builds
    # its own app (and its own Redis and broker connections) from the environment checked above.
    app = create_app(settings) if workers == 1 else "podci.server:app_from_environment"
    # httptools, capped: a request line and headers over PODCI_MAX_HEADER_BYTES get a 431 before more
    # is read (podci.http_protocol). The client address is the TCP peer's, never a forwarded one: a
    # trusted proxy (PODCI_TRUSTED_PROXIES) is known by its own address.
    uvicorn.run(
        app, factory=workers > 1, workers=workers, host=host, port=port, log_level=log_level,
        access_log=False, http=CappedHttpToolsProtocol,
        h11_max_incomplete_event_size=settings.max_header_bytes, proxy_headers=False,
    )  # fmt: skip


def require_serving(settings: Settings) -> None:
    """`podci serve` starts only closed: every receiver that is on has its secret (or is named in
    PODCI_INSECURE_UNSIGNED_HOOKS), and there is a Redis to record builds in."""
    missing = [] if settings.redis_url else ["PODCI_REDIS_URL (the Redis of the queue)"]
    missing += settings.missing_hook_secrets()
    if missing:
        raise click.UsageError(
            f"podci serve does not start without {'; '.join(missing)}: set them, turn receivers off "
            "with PODCI_HOOKS, or (never on a network you do not trust) name them in "
            "PODCI_INSECURE_UNSIGNED_HOOKS"
        )


@cli.command()
@click.argument("body_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--headers",
    "headers_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="a JSON object of the request's headers (X-Event-Key, X-Request-UUID, ...)",
)
@click.option(
    "--source", type=click.Choice(["auto", "bitbucket", "jenkins"]), default="auto", show_default=True
)
def event(body_file: Path, headers_file: Path | None, source: str) -> None:
    """What a webhook payload would do: the decision and the build request, as JSON. Nothing is queued."""
    from events.decide import decide
    from events.receiver import options_from

    headers = json.loads(headers_file.read_text()) if headers_file else {}
    try:
        decision = decide(source, headers, body_file.read_bytes(), options_from(load_settings()))
    except ValueError as exc:
        raise Failed(str(exc)) from None
    click.echo(decision.model_dump_json(indent=2, exclude_none=True))


@cli.command()
@click.option("--dry-run/--delete", default=True, show_default=True, help="only list, or really delete")
def gc(dry_run: bool) -> None:
    """Build objects on the cluster that nobody will tear down any more (finished builds, or older than
    PODCI_KUBE_GC_TTL_HOURS). Only objects labelled managed-by=podci are ever touched."""
    from workers.gc import collect_garbage

    settings = load_settings()
    check_backend(settings)
    with redis_url(settings) as (url, _):
        store = BuildStore(connect(url, master=settings.redis_sentinel_master), settings.retention_seconds)
        gone = collect_garbage(settings, store, dry_run=dry_run)
    for item in gone:
        click.echo(f"{'would delete' if dry_run else 'deleted'} {item}")
    click.echo(
        f"{len(gone)} object(s){' (dry run: pass --delete to delete them)' if dry_run and gone else ''}"
    )


# --- one build at a time: list, retry, cancel ------------------------------------------------------
SCAN_MAX = 100_000  # builds read at most to find `--limit` matches (the index is trimmed by age anyway)


class ActionFailed(click.ClickException):
    """An action that could not be done (unknown build, not possible now, Redis down): exit 2."""

    exit_code = 2


@contextmanager
def _builds_store(settings: Settings) -> Iterator[tuple[BuildStore, Settings, bool]]:
    """The store of PODCI_REDIS_URL or of the state directory's embedded Redis, with the settings
    naming that Redis; yields (store, settings, embedded). Redis that does not answer is exit 2."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    try:
        with redis_url(settings) as (url, embedded):
            client = connect(url, timeout=10, master=settings.redis_sentinel_master)
            yield (
                BuildStore(client, settings.retention_seconds),
                settings.model_copy(update={"redis_url": url}),
                embedded,
            )
    except (RedisError, OperationalError) as exc:
        raise ActionFailed(
            f"the Redis of the builds (PODCI_REDIS_URL) does not answer ({type(exc).__name__})"
        ) from None
    except SystemExit as exc:  # the embedded Redis is another podci's just now
        if isinstance(exc.code, str):
            raise ActionFailed(exc.code) from None
        raise


def _who() -> str:
    return os.environ.get("USER") or "the command line"


@cli.command()
@click.option("--repo", help="only builds of this repository (its full name, e.g. team/webapp)")
@click.option("--state", type=click.Choice([s.value for s in BuildState]), help="only builds in this state")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="builds shown at most"
)
@click.option("--json", "as_json", is_flag=True, help="print the build records as one JSON array")
def builds(repo: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """Recent builds, newest first: id, repository, branch or pull request, state, reason, times."""
    from podci.listing import select, table

    settings = load_settings()
    with _builds_store(settings) as (store, _, _):
        records = select(store.recent(SCAN_MAX), repo, state, limit)
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
    elif records:
        Console().print(table(records))
    else:
        click.echo("no builds match")


@cli.command()
@click.argument("build_id")
def retry(build_id: str) -> None:
    """Build a finished build again: a new build of the same request and commits, the job's next number."""
    from dispatch.actions import retry as retry_build

    click.echo(_act(lambda app, store, settings: retry_build(app, store, settings, build_id, _who())))


@cli.command()
@click.argument("build_id")
def cancel(build_id: str) -> None:
    """Stop a running build: it ends `stopped` ("cancelled by <you>") and is torn down."""
    from dispatch.actions import cancel as cancel_build

    click.echo(_act(lambda app, store, settings: cancel_build(app, store, build_id, _who())))


def _act(action: Callable[[Celery, BuildStore, Settings], Acted]) -> str:
    """Run a `dispatch.actions` action on the configured (or embedded) Redis; its sentence, or exit 2."""
    with _builds_store(load_settings()) as (store, settings, embedded):
        try:
            acted = action(make_app(settings, publish_timeout=10), store, settings)
        except ActionRefused as refused:
            raise ActionFailed(refused.sentence) from None
    if embedded and acted.changed:
        return (
            acted.sentence
            + " (no worker serves the embedded Redis now: it goes on with the next podci up or run)"
        )
    return acted.sentence


def main() -> None:
    """Every failure but a failed build exits 2 (README, "Running builds"): also one that ends in a
    message (`SystemExit("...")`, status 1 by Python's rule) or, worse, in a traceback."""
    try:
        cli(prog_name="podci")
    except SystemExit as exc:
        if isinstance(exc.code, str):
            click.echo(exc.code, err=True)
            sys.exit(2)
        raise
    except Exception:
        import traceback

        traceback.print_exc()
        sys.exit(2)
