"""
Across regions: two clusters joined by gateways, one replica in each.

nats-server hands a queue-group request to a member in its own cluster and
crosses a gateway only when there is none (geo-affinity), so each region is
served by its own replica and falls back to the other's while it is down.
The servers trace protocol lines: `RS+`/`RS-` over the gateway say when the
other region's interest arrived or left, a local `SUB` when the region's own
replica subscribed: the test waits on those, never on time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.integration.clients import connect
from tests.integration.opsenv import (
    PASSWORDS,
    Keys,
    bcrypt_hash,
    free_port,
    policy_yaml,
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
REGIONS = ("east", "west")


def _region_body(keys: Keys, name: str, ports: dict[str, int]) -> str:
    others = ", ".join(
        f'{{ name: "{other}", urls: ["nats://127.0.0.1:{port}"] }}'
        for other, port in ports.items()
        if other != name
    )
    return keys.body() + (
        "gateway {\n"
        f'  name: "{name}"\n'
        f'  listen: "127.0.0.1:{ports[name]}"\n'
        f"  gateways: [ {others} ]\n"
        "}\n"
        "trace: true\n"
    )


async def _login(server: NatsServer) -> None:
    nc = await connect(server.client_url, user="alice", password=PASSWORDS["alice"])
    await nc.close()


def _decisions(replica: ServiceProcess) -> int:
    return len(replica.events())


async def test_each_region_is_served_by_its_own_replica_and_falls_back(
    tmp_path: Path,
) -> None:
    """East's clients go to east's replica, to west's while it is down, then back."""
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash(PASSWORDS["alice"])}))
    ports = {name: free_port() for name in REGIONS}
    east, west = (
        NatsServer(
            _region_body(keys, name, ports),
            tmp_path / name,
            server_name=name,
            websocket=False,
        ).start()
        for name in REGIONS
    )
    replicas: dict[str, ServiceProcess] = {}
    try:
        for name, server in zip(REGIONS, (east, west), strict=True):
            replicas[name] = start_service(
                keys.env(server.client_url, policy), tmp_path, wait="callout.started"
            )
        # each region has its own replica and has heard of the other's
        for server in (east, west):
            wait_for_lines(server, LOCAL_SUB, 1)
            wait_for_lines(server, RS_PLUS, 1)

        # 1. geo-affinity: each region's logins go to its own replica
        for _ in range(3):
            await _login(east)
        await _login(west)
        # a reply may leave before its log line: wait for the lines
        replicas["east"].wait_for(lambda _: _decisions(replicas["east"]) >= 3)
        replicas["west"].wait_for(lambda _: _decisions(replicas["west"]) >= 1)
        served = {name: _decisions(r) for name, r in replicas.items()}

        # 2. east's replica stops: east's logins cross the gateway to west's
        mark = west.log_mark()
        assert replicas["east"].stop() == 0
        west.wait_for_log(RS_MINUS, 10, since=mark)
        for _ in range(2):
            await _login(east)
        replicas["west"].wait_for(lambda _: _decisions(replicas["west"]) >= 3)
        fallback = _decisions(replicas["west"]) - served["west"]

        # 3. it comes back: east's logins go home again
        marks = (east.log_mark(), west.log_mark())
        replicas["east"] = start_service(
            keys.env(east.client_url, policy), tmp_path, wait="callout.started"
        )
        east.wait_for_log(LOCAL_SUB, 10, since=marks[0])
        west.wait_for_log(RS_PLUS, 10, since=marks[1])
        west_before = _decisions(replicas["west"])
        for _ in range(3):
            await _login(east)
        replicas["east"].wait_for(lambda _: _decisions(replicas["east"]) >= 3)
        back_home = _decisions(replicas["east"])
        west_after = _decisions(replicas["west"])
    finally:
        codes = [r.stop() for r in replicas.values()]
        for server in (east, west):
            server.stop()

    assert served == {"east": 3, "west": 1}
    assert fallback == 2
    assert back_home == 3
    assert west_after == west_before
    assert codes == [0, 0]
