"""
Live sessions across a 3-node cluster (routes on loopback) with the service
on n0 only: connections on n2 are found through `$SYS.REQ.SERVER.PING.CONNZ`
and kicked on n2, a kick rate limit holds for 200 connections, and
`nats-auth-callout revoke` reaches every node.

The nodes trace protocol lines so the test can wait, without sleeping, until
the service's subscription interest has crossed the routes (as
test_cluster.py does).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from nats.aio.client import Client

from tests.integration.clients import CONNECT_OPTS, connect_fails
from tests.integration.opsenv import (
    PASSWORDS,
    SYSTEM_ENV,
    Keys,
    bcrypt_hash,
    free_port,
    start_service,
    wait_for_lines,
)
from tests.integration.test_live_sessions import policy
from tests.natsserver import NatsServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.service_process import Record, ServiceProcess

RS_PLUS = "<<- [RS+ AUTH $SYS.REQ.USER.AUTH auth-callout"
SERVER_ID = re.compile(r"\]\s+ID:\s+(N[A-Z0-9]{55})")


def _node_body(keys: Keys, index: int, route_ports: list[int]) -> str:
    routes = ", ".join(
        f'"nats://127.0.0.1:{port}"' for i, port in enumerate(route_ports) if i != index
    )
    return keys.body(system=True, timeout=5) + (
        "cluster {\n"
        '  name: "live"\n'
        f'  listen: "127.0.0.1:{route_ports[index]}"\n'
        f"  routes: [ {routes} ]\n"
        "  no_advertise: true\n"
        "}\n"
        "trace: true\n"
    )


@dataclass
class Cluster:
    nodes: list[NatsServer]
    service: ServiceProcess
    policy_path: Path
    hashes: dict[str, str]

    def server_id(self, index: int) -> str:
        found = SERVER_ID.search(self.nodes[index].wait_for_log(SERVER_ID))
        assert found is not None
        return found[1]

    async def apply(self, text: str) -> Record:
        """Write `text`, SIGHUP, and return the review that reload started."""
        if self.policy_path.read_text() == text:
            return {}  # in force already: no reload, no review
        before = len(self.service.events("callout.sessions_reviewed"))
        self.policy_path.write_text(text)
        assert self.service._proc is not None
        self.service._proc.send_signal(signal.SIGHUP)
        await asyncio.to_thread(
            self.service.wait_for_event, "callout.sessions_reviewed", 60, before + 1
        )
        return self.service.events("callout.sessions_reviewed")[before]


@pytest.fixture(name="cluster", scope="module")
def _cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("live-cluster")
    keys = Keys.create(directory)
    route_ports = [free_port() for _ in range(3)]
    nodes = [
        NatsServer(
            _node_body(keys, i, route_ports),
            directory / f"n{i}",
            server_name=f"n{i}",
            websocket=False,
        )
        for i in range(3)
    ]
    hashes = {name: bcrypt_hash(pw) for name, pw in PASSWORDS.items()}
    path = directory / "policy.yaml"
    path.write_text(policy(hashes))
    for node in nodes:
        node.start()
    service = start_service(
        keys.env(nodes[0].client_url, path, **SYSTEM_ENV),
        directory,
        wait="callout.started",
    )
    try:
        service.wait_for_event("callout.system_connected", timeout=10)
        for node in nodes[1:]:
            wait_for_lines(node, RS_PLUS, 1)
        yield Cluster(nodes, service, path, hashes)
    finally:
        assert service.stop() == 0
        for node in nodes:
            node.stop()


async def _client(url: str, name: str, closed: asyncio.Event | None = None) -> Client:
    async def on_closed() -> None:
        if closed is not None:
            closed.set()

    nc = Client()
    await nc.connect(
        url, user=name, password=PASSWORDS[name], closed_cb=on_closed, **CONNECT_OPTS
    )
    return nc


def _at(record: Record) -> float:
    return dt.datetime.fromisoformat(record["timestamp"]).timestamp()


async def test_a_reload_on_node_1_kicks_a_client_on_node_3(cluster: Cluster) -> None:
    """The service on n0 finds alice on n2 through CONNZ and n2 closes her."""
    closed = asyncio.Event()
    alice = await _client(cluster.nodes[2].client_url, "alice", closed)
    bob = await _client(cluster.nodes[2].client_url, "bob")
    kicks_before = len(cluster.service.events("callout.session_kicked"))
    try:
        without = {n: h for n, h in cluster.hashes.items() if n != "alice"}
        review = await cluster.apply(policy(without))
        async with asyncio.timeout(2):
            await closed.wait()
        await bob.flush(timeout=2)
        still = bob.is_connected
    finally:
        await alice.close()
        await bob.close()
        await cluster.apply(policy(cluster.hashes))
    (kick,) = cluster.service.events("callout.session_kicked")[kicks_before:]

    assert review["kicked"] == 1
    assert (kick["principal"], kick["cause"]) == ("alice", "removed")
    assert kick["server"] == cluster.server_id(2)
    assert still


async def test_kicks_keep_to_kicks_per_second_with_200_connections(
    cluster: Cluster,
) -> None:
    """200 of carol's connections on 3 nodes are kicked at most 100 per second."""
    rate, count = 100, 200
    urls = [node.client_url for node in cluster.nodes]
    clients = [await _client(urls[i % 3], "carol") for i in range(count)]
    kicks_before = len(cluster.service.events("callout.session_kicked"))
    try:
        without = {n: h for n, h in cluster.hashes.items() if n != "carol"}
        review = await cluster.apply(
            policy(without, sessions=f"{{kicks_per_second: {rate}}}")
        )
    finally:
        for nc in clients:
            await nc.close()
        await cluster.apply(policy(cluster.hashes))
    kicks = cluster.service.events("callout.session_kicked")[kicks_before:]
    times = sorted(_at(k) for k in kicks)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)

    assert review["kicked"] == count
    assert len({(k["server"], k["cid"]) for k in kicks}) == count
    assert len({k["server"] for k in kicks}) == 3
    assert times[-1] - times[0] >= (count - 1) / rate * 0.95
    # kicks start paced; a line is written when its kick returned, and those
    # round trips vary by some milliseconds, so a window may catch one or two
    assert busiest <= rate + 3


