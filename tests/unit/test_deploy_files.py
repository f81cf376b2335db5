"""
The shipped deployment files are consistent with the code and the repository.

Nothing here runs Docker, Kubernetes or systemd (none is on the test machine):
the files are parsed, every file they name must exist, every CALLOUT_*
variable they set must be a Settings field, the probes must hit /healthz and
/readyz, the embedded nats.conf and policy must pass `nats-server -t` and the
policy loader, and the systemd unit must pass `systemd-analyze verify`.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pytest
from ruamel.yaml import YAML

from service.config import ENV_PREFIX, Settings, load_keys
from service.errors import ConfigError
from service.policy import load_policy
from tests.natsserver import check_config

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
SEEDS = {"issuer.nk", "service.nk", "xkey.nk"}
SEED_SETTINGS = {
    "CALLOUT_ISSUER_SEED_FILE": "issuer.nk",
    "CALLOUT_NATS_NKEY_SEED_FILE": "service.nk",
    "CALLOUT_XKEY_SEED_FILE": "xkey.nk",
}
HTTP_PORT = 8081


def _yaml_all(path: Path) -> list[Any]:
    return [d for d in YAML(typ="safe").load_all(path.read_text("utf-8")) if d]


def _yaml(path: Path) -> Any:
    docs = _yaml_all(path)
    assert len(docs) == 1, path
    return docs[0]


def _assert_settings(names: object) -> None:
    """Every name is CALLOUT_<a Settings field>."""
    assert isinstance(names, list | dict | set)
    names = list(names)
    assert names
    unknown = [
        n
        for n in names
        if not n.startswith(ENV_PREFIX)
        or n.removeprefix(ENV_PREFIX).lower() not in Settings.model_fields
    ]
    assert unknown == [], "not Settings fields"


def _port(listen: str) -> int:
    return int(listen.rpartition(":")[2])


# --- Dockerfile --------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        word, _, rest = text.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "dangling line continuation"
    return out


DOCKERFILE = dockerfile_instructions(DEPLOY / "Dockerfile")


def _instr(name: str) -> list[str]:
    return [args for word, args in DOCKERFILE if word == name]


def _copy_sources() -> list[str]:
    sources = []
    for args in _instr("COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        if "--from=" in args:
            continue
        sources.extend(words[:-1])
    return sources


def test_dockerfile_is_multi_stage_non_root_and_runs_the_cli() -> None:
    """Build and runtime stages, a numeric non-root user, `nats-auth-callout run`."""
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")

    froms = _instr("FROM")
    user = _instr("USER")[-1]

    assert len(froms) >= 2
    assert any(re.search(r"python:3\.11-slim", a) for a in _instr("ARG") + froms)
    assert user.split(":")[0] not in {"0", "root"}
    assert user.split(":")[0].isdigit()  # runAsNonRoot can check a number
    assert json.loads(_instr("ENTRYPOINT")[-1]) == ["nats-auth-callout"]
    assert json.loads(_instr("CMD")[-1]) == ["run"]
    assert 'nats-auth-callout = "service.cli:main"' in pyproject


def test_dockerfile_copies_only_existing_files_the_context_sends() -> None:
    """Every COPY source exists and deploy/Dockerfile.dockerignore lets it through."""
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text("utf-8").splitlines()
    reincluded = {p[1:].rstrip("/") for p in ignore if p.startswith("!")}

    sources = _copy_sources()

    assert sources
    assert [s for s in sources if not (ROOT / s).exists()] == []
    assert "*" in ignore
    assert {s.rstrip("/") for s in sources} <= reincluded


def test_dockerfile_bakes_in_no_secret() -> None:
    """ENV sets only non-secret settings; seeds and passwords come at run time."""
    env: dict[str, str] = {}
    for args in _instr("ENV"):
        for word in shlex.split(args):
            name, _, value = word.partition("=")
            env[name] = value
    callout = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}

    _assert_settings(callout)
    assert not [k for k in callout if "SEED" in k or "PASSWORD" in k]
    assert callout["CALLOUT_POLICY_FILE"].startswith("/etc/nats-auth-callout/")
    assert _port(callout["CALLOUT_HTTP_LISTEN"]) == HTTP_PORT
    assert _instr("EXPOSE") == [str(HTTP_PORT)]


def test_dockerfile_builds_air_gapped_and_without_useradd_warnings() -> None:
    """No `# syntax=` frontend pull; uid 10001 is not made a --system user."""
    text = (DEPLOY / "Dockerfile").read_text("utf-8")
    users = [a for a in _instr("RUN") if "useradd" in a or "groupadd" in a]

    assert not re.search(r"^#\s*syntax\s*=", text, re.IGNORECASE | re.MULTILINE)
    assert users
    for run in users:
        ids = [int(i) for i in re.findall(r"--(?:uid|gid) (\d+)", run)]
        assert ids == [10001, 10001]  # as runAsUser/fsGroup in Kubernetes
        # useradd/groupadd --system with an id above SYS_UID_MAX (999) warns
        assert "--system" not in run
    assert "--format docker" in text  # podman keeps HEALTHCHECK only so


def _checkov_skips(text: str) -> dict[str, str]:
    """check id -> reason, from `checkov:skip=ID:reason` comments."""
    return dict(re.findall(r"^#\s*checkov:skip=(CKV_\w+):(.+)$", text, re.MULTILINE))


def test_checkov_findings_not_fixed_are_skipped_with_a_reason() -> None:
    """Only the digest pins and pull policy are skipped, each with its reason."""
    docker = _checkov_skips((DEPLOY / "Dockerfile").read_text("utf-8"))
    annotations = [d["metadata"].get("annotations", {}) for d in _k8s_docs()]
    k8s = {
        key: dict([value.split("=", 1)])
        for a in annotations
        for key, value in a.items()
        if key.startswith("checkov.io/skip")
    }
    reasons = [*docker.values(), *(r for d in k8s.values() for r in d.values())]

    assert set(docker) == {"CKV_DOCKER_7"}
    assert sorted(i for d in k8s.values() for i in d) == ["CKV_K8S_15", "CKV_K8S_43"]
    assert all(len(r.split()) >= 5 for r in reasons)
    assert all("offline" in r or "digest" in r for r in reasons)


def test_image_smoke_script_parses_and_names_the_missing_engine(
    tmp_path: Path,
) -> None:
    """deploy/image-smoke.sh is valid bash and, with neither engine, says so (2)."""
    script = DEPLOY / "image-smoke.sh"
    bash = shutil.which("bash")
    assert bash is not None
    makefile = (ROOT / "Makefile").read_text("utf-8")
    test_rule = re.search(r"^test:(.*)\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert test_rule is not None

    syntax = subprocess.run([bash, "-n", str(script)], check=False, timeout=10)
    missing = subprocess.run(
        [bash, str(script)],
        env={"PATH": str(tmp_path)},  # no docker, no podman
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )

    assert syntax.returncode == 0
    assert os.access(script, os.X_OK)
    assert (missing.returncode, missing.stdout) == (2, "")
    assert "neither docker nor podman" in missing.stderr
    assert re.search(
        r"^image-smoke: .*\n\tdeploy/image-smoke\.sh$", makefile, re.MULTILINE
    )
    assert re.search(
        r"^lint-deploy: .*\n\t.*checkov --directory deploy", makefile, re.MULTILINE
    )
    # neither is part of `make test` (no registry, a 300 MB tool)
    assert "image-smoke" not in "".join(test_rule.groups())
    assert "lint-deploy" not in "".join(test_rule.groups())


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []  # noqa: RUF012 - one test at a time writes it

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture(name="health_server")
def _health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(5)
    server.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_dockerfile_healthcheck_gets_healthz(
    health_server: http.server.HTTPServer, status: int, *, healthy: bool
) -> None:
    """The HEALTHCHECK command (python + urllib) asks /healthz on the listen port."""
    args = _instr("HEALTHCHECK")[-1]
    command = json.loads(args.split(" CMD ", 1)[1])
    assert command[0] == "python"
    _Health.status = status
    _Health.paths = []
    port = health_server.server_address[1]

    result = subprocess.run(
        [sys.executable, *command[1:]],
        env=os.environ | {"CALLOUT_HTTP_LISTEN": f"0.0.0.0:{port}"},
        capture_output=True,
        timeout=10,
        check=False,
    )

    assert (result.returncode == 0) is healthy
    assert _Health.paths == ["/healthz"]


# --- compose -----------------------------------------------------------------

COMPOSE = _yaml(DEPLOY / "compose.yaml")


def test_compose_builds_from_the_dockerfile() -> None:
    """The build context and Dockerfile exist; the callout waits for nats."""
    build = COMPOSE["services"]["callout"]["build"]
    depends = COMPOSE["services"]["callout"]["depends_on"]

    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
        DEPLOY / "Dockerfile"
    )
    assert depends == {"nats": {"condition": "service_healthy"}}


def test_compose_mounts_only_existing_files() -> None:
    """Every bind-mounted host path exists; the server config is the checked one."""
    mounts = {
        svc: [v.split(":") for v in spec.get("volumes", [])]
        for svc, spec in COMPOSE["services"].items()
    }

    hosts = [(DEPLOY / m[0]).resolve() for ms in mounts.values() for m in ms]

    assert [h for h in hosts if not h.exists()] == []
    assert (DEPLOY / "nats-server.conf").resolve() in hosts
    assert all(m[-1] == "ro" for ms in mounts.values() for m in ms)


def test_compose_callout_settings_secrets_and_policy() -> None:
    """Settings are real; seeds come from compose secrets; the policy loads."""
    callout = COMPOSE["services"]["callout"]
    env: dict[str, str] = callout["environment"]
    secrets = COMPOSE["secrets"]
    target = {c: h for h, c, _ in (v.split(":") for v in callout["volumes"])}

    _assert_settings(env)
    assert set(callout["secrets"]) == set(secrets) == SEEDS
    for setting, name in SEED_SETTINGS.items():
        assert env[setting] == f"/run/secrets/{name}"
        assert secrets[name]["file"] == f"./secrets/{name}"
    policy = PurePosixPath(env["CALLOUT_POLICY_FILE"])
    host_dir = DEPLOY / target[str(policy.parent)]
    assert load_policy(host_dir / policy.name).users


def test_compose_seed_files_are_git_ignored() -> None:
    """deploy/secrets/ (where the seeds go) can never be committed by accident."""
    git = shutil.which("git")
    assert git is not None
    result = subprocess.run(
        [git, "check-ignore", "-q", "deploy/secrets/issuer.nk"],
        cwd=ROOT,
        check=False,
    )

    assert result.returncode == 0


def test_compose_healthchecks_and_ports() -> None:
    """nats: /healthz; callout: /readyz on its listen port; WebSocket published."""
    nats = COMPOSE["services"]["nats"]
    callout = COMPOSE["services"]["callout"]
    conf = (DEPLOY / "nats-server.conf").read_text("utf-8")
    ws = re.search(r'websocket \{\s*listen: "0\.0\.0\.0:(\d+)"', conf)
    http_port = re.search(r'^http: "0\.0\.0\.0:(\d+)"', conf, re.MULTILINE)
    assert ws is not None
    assert http_port is not None

    published = {p.rsplit(":", 1)[1] for p in nats["ports"]}
    nats_check = " ".join(nats["healthcheck"]["test"])
    callout_check = callout["healthcheck"]["test"]

    assert ws.group(1) in published
    assert f"http://127.0.0.1:{http_port.group(1)}/healthz" in nats_check
    assert callout_check[:3] == ["CMD", "python", "-c"]
    compile(callout_check[3], "<healthcheck>", "exec")
    port = _port(callout["environment"]["CALLOUT_HTTP_LISTEN"])
    assert f"http://127.0.0.1:{port}/readyz" in callout_check[3]


# --- server configs: one set of placeholder keys, consistent within a file ---


def _conf_keys(text: str) -> tuple[str, str, str, str]:
    """(AUTH user nkey, auth_users entry, issuer, xkey) of a config-mode conf."""
    found = [
        re.search(pattern, text)
        for pattern in (
            r'AUTH \{\s*users: \[[^]]*nkey: "(U[A-Z2-7]{55})"',
            r'auth_users: \[ "(U[A-Z2-7]{55})" \]',
            r'issuer: "(A[A-Z2-7]{55})"',
            r'xkey: "(X[A-Z2-7]{55})"',
        )
    ]
    assert all(found), text
    a, b, c, d = (m.group(1) for m in found if m is not None)
    return a, b, c, d


def _k8s_docs() -> list[dict[str, Any]]:
    return _yaml_all(K8S / "nats-auth-callout.yaml")


def _k8s(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in _k8s_docs()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, (kind, name)
    return found[0]


def test_shipped_confs_use_the_same_placeholders_consistently() -> None:
    """The service login is the auth user; all confs share one placeholder set."""
    texts = {
        "config": (ROOT / "config" / "nats-server.conf").read_text("utf-8"),
        "compose": (DEPLOY / "nats-server.conf").read_text("utf-8"),
        "kubernetes": _k8s("ConfigMap", "nats-config")["data"]["nats.conf"],
    }

    keys = {name: _conf_keys(text) for name, text in texts.items()}

    assert all(k[0] == k[1] for k in keys.values())
    assert len(set(keys.values())) == 1


def _conf_accounts(text: str) -> set[str]:
    block = text.split("\naccounts {", 1)[1].split("\n}", 1)[0]
    return set(re.findall(r"^\s*(\w+)\s*\{", block, re.MULTILINE))


def test_policies_place_users_only_in_accounts_the_server_has(tmp_path: Path) -> None:
    """Each shipped policy names accounts its nats-server config defines."""
    k8s_policy = tmp_path / "policy.yaml"
    k8s_policy.write_text(
        _k8s("ConfigMap", "nats-auth-callout-policy")["data"]["policy.yaml"]
    )
    compose_env = COMPOSE["services"]["callout"]["environment"]
    compose_policy = (
        ROOT / "config" / PurePosixPath(compose_env["CALLOUT_POLICY_FILE"]).name
    )
    pairs = {
        "compose": (compose_policy, (DEPLOY / "nats-server.conf").read_text("utf-8")),
        "kubernetes": (
            k8s_policy,
            _k8s("ConfigMap", "nats-config")["data"]["nats.conf"],
        ),
    }

    for policy, conf in pairs.values():
        accounts = set(load_policy(policy).accounts)
        assert accounts
        assert accounts <= _conf_accounts(conf) - {"AUTH", "SYS"}


# --- Kubernetes --------------------------------------------------------------


def test_kubernetes_yaml_parses_and_kustomization_lists_existing_files() -> None:
    """Every manifest parses; kustomization's resources exist; no Secret in them."""
    kustomization = _yaml(K8S / "kustomization.yaml")
    resources = [K8S / r for r in kustomization["resources"]]

    kinds = sorted(d["kind"] for r in resources for d in _yaml_all(r))

    assert [r for r in resources if not r.is_file()] == []
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "Namespace",
        "NetworkPolicy",
        "Service",
    ]
    assert _yaml(K8S / "seeds-secret.example.yaml")["kind"] == "Secret"
    assert isinstance(_yaml(K8S / "helm-values.yaml"), dict)


