"""
HA: a 3-node nats-server cluster (routes on loopback) and two service replicas.

Replica A is attached to n0, replica B to n2; n1 has none, so its clients are
served across routes. Routes need no callout (they have their own auth, none
here on loopback). `no_advertise` keeps each replica on its own node, as a
sidecar should be. The nodes trace protocol lines, which is how the test
knows, without sleeping, when subscription interest has crossed the routes:
`<<- [RS+ AUTH $SYS.REQ.USER.AUTH auth-callout 1]` arrives on a node when a
replica on another node subscribed, `RS-` when it went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from nats.aio.client import Client

from tests.integration.clients import CONNECT_OPTS
from tests.integration.opsenv import (
    NO_THROTTLE,
    PASSWORDS,
    Keys,
    bcrypt_hash,
    count_lines,
    free_port,
    policy_yaml,
    server_on,
    start_service,
    wait_for_lines,
)
from tests.natsserver import NatsServer

if TYPE_CHECKING:
    from pathlib import Path

    from tests.service_process import ServiceProcess

RS_PLUS = "<<- [RS+ AUTH $SYS.REQ.USER.AUTH auth-callout"
RS_MINUS = "<<- [RS- AUTH $SYS.REQ.USER.AUTH auth-callout]"
LOCAL_SUB = "<<- [SUB $SYS.REQ.USER.AUTH auth-callout"
DELIVERED = "->> [MSG $SYS.REQ.USER.AUTH "  # a request handed to B (n2's replica)
REPLIED = "<<- [PUB $SYS._INBOX."  # B's reply, as n2 received it
ROUTED_IN = "<<- [RMSG AUTH $SYS.REQ.USER.AUTH "  # n0/n1 sent a request B's way
CONCURRENCY = 6
AUTH_TIMEOUT = 2.0
LOST_AFTER = AUTH_TIMEOUT * 0.8  # an answer comes in well under this


def _node_body(keys: Keys, index: int, route_ports: list[int]) -> str:
    routes = ", ".join(
        f'"nats://127.0.0.1:{port}"' for i, port in enumerate(route_ports) if i != index
    )
    return keys.body() + (
        "cluster {\n"
        '  name: "callout"\n'
        f'  listen: "127.0.0.1:{route_ports[index]}"\n'
        f"  routes: [ {routes} ]\n"
        "  no_advertise: true\n"
        "}\n"
        "trace: true\n"
    )


async def _attempt(url: str, password: str = PASSWORDS["alice"]) -> str:
    """
    One connect as alice: `ok`, `refused` (answered), or `lost`.

    `lost` means nobody answered and the server gave up at its auth timeout.
    """
    nc = Client()
    started = time.monotonic()
    try:
        await nc.connect(
            url,
            user="alice",
            password=password,
            **(CONNECT_OPTS | {"connect_timeout": 4}),
        )
    except Exception:  # noqa: BLE001 - how it failed is told by the time it took
        await nc.close()
        if nc._transport is not None:
            nc._transport.close()  # type: ignore[no-untyped-call]
            with contextlib.suppress(OSError):
                await nc._transport.wait_closed()  # type: ignore[no-untyped-call]
        return "refused" if time.monotonic() - started < LOST_AFTER else "lost"
    await nc.close()
    return "ok"


async def _load(urls: list[str], stop: asyncio.Event, results: list[str]) -> None:
    """
    Wrong-password connects round-robin over `urls` until `stop`.

    A wrong password is never cached, so every attempt costs the replica a
    bcrypt (cost 11, ~0.1 s): a replica under this load always has requests
    in flight.
    """
    i = 0
    while not stop.is_set():
        results.append(await _attempt(urls[i % len(urls)], password="wrong"))
        i += 1


def _unanswered(n2: NatsServer, kill_mark: int) -> tuple[int, int]:
    """
    What B left without an answer, from n2's trace (B's only way in and out).

    Returns: requests B got and never replied to (each request B got is a
    MSG there, each reply a PUB), and requests n0/n1 routed to n2 after B
    was killed, before its RS- reached them: n2 has nobody to give them to.
    """
    held = count_lines(n2, DELIVERED) - count_lines(n2, REPLIED)
    late = n2.log_text().splitlines()[kill_mark:]
    return held, sum(ROUTED_IN in line for line in late)


def _decisions(replica: ServiceProcess) -> int:
    return len(replica.events())


async def test_two_replicas_serve_a_cluster_through_restart_and_kill(
    tmp_path: Path,
) -> None:
    """Clients on every node are served; a node restart and a kill -9 are survived."""
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        policy_yaml(
            {"alice": bcrypt_hash(PASSWORDS["alice"], cost=11)}, extra=NO_THROTTLE
        )
    )
    route_ports = [free_port() for _ in range(3)]
    nodes = [
        NatsServer(
            _node_body(keys, i, route_ports),
            tmp_path / f"n{i}",
            server_name=f"n{i}",
            websocket=False,
        )
        for i in range(3)
    ]
    server_on(nodes[2], free_port())
    nodes[0].start()
    nodes[1].start()
    replicas: list[ServiceProcess] = []
    try:
        # B first, before its node exists: it must wait, then serve
        replicas.append(
            start_service(
                keys.env(f"nats://127.0.0.1:{nodes[2].port}", policy),
                tmp_path,
                wait="callout.nats_connect_failed",
            )
        )
        replicas.insert(
            0,
            start_service(
                keys.env(nodes[0].client_url, policy), tmp_path, wait="callout.started"
            ),
        )
        a, b = replicas
        nodes[2].start()
        b.wait_for_event("callout.started", timeout=15)
        for node, remote_replicas in zip(nodes, (1, 2, 1), strict=True):
            wait_for_lines(node, RS_PLUS, remote_replicas)

        # 1. clients on every node are authorized
        first = [await _attempt(node.client_url) for node in nodes]

        # 2. kill -9 B while clients connect on all nodes, once B has served
        # some of them (so the replica that waited for its node does serve)
        stop, results = asyncio.Event(), list[str]()
        urls = [node.client_url for node in nodes]
        load = [
            asyncio.create_task(_load(urls[i % 3 :] + urls[: i % 3], stop, results))
            for i in range(CONCURRENCY)
        ]
        await asyncio.to_thread(b.wait_for, lambda _: _decisions(b) >= 5, 10)
        marks = [node.log_mark() for node in nodes]
        assert b._proc is not None
        b._proc.kill()
        await asyncio.to_thread(b.stop)  # reaps it and reads its last lines
        for node, mark in zip(nodes[:2], marks[:2], strict=True):
            await asyncio.to_thread(node.wait_for_log, RS_MINUS, 10, since=mark)
        stop.set()
        await asyncio.gather(*load)
        held, routed_late = _unanswered(nodes[2], marks[2])
        after_kill = [await _attempt(url) for url in urls for _ in range(4)]

        # 3. n0 restarts; A, now the only replica, re-joins it by itself
        marks = [node.log_mark() for node in nodes]
        nodes[0].restart()
        a.wait_for_event("callout.nats_reconnected", timeout=10)
        nodes[0].wait_for_log(LOCAL_SUB, 10, since=marks[0])
        for node, mark in zip(nodes[1:], marks[1:], strict=True):
            node.wait_for_log(RS_PLUS, 10, since=mark)  # interest over new routes
        a_before = _decisions(a)
        after_restart = [await _attempt(url) for url in urls]
        a.wait_for(lambda _: _decisions(a) >= a_before + 3)
    finally:
        codes = [r.stop() for r in replicas]
        for node in nodes:
            node.stop()

    assert first == ["ok"] * 3
    assert set(results) <= {"refused", "lost"}
    assert results.count("lost") <= held + routed_late
    assert held <= CONCURRENCY
    assert after_kill == ["ok"] * 12
    assert after_restart == ["ok"] * 3
    assert codes[0] == 0
