"""
Helpers for the operations tests: keys on disk, a policy, HTTP probes, a
config-mode nats-server body, and a service process with its HTTP endpoint.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from service.protocol.nkeys import KeyPair, Prefix
from tests.builders import hash_secret
from tests.natsserver import NatsServer, config_mode_body
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    import re
    from collections.abc import Mapping
    from pathlib import Path

SYSTEM_LOGIN = ("callout-sys", "sys-pw-Q7w")  # the service's system-account link
# its settings, for `Keys.env(..., **SYSTEM_ENV)`
SYSTEM_ENV = {
    "CALLOUT_SYSTEM_USER": SYSTEM_LOGIN[0],
    "CALLOUT_SYSTEM_PASSWORD": SYSTEM_LOGIN[1],
}
PASSWORDS = {
    "alice": "alice-pw-R2d",
    "bob": "bob-pw-C3p",
    "carol": "carol-pw-K9x",
    "dave": "dave-pw-M4q",
}


def bcrypt_hash(secret: str, cost: int = 4) -> str:
    return hash_secret(secret, cost)


def policy_yaml(
    users: Mapping[str, str], *, account: str = "APP", extra: str = ""
) -> str:
    """A policy with one password user (a hash) per entry, role `customer`."""
    lines = [
        "version: 1",
        "accounts:",
        f'  "{account}": {{}}',
        "defaults:",
        f'  account: "{account}"',
        "  expires: 1h",
        "roles:",
        "  customer:",
        '    publish: {allow: ["users.{{user}}.>", "$SYS.REQ.USER.INFO"]}',
        '    subscribe: {allow: ["users.{{user}}.>", "_INBOX.>"]}',
        "users:",
    ]
    for name, hashed in users.items():
        lines += [
            f"  - name: {name}",
            f'    password: "{hashed}"',
            "    roles: [customer]",
        ]
    return "\n".join(lines) + "\n" + extra


# For tests that use wrong passwords as bcrypt load: the login throttle
# (policy `throttle`) would refuse them without bcrypt after a few.
NO_THROTTLE = "throttle: {exempt_networks: [127.0.0.0/8]}\n"


def free_port() -> int:
    """A loopback port that was free a moment ago (for configs that need one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_on(server: NatsServer, port: int) -> NatsServer:
    """Pin the client port before the first start (the harness picks one)."""
    server.port = port
    server._write_config()
    return server


@dataclass
class Keys:
    """Issuer and service login seeds, written to files in `directory`."""

    issuer: KeyPair
    login: KeyPair
    directory: Path

    @classmethod
    def create(cls, directory: Path) -> Keys:
        directory.mkdir(parents=True, exist_ok=True)
        keys = cls(
            KeyPair.create(Prefix.ACCOUNT), KeyPair.create(Prefix.USER), directory
        )
        (directory / "issuer.nk").write_text(keys.issuer.export_seed())
        (directory / "login.nk").write_text(keys.login.export_seed())
        return keys

    def body(
        self,
        *,
        xkey: str | None = None,
        timeout: float = 2,
        issuer: str = "",
        system: bool = False,
    ) -> str:
        """`config_mode_body` for these keys (nkey service login, account APP);
        `system` adds the SYS login of `SYSTEM_LOGIN`."""
        return config_mode_body(
            issuer=issuer or self.issuer.public_key,
            auth_nkey=self.login.public_key,
            xkey=xkey,
            timeout=timeout,
            system_user=SYSTEM_LOGIN if system else None,
        )

    def env(self, url: str, policy: Path, **extra: str) -> dict[str, str]:
        """The service's CALLOUT_* settings, HTTP on a free port."""
        return {
            "CALLOUT_NATS_URL": url,
            "CALLOUT_NATS_NKEY_SEED_FILE": str(self.directory / "login.nk"),
            "CALLOUT_ISSUER_SEED_FILE": str(self.directory / "issuer.nk"),
            "CALLOUT_POLICY_FILE": str(policy),
            "CALLOUT_HTTP_LISTEN": "127.0.0.1:0",
        } | extra


def start_service(env: Mapping[str, str], cwd: Path, *, wait: str) -> ServiceProcess:
    """Start the service; `wait` is the event that marks it started."""
    return ServiceProcess(env, cwd).start(wait_for=wait)


def http_port(service: ServiceProcess) -> int:
    """The port the service's HTTP endpoint bound (port 0 in the settings)."""
    return int(service.wait_for_event("callout.http_listening", timeout=15)["port"])


async def http_get(port: int, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1:port/path -> (status, body text)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the service's /metrics, keyed by name and sorted labels."""
    status, text = await http_get(port, "/metrics")
    assert status == 200, text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def count_lines(server: NatsServer, pattern: str | re.Pattern[str]) -> int:
    """How many server log lines contain (str) or match (pattern) `pattern`."""
    lines = server.log_text().splitlines()
    if isinstance(pattern, str):
        return sum(pattern in line for line in lines)
    return sum(pattern.search(line) is not None for line in lines)


def wait_for_lines(
    server: NatsServer, pattern: str, count: int, timeout: float = 10.0
) -> None:
    """Block until the server has logged `pattern` at least `count` times."""
    mark = 0
    for _ in range(count):
        line = server.wait_for_log(pattern, timeout, since=mark)
        mark = server.log_text().splitlines().index(line, mark) + 1
