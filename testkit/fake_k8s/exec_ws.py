"""`pods/exec` over the websocket channel protocol, as `kubernetes.stream.stream` speaks it.

What the official Python client (35.x, websocket-client underneath) does, checked against this server:
it connects straight to `ws://host/api/v1/namespaces/{ns}/pods/{name}/exec?command=a&command=b&container=c
&stderr=True&stdin=False&stdout=True&tty=False` (bools as Python writes them, one `command` per argv word),
with the single header `sec-websocket-protocol: v4.channel.k8s.io`, and no plain GET/POST first. Every
frame's first byte is the channel (1 stdout, 2 stderr, 3 error); the exit code is read from the JSON
`Status` on channel 3 once the server closes: `{"metadata":{},"status":"Success"}`, or status Failure,
reason NonZeroExitCode, `details.causes[0].message` = the exit code. Frames of one byte are ignored by
the client, and with no channel-3 frame `returncode` crashes, so one is always sent.

Commands are simulated (see `run_command`): START_TESTS_SCRIPT starts the pod's test run,
RECEIVE_SCRIPT takes the bytes sent on stdin (channel 0) into the build's volume, `cat` and `test -f`
read the build's simulated workspace, anything else succeeds with no output.
"""

from __future__ import annotations

import json
import posixpath
import time

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from workers.backends.kubernetes.names import RECEIVE_SCRIPT, START_TESTS_SCRIPT

from . import workspace
from .cluster import ExecRecord, FakeCluster, truthy
from .errors import ApiError, bad_request, no_node_address, not_found
from .lifecycle import ContainerSim, PodSim

# Every channel protocol the API server speaks, except the base64 ones; the client's order decides.
STATUS_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")  # channel 3 carries a JSON Status
TEXT_PROTOCOLS = ("v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")  # channel 3: error text only
STDIN, STDOUT, STDERR, ERROR = 0, 1, 2, 3


def exec_target(
    cluster: FakeCluster, namespace: str, name: str, container: str | None, command: list[str]
) -> tuple[PodSim, ContainerSim]:
    """The container to exec in, or the error the API server answers the handshake with."""
    with cluster.lock:
        sim = cluster.sim.pods.get((namespace, name))
        chosen = next((v for v in cluster.vanish_on_exec if v[0] == name and v[1] in (None, container)), None)
        if sim is not None and chosen is not None:
            cluster.vanish_on_exec.discard(chosen)
            cluster.sim.begin_delete(sim, 0)
            raise not_found("pods", name)
        if sim is None or cluster.store.get("pods", namespace, name) is None:
            raise not_found("pods", name)
        if name in cluster.unreachable:
            raise no_node_address()
        if not command:
            raise bad_request("you must specify at least one command for the container")
        target = cluster.pick_container(sim, container)
        phase = sim.phase()
        if phase in ("Succeeded", "Failed"):
            raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
        if sim.node is None:
            raise bad_request(f"pod {name} does not have a host assigned")
        if target.state != "running":
            raise bad_request(f'unable to upgrade connection: container not found ("{target.name}")')
        return sim, target


def run_command(
    cluster: FakeCluster, sim: PodSim, container: ContainerSim, command: list[str], stdin: bytes = b""
) -> tuple[int, str, str]:
    """Simulate `command` in the container: (exit code, stdout, stderr)."""
    record = ExecRecord(sim.namespace, sim.name, container.name, list(command), time.time(), -1)
    with cluster.lock:
        answer = cluster.exec_handler(record) if cluster.exec_handler is not None else None
        if answer is None and command[:3] == ["sh", "-c", RECEIVE_SCRIPT]:
            answer = _receive(cluster, sim, command, stdin)
        if answer is None:
            answer = _builtin(cluster, sim, command)
        record.exit_code = answer[0]
        cluster.execs.append(record)
    return answer


def expected_stdin(command: list[str]) -> int | None:
    """How many stdin bytes the command reads: RECEIVE_SCRIPT's size argument; None for the others."""
    if command[:3] == ["sh", "-c", RECEIVE_SCRIPT] and len(command) >= 5 and command[4].isdigit():
        return int(command[4])
    return None


