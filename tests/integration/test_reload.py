"""
Hot reload of the policy, against a real server and the service process.

The policy sits in a Kubernetes ConfigMap layout (`policy.yaml` ->
`..data/policy.yaml`, `..data` -> `..vN`), so every kind of update is seen
through symlinks. The tests run in order on one server and service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from tests.integration.clients import connect, connect_fails
from tests.integration.opsenv import (
    PASSWORDS,
    Keys,
    bcrypt_hash,
    policy_yaml,
    start_service,
)
from tests.natsserver import NatsServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.service_process import Record, ServiceProcess

SLOW = "slow-pw-Ee5"  # bcrypt cost 13: ~0.5 s, long enough to reload meanwhile
DELIVERED = re.compile(r"->> \[H?MSG \$SYS\.REQ\.USER\.AUTH ")


@dataclass
class Env:
    server: NatsServer
    service: ServiceProcess
    configmap: Path
    hashes: dict[str, str]
    revision: int = 1

    @property
    def policy_path(self) -> Path:
        return self.configmap / "policy.yaml"

    def text(self, *names: str) -> str:
        return policy_yaml({n: self.hashes[n] for n in ("alice", "slow", *names)})

    def swap(self, text: str) -> None:
        """Update the way the kubelet does: new dir, then rename the `..data` link."""
        self.revision += 1
        target = self.configmap / f"..v{self.revision}"
        target.mkdir()
        (target / "policy.yaml").write_text(text)
        link = self.configmap / "..data_tmp"
        link.symlink_to(target.name)
        link.replace(self.configmap / "..data")

    def real_file(self) -> Path:
        return self.policy_path.resolve()

    def reloads(self) -> list[Record]:
        return self.service.events("callout.policy_reload")

    def next_reload(self, before: int, timeout: float = 5.0) -> Record:
        self.service.wait_for(lambda _: len(self.reloads()) > before, timeout)
        return self.reloads()[before]


def _version(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _at(record: Record) -> float:
    return dt.datetime.fromisoformat(record["timestamp"]).timestamp()


@pytest.fixture(name="env", scope="module")
def _env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("reload")
    keys = Keys.create(directory)
    hashes = {name: bcrypt_hash(pw) for name, pw in PASSWORDS.items()}
    hashes["slow"] = bcrypt_hash(SLOW, cost=13)
    server = NatsServer(keys.body(timeout=5) + "trace: true\n", directory / "nats")
    server.start()
    configmap = directory / "configmap"
    (configmap / "..v1").mkdir(parents=True)
    (configmap / "..data").symlink_to("..v1")
    (configmap / "policy.yaml").symlink_to("..data/policy.yaml")
    env = Env(server, None, configmap, hashes)  # type: ignore[arg-type]
    (configmap / "..v1" / "policy.yaml").write_text(env.text())
    env.service = start_service(
        keys.env(server.client_url, env.policy_path), directory, wait="callout.started"
    )
    yield env
    assert env.service.stop() == 0
    server.stop()
    log = "\n".join(env.service.lines)
    for secret in [*PASSWORDS.values(), SLOW, keys.issuer.export_seed()]:
        assert secret not in log


async def _connect_ok(env: Env, name: str, password: str) -> Record:
    """Connect as `name` and return the decision line that let it in."""
    before = len(env.service.events())
    nc = await connect(env.server.client_url, user=name, password=password)
    await nc.close()

    def mine() -> list[Record]:
        return [e for e in env.service.events()[before:] if e.get("user") == name]

    env.service.wait_for(lambda _: bool(mine()))
    line = mine()[0]
    assert line["decision"] == "allow"
    return line


async def test_configmap_swap_adds_a_user_within_2s_without_a_signal(env: Env) -> None:
    """A user added by a `..data` symlink swap can connect within 2 s."""
    error, _ = await connect_fails(
        env.server.client_url, user="bob", password=PASSWORDS["bob"]
    )
    before = len(env.reloads())
    text = env.text("bob")

    changed_at = time.time()
    env.swap(text)
    reloaded = env.next_reload(before, timeout=3)
    line = await _connect_ok(env, "bob", PASSWORDS["bob"])

    assert "authorization violation" in error
    assert reloaded["event"] == "callout.policy_reloaded"
    assert reloaded["trigger"] == "file"
    assert reloaded["new_version"] == _version(text)
    assert _at(reloaded) - changed_at < 2.0
    assert line["policy_version"] == _version(text)


async def test_editor_rename_is_picked_up(env: Env) -> None:
    """An editor's save (write a temp file, rename it over the target) reloads."""
    before = len(env.reloads())
    text = env.text("bob", "carol")
    temp = env.real_file().with_name(".policy.yaml.swp")

    temp.write_text(text)
    temp.replace(env.real_file())
    reloaded = env.next_reload(before, timeout=3)
    line = await _connect_ok(env, "carol", PASSWORDS["carol"])

    assert reloaded["new_version"] == _version(text)
    assert line["policy_version"] == _version(text)


