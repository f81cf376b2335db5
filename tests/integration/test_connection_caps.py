"""
Connection caps on one real nats-server (docs/operations.md "Connection
caps"): `max_connections` counted from the servers' CONNZ and CONNECT /
DISCONNECT events over the service's system-account link, and the
`callout_live_connections` gauge read from the same view.

alice has `max_connections: 2` of her own; carol holds role `kiosk`, capped
at 2, and dave has the same role with an own cap of 4 (the own one wins);
bob has no cap.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from nats.aio.client import Client as NatsClient

from tests.integration.clients import CONNECT_OPTS, connect, connect_fails
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
    from collections.abc import AsyncIterator, Iterator

    from nats.aio.client import Client

    from tests.service_process import ServiceProcess

CAPS = {"alice": "    max_connections: 2\n", "dave": "    max_connections: 4\n"}
ROLES = {"carol": "kiosk", "dave": "kiosk"}


def policy(hashes: dict[str, str]) -> str:
    """The four users of the module docstring, in account APP."""
    head = """version: 1
accounts: {APP: {}}
defaults: {account: APP, expires: 1h}
roles:
  customer:
    publish: {allow: ["users.{{user}}.>"]}
  kiosk:
    publish: {allow: ["users.{{user}}.>"]}
    max_connections: 2
users:
"""
    users = "".join(
        f'  - name: {name}\n    password: "{hashed}"\n'
        f"    roles: [{ROLES.get(name, 'customer')}]\n{CAPS.get(name, '')}"
        for name, hashed in hashes.items()
    )
    return head + users


class Env:
    def __init__(self, server: NatsServer, service: ServiceProcess) -> None:
        self.server, self.service = server, service
        self.port = http_port(service)
        self.clients: list[Client] = []

    async def connect(self, name: str) -> Client:
        nc = await connect(self.server.client_url, user=name, password=PASSWORDS[name])
        self.clients.append(nc)
        return nc

    async def attempt(self, name: str) -> Client | None:
        """Connect, or None when refused (its socket closed, unlike nats-py's)."""
        nc = NatsClient()
        try:
            await nc.connect(
                self.server.client_url,
                user=name,
                password=PASSWORDS[name],
                **CONNECT_OPTS,
            )
        except Exception:  # noqa: BLE001 - a refusal, counted by the caller
            await nc.close()
            if nc._transport is not None:
                nc._transport.close()  # type: ignore[no-untyped-call]
            return None
        self.clients.append(nc)
        return nc

    async def refused(self, name: str) -> str:
        seen, _ = await connect_fails(
            self.server.client_url, user=name, password=PASSWORDS[name]
        )
        return seen

    def reasons(self, name: str) -> list[str]:
        return [
            r["reason"]
            for r in self.service.events("callout.request_rejected")
            if r["user"] == name
        ]

    async def denials(self, name: str, count: int) -> list[str]:
        """`name`'s deny reasons once there are `count` (logged after the reply)."""
        await asyncio.to_thread(
            self.service.wait_for, lambda _: len(self.reasons(name)) >= count, 5
        )
        return self.reasons(name)

    async def live(self, account: str = "APP") -> float:
        metrics = await scrape(self.port)
        return metrics.get(("callout_live_connections", (("account", account),)), 0)


@pytest.fixture(name="env", scope="module")
def _env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("caps")
    keys = Keys.create(directory)
    server = NatsServer(keys.body(system=True), directory / "nats").start()
    path = directory / "policy.yaml"
    path.write_text(policy({n: bcrypt_hash(pw) for n, pw in PASSWORDS.items()}))
    service = start_service(
        keys.env(server.client_url, path, **SYSTEM_ENV),
        directory,
        wait="callout.started",
    )
    service.wait_for_event("callout.live_connections_synced", timeout=10)
    yield Env(server, service)
    assert service.stop() == 0
    server.stop()


@pytest.fixture(autouse=True)
async def _close_clients(env: Env) -> AsyncIterator[None]:
    yield
    for nc in env.clients:
        await nc.close()
    env.clients.clear()


async def test_third_connection_refused_until_one_closes(env: Env) -> None:
    """With max_connections 2 a third connect is refused; a closed one frees a seat."""
    freed_before = len(env.service.events("callout.connection_cap_freed"))
    denied_before = len(env.reasons("alice"))
    first = await env.connect("alice")
    await env.connect("alice")

    refused = await env.refused("alice")
    await first.close()
    # the service heard the DISCONNECT event and alice is below her cap again
    await asyncio.to_thread(
        env.service.wait_for,
        lambda rs: (
            sum(r.get("event") == "callout.connection_cap_freed" for r in rs)
            > freed_before
        ),
        5,
    )
    again = await env.connect("alice")
    freed = env.service.events("callout.connection_cap_freed")[-1]

    assert "authorization violation" in refused
    assert (await env.denials("alice", denied_before + 1))[-1] == (
        "too_many_connections"
    )
    assert again.is_connected
    assert (freed["principal"], freed["max_connections"]) == ("alice", 2)


async def test_a_burst_overshoots_no_cap(env: Env) -> None:
    """Six connects at once get exactly two seats: pending ones count at once."""
    before = len(env.reasons("carol"))

    results = await asyncio.gather(*(env.attempt("carol") for _ in range(6)))

    assert sum(nc is not None for nc in results) == 2
    denied = await env.denials("carol", before + 4)
    assert denied[before:] == ["too_many_connections"] * 4


async def test_own_cap_beats_the_roles_and_no_cap_is_no_limit(env: Env) -> None:
    """dave's own 4 beats his role's 2; bob, without a cap, opens 5."""
    before = len(env.reasons("dave"))
    for _ in range(4):
        await env.connect("dave")
    for _ in range(5):
        await env.connect("bob")

    refused = await env.refused("dave")

    assert "authorization violation" in refused
    assert (await env.denials("dave", before + 1))[-1] == "too_many_connections"
    assert env.reasons("bob") == []


async def test_live_connections_gauge_follows_the_events(env: Env) -> None:
    """The gauge counts APP's connections, up on connect and down on close."""
    base = await _gauge_reaches(env, 0)  # the other tests' closes are all in
    opened = [await env.connect("bob") for _ in range(3)]
    up = await _gauge_reaches(env, base + 3)
    for nc in opened:
        await nc.close()
    down = await _gauge_reaches(env, base)

    assert (up, down) == (base + 3, base)


async def _gauge_reaches(env: Env, want: float) -> float:
    """The gauge once it shows `want` (events take milliseconds), or at 5 s."""
    async with asyncio.timeout(5):
        while (value := await env.live()) != want:
            await asyncio.sleep(0.05)  # polling a scrape: nothing to await
    return value