def _receive(cluster: FakeCluster, sim: PodSim, command: list[str], data: bytes) -> tuple[int, str, str]:
    """`sh -c RECEIVE_SCRIPT podci-receive <bytes> <path>`, the code bundle on stdin."""
    size, path = int(command[4]), command[5]
    if len(data) != size:
        return 1, "", f"fatal: received {len(data)} of {size} bytes of the code\n"
    workspace.receive(cluster, sim, path, data)
    return 0, "", ""


def _builtin(cluster: FakeCluster, sim: PodSim, command: list[str]) -> tuple[int, str, str]:
    files = cluster.files.setdefault(cluster.fs_key(sim), {})
    if command[:3] == ["sh", "-c", START_TESTS_SCRIPT]:
        # sh -c SCRIPT podci-tests <workspace> <argv...>: $0 is the name, $1 the workspace
        if len(command) < 5:
            return 1, "", 'sh: 1: cd: can\'t cd to ""\n'
        cluster.sim.start_tests(sim, posixpath.normpath(command[4]), command[5:])
        return 0, "", ""
    if command[0] == "cat":
        out, err, code = [], [], 0
        for path in command[1:]:
            content = files.get(posixpath.normpath(path))
            if content is None:
                err.append(f"cat: {path}: No such file or directory\n")
                code = 1
            else:
                out.append(content)
        return code, "".join(out), "".join(err)
    if command[0] in ("test", "[") and len(command) >= 3 and command[1] in ("-f", "-e", "-s"):
        content = files.get(posixpath.normpath(command[2]))
        ok = content is not None and (command[1] != "-s" or content != "")
        return (0 if ok else 1), "", ""
    if command[0] == "rm":
        for path in command[1:]:
            if not path.startswith("-"):
                files.pop(posixpath.normpath(path), None)
        return 0, "", ""
    if command[0] == "false":
        return 1, "", ""
    return 0, "", ""


def _status(protocol: str | None, code: int, command: list[str]) -> bytes | None:
    if protocol in STATUS_PROTOCOLS:
        if code == 0:
            return json.dumps({"metadata": {}, "status": "Success"}).encode()
        return json.dumps(
            {
                "metadata": {},
                "status": "Failure",
                "message": f"command terminated with non-zero exit code: error executing command {command}, "
                f"exit code {code}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        ).encode()
    if code == 0:
        return None
    return f"command terminated with non-zero exit code: exit code {code}".encode()


async def deny(websocket: WebSocket, error: ApiError) -> None:
    """Refuse the handshake with the HTTP status and Status body a real server would answer."""
    response = JSONResponse(error.body(), status_code=error.code, headers=error.headers)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:  # the ASGI server lacks the denial extension: a plain 403
        await websocket.close(code=1008)


async def _read_stdin(websocket: WebSocket, size: int | None) -> bytes:
    """Frames on channel 0 until `size` bytes came (the command has what it reads), or the client
    closed the stream."""
    received = bytearray()
    while size is None or len(received) < size:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            break
        frame = message.get("bytes") or (message.get("text") or "").encode("latin-1")
        if frame[:1] == bytes([STDIN]):
            received += frame[1:]
    return bytes(received)


async def exec_endpoint(websocket: WebSocket, cluster: FakeCluster, namespace: str, name: str) -> None:
    params = websocket.query_params
    command = params.getlist("command")
    stdout, stderr = truthy(params.get("stdout")), truthy(params.get("stderr"))
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    protocol = next((p for p in offered if p in STATUS_PROTOCOLS + TEXT_PROTOCOLS), None)
    try:
        if not (stdout or stderr or truthy(params.get("stdin"))):
            raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
        if offered and protocol is None:
            raise bad_request(f"unable to upgrade: no supported protocol among {offered}")
        sim, container = exec_target(cluster, namespace, name, params.get("container"), command)
    except ApiError as error:
        await deny(websocket, error)
        return
    await websocket.accept(subprotocol=protocol)
    stdin = await _read_stdin(websocket, expected_stdin(command)) if truthy(params.get("stdin")) else b""
    code, out, err = run_command(cluster, sim, container, command, stdin)
    if stdout and out:
        await websocket.send_bytes(bytes([STDOUT]) + out.encode())
    if stderr and err:
        await websocket.send_bytes(bytes([STDERR]) + err.encode())
    status = _status(protocol, code, command)
    if status is not None:
        await websocket.send_bytes(bytes([ERROR]) + status)
    await websocket.close(code=1000)
