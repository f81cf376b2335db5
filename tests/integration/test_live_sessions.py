"""
Live sessions on one real nats-server: the system-account link, and kicks
after a reload (docs/operations.md "Revocation and live sessions").

One server (TCP and WebSocket) with a SYS login in `auth_users`, one service
with CALLOUT_SYSTEM_USER; each test writes the policy it needs and waits for
the service's `callout.sessions_reviewed` line, which comes after the kicks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from nats.aio.client import Client

from tests.integration.clients import CONNECT_OPTS, user_info
from tests.integration.opsenv import (
    PASSWORDS,
    SYSTEM_ENV,
    Keys,
    bcrypt_hash,
    http_port,
    scrape,
    start_service,
)
from tests.natsserver import NatsServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.service_process import Record, ServiceProcess

NARROW = "users.{{user}}.narrow.>"


def policy(
    hashes: dict[str, str], *, narrow: tuple[str, ...] = (), sessions: str = ""
) -> str:
    """Password users with role `customer`, or `narrow` for the names given."""
    lines = [
        "version: 1",
        "accounts: {APP: {}}",
        "defaults: {account: APP, expires: 1h}",
        "roles:",
        "  customer:",
        '    publish: {allow: ["users.{{user}}.>", "$SYS.REQ.USER.INFO"]}',
        '    subscribe: {allow: ["users.{{user}}.>", "_INBOX.>"]}',
        "  narrow:",
        f'    publish: {{allow: ["{NARROW}", "$SYS.REQ.USER.INFO"]}}',
        '    subscribe: {allow: ["users.{{user}}.>", "_INBOX.>"]}',
    ]
    if sessions:
        lines.append(f"sessions: {sessions}")
    lines.append("users:" if hashes else "users: []")
    for name, hashed in hashes.items():
        role = "narrow" if name in narrow else "customer"
        lines += [
            f"  - name: {name}",
            f'    password: "{hashed}"',
            f"    roles: [{role}]",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class Conn:
    """A client connection that records when the server closed it."""

    nc: Client
    closed_at: float | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[str] = field(default_factory=list)


@dataclass
class Env:
    server: NatsServer
    service: ServiceProcess
    policy_path: Path
    hashes: dict[str, str]
    clients: list[Conn] = field(default_factory=list)

    def reviews(self) -> int:
        return len(self.service.events("callout.sessions_reviewed"))

    async def apply(self, text: str) -> Record:
        """Write `text`, SIGHUP, and return the review that reload started."""
        before = self.reviews()
        self.policy_path.write_text(text)
        assert self.service._proc is not None
        self.service._proc.send_signal(signal.SIGHUP)
        await asyncio.to_thread(
            self.service.wait_for, lambda _: self.reviews() > before, 10
        )
        return self.service.events("callout.sessions_reviewed")[before]

    async def connect(self, name: str, transport: str = "tcp") -> Conn:
        conn: Conn

        async def on_closed() -> None:
            conn.closed_at = time.time()
            conn.closed.set()

        async def on_error(exc: Exception) -> None:
            conn.errors.append(str(exc))

        nc = Client()
        conn = Conn(nc)
        await nc.connect(
            self.server.url_for(transport),
            user=name,
            password=PASSWORDS[name],
            closed_cb=on_closed,
            error_cb=on_error,
            **CONNECT_OPTS,
        )
        self.clients.append(conn)
        return conn


@pytest.fixture(name="env", scope="module")
def _env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("live")
    keys = Keys.create(directory)
    server = NatsServer(keys.body(system=True), directory / "nats").start()
    hashes = {name: bcrypt_hash(pw) for name, pw in PASSWORDS.items()}
    path = directory / "policy.yaml"
    path.write_text(policy(hashes))
    service = start_service(
        keys.env(server.client_url, path, **SYSTEM_ENV),
        directory,
        wait="callout.started",
    )
    service.wait_for_event("callout.system_connected", timeout=10)
    yield Env(server, service, path, hashes)
    assert service.stop() == 0
    server.stop()
    log = "\n".join(service.lines)
    assert "sys-pw" not in log
    for secret in PASSWORDS.values():
        assert secret not in log


@pytest.fixture(autouse=True)
async def _close_clients(env: Env) -> Any:
    start = policy(env.hashes)  # every test starts from here
    if env.policy_path.read_text() != start:
        await env.apply(start)
    yield
    for conn in env.clients:
        await conn.nc.close()
    env.clients.clear()


def _at(record: Record) -> float:
    return dt.datetime.fromisoformat(record["timestamp"]).timestamp()


def _kicks(env: Env, since: int) -> list[Record]:
    return env.service.events("callout.session_kicked")[since:]


async def test_reload_removing_a_user_kicks_tcp_and_websocket_within_2s(
    env: Env,
) -> None:
    """A reload without alice closes her TCP and WebSocket links in 2 s, not bob's."""
    tcp, ws = await env.connect("alice"), await env.connect("alice", "websocket")
    bob = await env.connect("bob")
    kicked_before = len(_kicks(env, 0))
    without = {n: h for n, h in env.hashes.items() if n != "alice"}

    review = await env.apply(policy(without))
    async with asyncio.timeout(2):
        await tcp.closed.wait()
        await ws.closed.wait()
    reloaded = env.service.events("callout.policy_reloaded")[-1]
    await bob.nc.flush(timeout=2)  # still served

    assert tcp.closed_at is not None
    assert ws.closed_at is not None
    assert max(tcp.closed_at, ws.closed_at) - _at(reloaded) < 2.0
    assert bob.nc.is_connected
    assert (review["stale"], review["kicked"]) == (2, 2)
    kicks = _kicks(env, kicked_before)
    assert {(k["principal"], k["cause"]) for k in kicks} == {("alice", "removed")}
    assert {k["client_type"] for k in kicks} == {"nats", "websocket"}
    metrics = await scrape(http_port(env.service))
    assert metrics[("callout_kicks_total", (("cause", "removed"),))] >= 2


