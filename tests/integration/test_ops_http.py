"""`/healthz`, `/readyz` and `/metrics` of a running service, real nats-server."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from tests.integration.clients import connect, connect_fails
from tests.integration.opsenv import (
    PASSWORDS,
    Keys,
    bcrypt_hash,
    free_port,
    http_get,
    http_port,
    policy_yaml,
    scrape,
    server_on,
    start_service,
)
from tests.natsserver import NatsServer
from tests.observability import observed_metric_names

if TYPE_CHECKING:
    from pathlib import Path

    from tests.service_process import ServiceProcess


async def test_readyz_is_503_until_the_server_is_reachable(tmp_path: Path) -> None:
    """Started before its server, the service waits (503), then serves (200)."""
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash(PASSWORDS["alice"])}))
    port = free_port()
    server = server_on(NatsServer(keys.body(), tmp_path / "nats"), port)
    service = start_service(
        keys.env(f"nats://127.0.0.1:{port}", policy),
        tmp_path,
        wait="callout.nats_connect_failed",
    )
    try:
        http = http_port(service)
        health_before = await http_get(http, "/healthz")
        ready_before = await http_get(http, "/readyz")
        server.start()
        service.wait_for_event("callout.started", timeout=15)
        ready_after = await http_get(http, "/readyz")
        nc = await connect(server.client_url, user="alice", password=PASSWORDS["alice"])
        await nc.close()
        server.stop()
        service.wait_for_event("callout.nats_disconnected")
        ready_lost = await http_get(http, "/readyz")
        server.start()
        service.wait_for_event("callout.nats_reconnected", timeout=10)
        ready_again = await http_get(http, "/readyz")
    finally:
        code = service.stop()
        server.stop()

    assert health_before == (200, json.dumps({"alive": True}))
    assert ready_before[0] == 503
    assert json.loads(ready_before[1]) == {
        "ready": False,
        "reason": "nats_disconnected",
    }
    assert ready_after == (200, json.dumps({"ready": True}))
    assert ready_lost[0] == 503
    assert ready_again[0] == 200
    assert code == 0


def _probe_body(keys: Keys) -> str:
    """
    Config mode plus a way to put garbage on the request subject.

    AUTH exports `$SYS.REQ.USER.AUTH` and APP imports it as `probe.auth`: a
    static APP user (in auth_users, so no callout) publishing there reaches
    the service the way a hostile or broken server request would.
    """
    issuer, login = keys.issuer.public_key, keys.login.public_key
    return f"""accounts {{
  AUTH {{
    users: [ {{ nkey: "{login}" }} ]
    exports: [ {{ service: "$SYS.REQ.USER.AUTH" }} ]
  }}
  APP {{
    users: [ {{ user: "prober", password: "prober-pw" }} ]
    imports: [ {{ service: {{ account: AUTH, subject: "$SYS.REQ.USER.AUTH" }},
                 to: "probe.auth" }} ]
  }}
  SYS {{}}
}}
system_account: SYS
authorization {{
  timeout: 2
  auth_callout {{
    issuer: "{issuer}"
    account: AUTH
    auth_users: [ "{login}", "prober" ]
  }}
}}
"""


async def _scripted_connects(url: str, service: ServiceProcess) -> None:
    """2 allows, 2 denials, 1 abort; returns when all 5 decision lines are out."""
    for _ in range(2):
        nc = await connect(url, user="alice", password=PASSWORDS["alice"])
        await nc.close()
    await connect_fails(url, user="alice", password="wrong")
    await connect_fails(url, user="nobody", password="x")
    prober = await connect(url, user="prober", password="prober-pw")
    try:
        await prober.publish("probe.auth", b"not a request", reply="_INBOX.none")
        await prober.flush()
    finally:
        await prober.close()
    await asyncio.to_thread(service.wait_for, lambda _: len(service.events()) >= 5)


async def test_metrics_count_decisions_and_time_them(tmp_path: Path) -> None:
    """After scripted connects /metrics has each decision, the histogram, gauges."""
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash(PASSWORDS["alice"])}))
    server = NatsServer(_probe_body(keys), tmp_path / "nats").start()
    service = start_service(
        keys.env(server.client_url, policy), tmp_path, wait="callout.started"
    )
    try:
        http = http_port(service)
        await _scripted_connects(server.client_url, service)
        samples = await scrape(http)
        version = service.events()[0]["policy_version"]
    finally:
        code = service.stop()
        server.stop()

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("callout_requests_total", decision="allow", reason="none") == 2
    assert value("callout_requests_total", decision="deny", reason="bad_password") == 1
    assert value("callout_requests_total", decision="deny", reason="unknown_user") == 1
    assert (
        value("callout_requests_total", decision="abort", reason="malformed_request")
        == 1
    )
    assert value("callout_request_duration_seconds_count", decision="allow") == 2
    assert value("callout_request_duration_seconds_count", decision="deny") == 2
    assert value("callout_request_duration_seconds_count", decision="abort") == 1
    assert (
        value("callout_request_duration_seconds_bucket", decision="deny", le="+Inf")
        == 2
    )
    assert (
        value("callout_request_duration_seconds_bucket", decision="allow", le="0.0005")
        >= 0
    )
    assert value("callout_inflight_requests") == 0
    assert value("callout_nats_connected") == 1
    assert value("callout_ready") == 1
    # the shipped dashboard and alert rules use only names this service exports
    assert observed_metric_names() <= {name for name, _ in samples}
    assert value("callout_policy_info", version=version) == 1
    assert value("callout_dropped_requests_total", reason="overload") == 0
    assert value("callout_policy_reloads_total", result="success") == 0
    # alice once (then cached), the wrong password, the unknown name's decoy
    assert value("callout_secret_checks_total") == 3
    assert value("callout_secret_cache_entries") == 1
    assert code == 0


async def test_sigterm_while_waiting_for_the_server_exits_cleanly(
    tmp_path: Path,
) -> None:
    """A service that never reached its server still stops at once on SIGTERM."""
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash(PASSWORDS["alice"])}))
    service = start_service(
        keys.env(f"nats://127.0.0.1:{free_port()}", policy),
        tmp_path,
        wait="callout.nats_connect_failed",
    )

    code = service.stop(timeout=5)

    assert code == 0