async def test_sighup_reloads_at_once(env: Env) -> None:
    """SIGHUP reloads before the file watcher would have noticed."""
    before = len(env.reloads())
    text = env.text("bob", "carol", "dave")

    env.real_file().write_text(text)
    assert env.service._proc is not None
    env.service._proc.send_signal(signal.SIGHUP)
    reloaded = env.next_reload(before)
    line = await _connect_ok(env, "dave", PASSWORDS["dave"])

    assert reloaded["trigger"] == "sighup"
    assert reloaded["new_version"] == _version(text)
    assert line["policy_version"] == _version(text)


def _unknown_role(good: str) -> tuple[str, int]:
    """The good policy plus a user with an undeclared role; that line's number."""
    hashed = bcrypt_hash("eve-pw")
    text = good + f'  - name: eve\n    password: "{hashed}"\n    roles: [nope]\n'
    return text, text.count("\n")


@pytest.mark.parametrize("kind", ["bad-yaml", "unknown-role"])
async def test_broken_policy_is_refused_and_the_old_one_serves(
    env: Env, kind: str
) -> None:
    """Bad YAML or a bad reference: logged with its line, the old policy stays."""
    good = env.real_file().read_text()
    if kind == "bad-yaml":
        text, line, message = "version: 1\naccounts:\n  APP: {\n", 4, "invalid YAML"
    else:
        (text, line), message = _unknown_role(good), "unknown role 'nope'"
    before = len(env.reloads())

    env.swap(text)
    failed = env.next_reload(before, timeout=3)
    still = await _connect_ok(env, "alice", PASSWORDS["alice"])
    env.swap(good)
    restored = env.next_reload(before + 1, timeout=3)

    assert failed["event"] == "callout.policy_reload_failed"
    assert failed["level"] == "error"
    assert failed["policy_version"] == _version(good)
    assert [p for p in failed["problems"] if message in p] == [
        p for p in failed["problems"] if p.startswith(f"{env.policy_path}:{line}: ")
    ]
    assert any(message in p for p in failed["problems"])
    assert still["policy_version"] == _version(good)
    assert restored["event"] == "callout.policy_reloaded"
    assert restored["changed"] is False


async def test_request_in_flight_during_reload_is_answered(env: Env) -> None:
    """A request that started on the old policy is answered after the swap."""
    before = len(env.reloads())
    old = env.real_file().read_text()
    new = env.text("bob", "carol", "dave", "alice") + "# another version\n"
    mark = env.server.log_mark()

    attempt = asyncio.create_task(
        connect(env.server.client_url, user="slow", password=SLOW)
    )
    await asyncio.to_thread(env.server.wait_for_log, DELIVERED, 5.0, since=mark)
    decisions = len(env.service.events())
    env.real_file().write_text(new)
    assert env.service._proc is not None
    env.service._proc.send_signal(signal.SIGHUP)
    reloaded = await asyncio.to_thread(env.next_reload, before)
    nc = await attempt
    await nc.close()
    await asyncio.to_thread(
        env.service.wait_for, lambda _: len(env.service.events()) > decisions
    )
    line = env.service.events()[decisions]
    records = env.service.records

    assert reloaded["new_version"] == _version(new)
    assert (line["user"], line["decision"]) == ("slow", "allow")
    assert line["policy_version"] == _version(old)  # it started before the swap
    assert records.index(reloaded) < records.index(line)
