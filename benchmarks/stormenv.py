"""
The three stacks every storms.py scenario compares, on the same users.

- floor: nats-server with the users' plaintext passwords in its config (what
  a connect costs with no callout and no hashing);
- bcrypt: the same config with the users' bcrypt hashes (the usual
  alternative: nats-server checks bcrypt on every connect);
- callout: nats-server with auth_callout and this service, the same hashes
  in its policy;
- minimal (sequential and warm storm only): nats-server with auth_callout
  and minimalresponder.py, the least a correct responder does: what a
  connect through any callout costs at best on this machine.

Hashes are cost 12 (`$2a$12$`, what `nats server passwd --cost 12` makes).
Passwords are derived from the user name, so the hashes are cached in the
temporary directory between runs (hashing 500 users takes a minute on 2
cores); a fresh service never saw any of them, whatever the cache holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import bcrypt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rawclient import Login  # noqa: E402

from tests.integration.opsenv import Keys, policy_yaml  # noqa: E402
from tests.natsserver import NatsServer  # noqa: E402
from tests.service_process import ServiceProcess  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

COST = 12
STACKS = ("floor", "callout", "bcrypt")
MINIMAL = "minimal"  # a lower bound, not a way to deploy: scenarios 2 and 3 only
HASH_CACHE = Path(tempfile.gettempdir()) / "nats-auth-callout-bench-hashes.json"


def password(user: str) -> str:
    return f"{user}-storm-pw"


def cores() -> int:
    """CPUs this process may run on (affinity, not the host's count)."""
    return len(os.sched_getaffinity(0))


def hashes(users: Iterable[str], cost: int = COST) -> dict[str, str]:
    """user -> `$2a$` bcrypt hash of its password, from the cache or computed."""
    try:
        cache: dict[str, str] = json.loads(HASH_CACHE.read_text())
    except (OSError, ValueError):
        cache = {}
    wanted = list(users)
    todo = [u for u in wanted if not cache.get(u, "").startswith(f"$2a${cost:02d}$")]
    with ThreadPoolExecutor(cores()) as pool:  # bcrypt releases the GIL
        made = pool.map(
            lambda u: bcrypt.hashpw(
                password(u).encode(), bcrypt.gensalt(cost, prefix=b"2a")
            ).decode(),
            todo,
        )
        cache.update(zip(todo, made, strict=True))
    if todo:
        HASH_CACHE.write_text(json.dumps(cache))
    return {u: cache[u] for u in wanted}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and of its children's threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (the workers of `run --workers N`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == str(pid):
                found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds each process group spent between `start()` and `stop()`."""

    def __init__(self, groups: Mapping[str, list[int]]) -> None:
        self.groups = groups
        self.spent: dict[str, float] = {}
        self._before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        out = {}
        for name, pids in self.groups.items():
            total = 0.0
            for pid in pids:
                with contextlib.suppress(OSError):
                    total += cpu_seconds(pid)
            out[name] = total
        return out

    def start(self) -> None:
        self._before = self._now()

    def stop(self) -> str:
        after = self._now()
        self.spent = {k: after[k] - self._before[k] for k in after}
        return ", ".join(f"{k} {v:.2f}" for k, v in self.spent.items())


def static_body(secrets: Mapping[str, str]) -> str:
    """Users with these passwords (plaintext or hashes) in account APP, no callout."""
    users = ",\n    ".join(
        f"{{user: {json.dumps(u)}, password: {json.dumps(p)}}}"
        for u, p in secrets.items()
    )
    return (
        f"accounts {{\n  APP {{ users: [\n    {users}\n  ] }}\n}}\n"
        "authorization { timeout: 2 }\n"
    )


def pid_of(process: NatsServer | ServiceProcess) -> int:
    proc = process._proc  # noqa: SLF001 - the harness keeps its Popen private
    assert proc is not None  # noqa: S101 - started
    return proc.pid


def _service(env: dict[str, str], workers: int, cwd: Path) -> ServiceProcess:
    env = env | {"CALLOUT_HTTP_LISTEN": "", "CALLOUT_WORKERS": str(workers)}
    service = ServiceProcess(env, cwd).start(wait_for=None)
    service.wait_for_event("callout.started", timeout=30, count=workers)
    return service


@dataclass
class Stacks:
    """The floor, bcrypt and callout servers (and the service) of one run."""

    directory: Path
    users: dict[str, str]  # name -> hash
    workers: int = 1
    names: tuple[str, ...] = STACKS  # the stacks the scenarios run
    with_minimal: bool = True  # also the minimal stack, in scenarios 2 and 3
    servers: dict[str, NatsServer] = field(default_factory=dict)
    service: ServiceProcess | None = None
    keys: Keys | None = None
    minimal: ServiceProcess | None = None  # minimalresponder.py, when wanted

    def start(self) -> None:
        self.servers["floor"] = NatsServer(
            self.plain_body(), self.directory / "floor", websocket=False
        ).start()
        self.servers["bcrypt"] = NatsServer(
            self.bcrypt_body(), self.directory / "bcrypt", websocket=False
        ).start()
        self.keys = Keys.create(self.directory / "keys")
        self.servers["callout"] = NatsServer(
            self.keys.body(), self.directory / "callout", websocket=False
        ).start()
        self.start_service(self.workers)
        if self.with_minimal:
            self.servers[MINIMAL] = NatsServer(
                self.keys.body(), self.directory / MINIMAL, websocket=False
            ).start()
            env = self.keys.env(self.servers[MINIMAL].client_url, self._policy())
            script = str(Path(__file__).with_name("minimalresponder.py"))
            self.minimal = ServiceProcess(env, self.directory, [script])
            self.minimal.start(wait_for="callout.started")

    def connect_stacks(self) -> tuple[str, ...]:
        """The stacks of the connect-latency scenarios: the minimal one too."""
        order = ("floor", MINIMAL, "callout", "bcrypt")
        chosen = {*self.names, *((MINIMAL,) if self.minimal is not None else ())}
        return tuple(s for s in order if s in chosen)

    def start_service(self, workers: int) -> ServiceProcess:
        """(Re)start the service with `workers` processes; a new, empty cache."""
        if self.service is not None:
            self.service.stop()
        assert self.keys is not None  # noqa: S101 - start() made them
        env = self.keys.env(self.servers["callout"].client_url, self._policy())
        self.service = _service(env, workers, self.directory)
        return self.service

    def _policy(self) -> Path:
        policy = self.directory / "policy.yaml"
        policy.write_text(policy_yaml(self.users))
        return policy

    def direct(self, workers: int) -> tuple[NatsServer, ServiceProcess]:
        """
        A plain server where a client may publish to the callout subject,
        and a service answering there (nats-server forbids clients to
        publish on $SYS.REQ.USER.AUTH when auth_callout is on).
        """
        assert self.keys is not None  # noqa: S101 - start() made them
        server = NatsServer(
            static_body({"svc": "svc-pw", "driver": "driver-pw"}),
            self.directory / f"direct-{workers}",
            websocket=False,
        ).start()
        env = {
            "CALLOUT_NATS_URL": server.client_url,
            "CALLOUT_NATS_USER": "svc",
            "CALLOUT_NATS_PASSWORD": "svc-pw",
            "CALLOUT_ISSUER_SEED_FILE": str(self.keys.directory / "issuer.nk"),
            "CALLOUT_POLICY_FILE": str(self._policy()),
        }
        return server, _service(env, workers, self.directory)

    def plain_body(self) -> str:
        return static_body({u: password(u) for u in self.users})

    def bcrypt_body(self) -> str:
        return static_body(self.users)

    def meter(self, stack: str) -> CpuMeter:
        """CPU of the stack's nats-server, the service (callout) and this process."""
        groups = {"nats-server": [pid_of(self.servers[stack])]}
        if stack == "callout" and self.service is not None:
            service = pid_of(self.service)
            groups["service"] = [service, *children(service)]
        if stack == MINIMAL and self.minimal is not None:
            groups["responder"] = [pid_of(self.minimal)]
        groups["clients"] = [os.getpid()]
        return CpuMeter(groups)

    def login(self, stack: str, user: str) -> Login:
        return Login("127.0.0.1", self.servers[stack].port, user, password(user))

    def forget(self) -> None:
        """Empty every worker's verification cache (SIGHUP: a policy reload)."""
        assert self.service is not None  # noqa: S101 - started
        done = len(self.service.events("callout.policy_reloaded"))
        os.kill(pid_of(self.service), signal.SIGHUP)
        self.service.wait_for_event(
            "callout.policy_reloaded", timeout=30, count=done + self.workers
        )

    def swap_body(self, stack: str, body: str) -> None:
        """Give a server another config, used from its next (re)start on."""
        server = self.servers[stack]
        server.body = body
        server._write_config()  # noqa: SLF001 - keeps the pinned ports

    def restart_bcrypt(self) -> None:
        """Stop and start the bcrypt server: its goroutines keep hashing for
        clients long gone, which would steal the CPU from the next figure."""
        self.swap_body("bcrypt", self.bcrypt_body())
        self.servers["bcrypt"].restart()

    def stop(self) -> None:
        for service in (self.service, self.minimal):
            if service is not None:
                service.stop()
        for server in self.servers.values():
            server.stop()
