"""
Three replicas, one on each node of a 3-node JetStream cluster, sharing the
login throttle through the state bucket (CALLOUT_STATE_BUCKET): an attacker
who spreads guesses over every node, and so over every replica (the queue
group spreads requests over the replicas), still trips one back-off.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tests.integration.clients import raw_login
from tests.integration.opsenv import (
    PASSWORDS,
    Keys,
    bcrypt_hash,
    free_port,
    http_port,
    policy_yaml,
    scrape,
    start_service,
)
from tests.natsserver import NatsServer, config_mode_body

if TYPE_CHECKING:
    from pathlib import Path

    from tests.service_process import ServiceProcess

BUCKET = "callout-state"
NODES = 3
FAILURES = 5
GUESSES = 45  # 15 a replica: three times what one replica alone lets through
THROTTLE = (
    f"throttle: {{failures: {FAILURES}, address_failures: 1000, window: 10m,"
    " backoff: 60s, max_backoff: 60s}\n"
)
META_LEADER = re.compile(r"JetStream cluster new metadata leader|Self is new")


def _node_body(keys: Keys, tmp_path: Path, index: int, route_ports: list[int]) -> str:
    body = config_mode_body(
        issuer=keys.issuer.public_key,
        auth_nkey=keys.login.public_key,
        jetstream_dir=tmp_path / f"js-n{index}",
    )
    login_line = f'users: [ {{ nkey: "{keys.login.public_key}" }} ]'
    # JetStream for the service's own account, where the bucket lives
    body = body.replace(login_line, f"{login_line}, jetstream: enabled", 1)
    routes = ", ".join(
        f'"nats://127.0.0.1:{port}"' for i, port in enumerate(route_ports) if i != index
    )
    return body + (
        "cluster {\n"
        '  name: "callout"\n'
        f'  listen: "127.0.0.1:{route_ports[index]}"\n'
        f"  routes: [ {routes} ]\n"
        "  no_advertise: true\n"
        "}\n"
    )


async def test_guesses_spread_over_three_replicas_on_three_nodes_trip_one_backoff(
    tmp_path: Path,
) -> None:
    """45 guesses over three nodes' replicas: about `failures` bcrypt checks in all."""
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    hashes = {name: bcrypt_hash(pw) for name, pw in PASSWORDS.items()}
    policy.write_text(policy_yaml(hashes, extra=THROTTLE))
    route_ports = [free_port() for _ in range(NODES)]
    nodes = [
        NatsServer(
            _node_body(keys, tmp_path, i, route_ports),
            tmp_path / f"n{i}",
            server_name=f"n{i}",
            websocket=False,
        )
        for i in range(NODES)
    ]
    replicas: list[ServiceProcess] = []
    try:
        for node in nodes:
            node.start()
        for node in nodes:  # the bucket can be made once a meta leader is known
            node.wait_for_log(META_LEADER, 30)
        for node in nodes:  # one at a time: the first one creates the bucket
            env = keys.env(node.client_url, policy, CALLOUT_STATE_BUCKET=BUCKET)
            replicas.append(start_service(env, tmp_path, wait="callout.started"))

        answers = [
            await raw_login(
                nodes[n % NODES].port, "alice", f"guess-{n}", source="127.0.0.1"
            )
            for n in range(GUESSES)
        ]
        key = ("callout_secret_checks_total", ())
        checks = [(await scrape(http_port(r)))[key] for r in replicas]
        reasons = [[e["reason"] for e in r.events()] for r in replicas]
        warnings = [r.events("callout.state_unavailable") for r in replicas]
    finally:
        for replica in replicas:
            replica.stop()
        for node in nodes:
            node.stop()

    assert answers == ["refused"] * GUESSES
    assert warnings == [[]] * NODES  # every replica linked to the bucket
    # every replica answered enough guesses to run FAILURES checks of its own
    # (15 in all, counted apart), and refuses in the one back-off
    assert all(len(r) >= FAILURES and "throttled" in r for r in reasons), reasons
    assert sum(checks) <= FAILURES + 2, checks