async def test_reload_narrowing_a_grant_kicks_and_reconnect_gets_it(env: Env) -> None:
    """A narrower publish allow kicks alice; reconnected, she holds the narrow one."""
    old = await env.connect("alice")
    bob = await env.connect("bob")

    review = await env.apply(policy(env.hashes, narrow=("alice",)))
    async with asyncio.timeout(2):
        await old.closed.wait()
    again = await env.connect("alice")
    info = await user_info(again.nc)
    await again.nc.publish("users.alice.wide", b"x")
    await again.nc.flush(timeout=2)
    violation = 'Publish Violation - Subject "users.alice.wide"'
    await asyncio.to_thread(env.server.wait_for_log, violation, 3)

    assert review["kicked"] == 1
    # the server lists a permission set in no fixed order
    assert set(info["permissions"]["publish"]["allow"]) == {
        "users.alice.narrow.>",
        "$SYS.REQ.USER.INFO",
    }
    assert bob.nc.is_connected


async def test_unchanged_principals_and_kick_on_reload_false_keep_connections(
    env: Env,
) -> None:
    """Adding a user kicks nobody, and `kick_on_reload: false` kicks no one removed."""
    alice, bob = await env.connect("alice"), await env.connect("bob")
    only = {n: env.hashes[n] for n in ("alice", "bob")}
    await env.apply(policy(only))  # carol and dave gone: no connections of theirs

    added = await env.apply(policy(only | {"carol": env.hashes["carol"]}))
    off = await env.apply(
        policy({"carol": env.hashes["carol"]}, sessions="{kick_on_reload: false}")
    )
    await alice.nc.flush(timeout=2)
    await bob.nc.flush(timeout=2)

    assert added["stale"] == 0
    assert off["kicked"] == 0
    assert alice.nc.is_connected
    assert bob.nc.is_connected


async def test_without_system_login_a_warning_and_no_kicks(tmp_path: Path) -> None:
    """Without CALLOUT_SYSTEM_*: one warning naming it, and a reload kicks nobody."""
    keys = Keys.create(tmp_path)
    hashes = {"alice": bcrypt_hash(PASSWORDS["alice"])}
    with NatsServer(keys.body(system=True), tmp_path / "nats") as server:
        path = tmp_path / "policy.yaml"
        path.write_text(policy(hashes))
        service = start_service(
            keys.env(server.client_url, path), tmp_path, wait="callout.started"
        )
        env = Env(server, service, path, hashes)
        try:
            alice = await env.connect("alice")
            path.write_text(policy({}))
            assert service._proc is not None
            service._proc.send_signal(signal.SIGHUP)
            await asyncio.to_thread(
                service.wait_for_event, "callout.policy_reloaded", 5
            )
            await alice.nc.flush(timeout=2)
            connected = alice.nc.is_connected
            await alice.nc.close()
        finally:
            assert service.stop() == 0
    warnings = [r["warning"] for r in service.events("callout.config_warning")]

    assert connected
    assert sum("CALLOUT_SYSTEM_USER" in w for w in warnings) == 1
    assert not service.events("callout.system_")
    assert not service.events("callout.sessions_")