async def _revoke(cluster: Cluster, *args: str) -> tuple[int, str]:
    """`nats-auth-callout revoke ARGS` against n0 with the system login."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLOUT_")}
    env |= SYSTEM_ENV | {"CALLOUT_NATS_URL": cluster.nodes[0].client_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "revoke",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_revoke_kicks_on_every_node_and_refuses_until_the_policy_changes(
    cluster: Cluster,
) -> None:
    """`revoke dave` closes his connections on all 3 nodes and refuses him anew."""
    closed = [asyncio.Event() for _ in cluster.nodes]
    daves = [
        await _client(node.client_url, "dave", event)
        for node, event in zip(cluster.nodes, closed, strict=True)
    ]
    bob = await _client(cluster.nodes[1].client_url, "bob")
    try:
        code, out = await _revoke(cluster, "dave", "--reason", "laptop stolen")
        async with asyncio.timeout(2):
            for event in closed:
                await event.wait()
        refused, _ = await connect_fails(
            cluster.nodes[2].client_url, user="dave", password=PASSWORDS["dave"]
        )
        await bob.flush(timeout=2)
        bob_stays = bob.is_connected
        await cluster.apply(policy(cluster.hashes, narrow=("bob",)))  # a new policy
        back = await _client(cluster.nodes[2].client_url, "dave")
        await back.close()
    finally:
        for nc in [*daves, bob]:
            await nc.close()
        await cluster.apply(policy(cluster.hashes))
    result = json.loads(out.strip().splitlines()[-1])
    denied = [
        r
        for r in cluster.service.events("callout.request_rejected")
        if r["user"] == "dave"
    ]
    revoked = cluster.service.events("callout.user_revoked")[-1]

    assert code == 0, out
    assert (result["instances"], result["found"], result["kicked"]) == (1, 3, 3)
    assert "authorization violation" in refused
    assert denied[-1]["reason"] == "revoked"
    assert (revoked["principal"], revoked["reason"]) == ("dave", "laptop stolen")
    assert bob_stays