def test_kubernetes_nats_conf_passes_nats_server_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ConfigMap's nats.conf is accepted by `nats-server -t`."""
    conf = tmp_path / "nats.conf"
    conf.write_text(_k8s("ConfigMap", "nats-config")["data"]["nats.conf"])
    monkeypatch.setenv("POD_NAME", "nats-0")  # the Deployment sets it (downward API)

    result = check_config(conf)

    assert result.returncode == 0, result.stdout


def test_kubernetes_policy_loads(tmp_path: Path) -> None:
    """The policy ConfigMap holds a policy the service loads."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        _k8s("ConfigMap", "nats-auth-callout-policy")["data"]["policy.yaml"]
    )

    assert [u.name for u in load_policy(policy).users] == ["john-doe"]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def _mounted(
    container: dict[str, Any], volumes: list[dict[str, Any]], path: str
) -> tuple[dict[str, Any], str]:
    """The volume a file path lies in, and the file's name in it."""
    file = PurePosixPath(path)
    by_name = {v["name"]: v for v in volumes}
    hits = [
        m
        for m in container["volumeMounts"]
        if PurePosixPath(m["mountPath"]) == file.parent
    ]
    assert len(hits) == 1, path
    return by_name[hits[0]["name"]], file.name


def _check_callout_container(
    container: dict[str, Any], volumes: list[dict[str, Any]]
) -> None:
    """Settings, seed files from the Secret, policy from its ConfigMap, probes."""
    env = _env(container)
    _assert_settings(env)
    assert container["args"] == ["run"]
    assert env["CALLOUT_NATS_URL"] == "nats://127.0.0.1:4222"  # the pod's own server
    for setting, key in SEED_SETTINGS.items():
        volume, name = _mounted(container, volumes, env[setting])
        assert name == key
        assert volume["secret"]["secretName"] == "nats-auth-callout-seeds"
        assert volume["secret"]["defaultMode"] == 0o440
    volume, name = _mounted(container, volumes, env["CALLOUT_POLICY_FILE"])
    assert volume["configMap"]["name"] == "nats-auth-callout-policy"
    assert name == "policy.yaml"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    ready, live = container["readinessProbe"], container["livenessProbe"]
    assert ready["httpGet"]["path"] == "/readyz"
    assert live["httpGet"]["path"] == "/healthz"
    assert ports[ready["httpGet"]["port"]] == _port(env["CALLOUT_HTTP_LISTEN"])
    assert ports[live["httpGet"]["port"]] == _port(env["CALLOUT_HTTP_LISTEN"])
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }
    assert env["CALLOUT_THREADS"] == container["resources"]["limits"]["cpu"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_kubernetes_deployment_wires_the_sidecar() -> None:
    """The callout sidecar reads its seeds, policy and probes from what exists."""
    pod = _k8s("Deployment")["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    volumes = pod["volumes"]
    config_maps = {
        d["metadata"]["name"]: d for d in _k8s_docs() if d["kind"] == "ConfigMap"
    }

    _check_callout_container(containers["callout"], volumes)
    nats = containers["nats"]
    volume, name = _mounted(nats, volumes, nats["args"][1])
    assert nats["args"][0] == "--config"
    assert name in config_maps[volume["configMap"]["name"]]["data"]
    assert {v["configMap"]["name"] for v in volumes if "configMap" in v} == set(
        config_maps
    )
    assert nats["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == 10001


def test_kubernetes_every_container_has_cpu_and_memory_limits() -> None:
    """Both containers (and the Helm sidecar) request and cap CPU and memory."""
    pod = _k8s("Deployment")["spec"]["template"]["spec"]
    values = _yaml(K8S / "helm-values.yaml")
    helm = [
        p["value"]
        for p in values["podTemplate"]["patch"]
        if p["path"] == "/spec/containers/-"
    ]

    containers = [*pod["containers"], *helm]

    assert {c["name"] for c in pod["containers"]} == {"nats", "callout"}
    for container in containers:
        resources = container["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"}, container["name"]
        assert set(resources["limits"]) == {"cpu", "memory"}, container["name"]


def test_kubernetes_resources_live_in_their_own_restricted_namespace() -> None:
    """Every resource names one namespace, not default, made here with PSA."""
    namespace = _k8s("Namespace")
    name = namespace["metadata"]["name"]
    others = [d for d in _k8s_docs() if d["kind"] != "Namespace"]
    secret = _yaml(K8S / "seeds-secret.example.yaml")
    kustomization = _yaml(K8S / "kustomization.yaml")
    comments = (K8S / "nats-auth-callout.yaml").read_text("utf-8")

    assert name != "default"
    assert {d["metadata"].get("namespace") for d in others} == {name}
    assert secret["metadata"]["namespace"] == name
    assert kustomization["namespace"] == name
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # the documented secret command targets it too
    assert f"kubectl -n {name} create secret generic" in comments


def test_kubernetes_service_and_network_policy_select_the_pod() -> None:
    """Clients reach 4222/8080; metrics only from the monitoring namespace."""
    deployment = _k8s("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    nats = next(
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == "nats"
    )
    service = _k8s("Service")
    policy = _k8s("NetworkPolicy")
    ingress = policy["spec"]["ingress"]
    open_rule = [r for r in ingress if "from" not in r]
    metrics_rule = [r for r in ingress if "from" in r]

    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {
        p["name"] for p in nats["ports"] if p["name"] != "monitor"
    }
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert [p["port"] for r in open_rule for p in r["ports"]] == [4222, 8080]
    assert [p["port"] for r in metrics_rule for p in r["ports"]] == [HTTP_PORT, 8222]
    assert [r["from"] for r in metrics_rule] == [
        [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                }
            }
        ]
    ]


def test_kubernetes_example_secret_fails_closed(tmp_path: Path) -> None:
    """Applying the example Secret as is gives a service that refuses to start."""
    secret = _yaml(K8S / "seeds-secret.example.yaml")
    assert set(secret["stringData"]) == SEEDS
    for name, value in secret["stringData"].items():
        (tmp_path / name).write_text(value)

    with pytest.raises(ConfigError):
        load_keys(
            Settings(
                issuer_seed_file=tmp_path / "issuer.nk",
                xkey_seed_file=tmp_path / "xkey.nk",
            )
        )


def test_helm_values_add_the_same_sidecar_and_a_valid_config(tmp_path: Path) -> None:
    """podTemplate.patch adds the callout container and its volumes; config.merge
    passes `nats-server -t` once rendered (the chart writes JSON)."""
    values = _yaml(K8S / "helm-values.yaml")
    patch = values["podTemplate"]["patch"]
    containers = [p["value"] for p in patch if p["path"] == "/spec/containers/-"]
    volumes = [p["value"] for p in patch if p["path"] == "/spec/volumes/-"]
    merge = values["config"]["merge"]
    callout = merge["authorization"]["auth_callout"]
    conf = tmp_path / "nats.conf"
    conf.write_text(
        json.dumps({"port": 4222, "websocket": {"port": 8080, "no_tls": True}} | merge)
    )

    assert {p["op"] for p in patch} == {"add"}
    assert len(containers) == 1
    _check_callout_container(containers[0], volumes)
    assert values["podTemplate"]["merge"]["spec"]["securityContext"]["fsGroup"] == 10001
    assert values["config"]["websocket"]["enabled"] is True
    assert callout["auth_users"] == [merge["accounts"]["AUTH"]["users"][0]["nkey"]]
    result = check_config(conf)
    assert result.returncode == 0, result.stdout


# --- systemd -----------------------------------------------------------------

UNIT = SYSTEMD / "nats-auth-callout.service"


def unit_entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) in order; systemd allows repeated keys."""
    out, section = [], ""
    for raw in path.read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line!r}"
        out.append((section, key.strip(), value.strip()))
    return out


def _service(key: str) -> list[str]:
    return [v for s, k, v in unit_entries(UNIT) if s == "Service" and k == key]


def test_systemd_unit_is_hardened() -> None:
    """A dedicated user and the sandboxing docs/deployment.md promises."""
    sysusers = (SYSTEMD / "nats-auth-callout.sysusers").read_text("utf-8")

    assert {s for s, _, _ in unit_entries(UNIT)} == {"Unit", "Service", "Install"}
    user = _service("User")
    assert user == ["nats-auth-callout"]
    assert re.search(rf"^u {user[0]} ", sysusers, re.MULTILINE)
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "ExecReload": "/bin/kill -HUP $MAINPID",
    }
    assert {k: _service(k) for k in expected} == {k: [v] for k, v in expected.items()}
    assert _service("RestrictAddressFamilies") == ["AF_INET AF_INET6 AF_UNIX"]
    assert "@system-service" in _service("SystemCallFilter")
    assert _service("ExecStart")[0].endswith("nats-auth-callout run")


def test_systemd_seeds_are_credentials_and_settings_are_real() -> None:
    """Each seed setting points at %d/NAME and NAME is loaded with LoadCredential=."""
    env = dict(e.split("=", 1) for e in _service("Environment"))
    credentials = dict(c.split(":", 1) for c in _service("LoadCredential"))
    env_file_lines = (SYSTEMD / "nats-auth-callout.env").read_text("utf-8").splitlines()
    env_file = dict(
        line.split("=", 1) for line in env_file_lines if line and line[0] != "#"
    )

    _assert_settings(env)
    _assert_settings(env_file)
    assert set(credentials) == SEEDS
    assert {k: v for k, v in env.items() if k in SEED_SETTINGS} == {
        k: f"%d/{name}" for k, name in SEED_SETTINGS.items()
    }
    assert _service("EnvironmentFile") == [
        "/etc/nats-auth-callout/nats-auth-callout.env"
    ]
    assert not [k for k in env_file if "SEED" in k or "PASSWORD" in k]


def test_systemd_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    """`systemd-analyze verify` is silent and the exposure score is low.

    verify insists that ExecStart exists, so the copy checked here runs this
    venv's nats-auth-callout instead of /opt/...; nothing else is changed.
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze not found (Debian: apt-get install systemd)")
    script = Path(sys.executable).parent / "nats-auth-callout"
    unit = tmp_path / UNIT.name
    unit.write_text(
        UNIT.read_text("utf-8").replace(
            "/opt/nats-auth-callout/bin/nats-auth-callout", str(script)
        )
    )

    verify = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert score is not None, security.stdout + security.stderr
    assert float(score.group(1)) <= 2.0, security.stdout
