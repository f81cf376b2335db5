"""`$SRV.PING|INFO|STATS` (the NATS micro protocol) answered by every instance."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from nats.micro.service import ServiceInfo, ServiceStats

from tests.integration.clients import connect, connect_fails
from tests.integration.opsenv import (
    PASSWORDS,
    Keys,
    bcrypt_hash,
    http_port,
    policy_yaml,
    scrape,
)
from tests.natsserver import NatsServer
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client

NAME = "nats-auth-callout"
ANSWER_WAIT = 5.0


async def gather_answers(
    nc: Client, subject: str, expected: int
) -> list[dict[str, Any]]:
    """Publish one request and collect `expected` answers (every instance replies)."""
    inbox = nc.new_inbox()
    answers: list[dict[str, Any]] = []
    enough = asyncio.Event()

    async def collect(msg: Any) -> None:
        answers.append(json.loads(msg.data))
        if len(answers) >= expected:
            enough.set()

    sub = await nc.subscribe(inbox, cb=collect)
    await nc.publish(subject, b"", reply=inbox)
    async with asyncio.timeout(ANSWER_WAIT):
        await enough.wait()
    await sub.unsubscribe()
    return answers


async def admin(server: NatsServer, keys: Keys) -> Client:
    """A connection in the callout account (the service's login is in auth_users)."""
    return await connect(server.client_url, nkeys_seed=str(keys.directory / "login.nk"))


def _wait_for_decisions(replicas: list[ServiceProcess], count: int) -> None:
    """Until the replicas together logged `count` decisions (at most 10 s)."""
    deadline = time.monotonic() + 10
    while sum(len(r.events()) for r in replicas) < count:
        assert time.monotonic() < deadline, "decisions were not logged"
        for replica in replicas:
            # woken by any new line of this replica; short, since the other
            # replica's lines do not wake it
            with contextlib.suppress(AssertionError):
                replica.wait_for(
                    lambda _: sum(len(r.events()) for r in replicas) >= count, 0.2
                )


async def test_two_replicas_answer_ping_info_and_stats(tmp_path: Path) -> None:
    """Each replica is an instance; STATS counts the connects, as /metrics does."""
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash(PASSWORDS["alice"])}))
    server = NatsServer(keys.body(), tmp_path / "nats").start()
    env = keys.env(server.client_url, policy)
    replicas = [ServiceProcess(env, tmp_path).start() for _ in range(2)]
    nc = None
    try:
        # in replica order: each replica's STATS is compared with its /metrics
        order = [r.wait_for_event("callout.started")["instance"] for r in replicas]
        ids = set(order)
        ports = [http_port(r) for r in replicas]
        nc = await admin(server, keys)
        pings = await gather_answers(nc, "$SRV.PING", 2)
        kind = await gather_answers(nc, f"$SRV.INFO.{NAME}", 2)
        for _ in range(3):
            client = await connect(
                server.client_url, user="alice", password=PASSWORDS["alice"]
            )
            await client.close()
        for _ in range(2):
            await connect_fails(server.client_url, user="alice", password="wrong")
        # a reply leaves before its log line and metrics: wait for the lines
        await asyncio.to_thread(_wait_for_decisions, replicas, 5)
        stats = [
            ServiceStats.from_dict(
                json.loads((await nc.request(f"$SRV.STATS.{NAME}.{i}", b"")).data)
            )
            for i in order
        ]
        metrics = [await scrape(port) for port in ports]
    finally:
        if nc is not None:
            await nc.close()
        for replica in replicas:
            replica.stop()
        server.stop()

    assert len(ids) == 2
    assert {p["id"] for p in pings} == ids
    assert {p["type"] for p in pings} == {"io.nats.micro.v1.ping_response"}
    assert {p["name"] for p in pings} == {NAME}
    infos = [ServiceInfo.from_dict(a) for a in kind]
    assert {i.id for i in infos} == ids
    assert {(e.subject, e.queue_group) for i in infos for e in i.endpoints} == {
        ("$SYS.REQ.USER.AUTH", "auth-callout")
    }
    endpoints = [s.endpoints[0] for s in stats]
    assert sum(e.num_requests for e in endpoints) == 5
    data: list[dict[str, Any]] = [e.data or {} for e in endpoints]
    decisions = [d["decisions"] for d in data]
    assert sum(d["allow"] for d in decisions) == 3
    assert sum(d["deny"] for d in decisions) == 2
    for endpoint, extra, samples in zip(endpoints, data, metrics, strict=True):
        by_decision = {
            d: sum(
                v
                for (name, labels), v in samples.items()
                if name == "callout_requests_total" and ("decision", d) in labels
            )
            for d in ("allow", "deny", "abort")
        }
        seconds = sum(
            v
            for (name, _), v in samples.items()
            if name == "callout_request_duration_seconds_sum"
        )
        assert extra["decisions"] == by_decision
        assert endpoint.num_requests == sum(by_decision.values())
        assert endpoint.num_errors == by_decision["abort"] == 0
        assert abs(endpoint.processing_time - seconds * 1e9) < 1e3
        assert endpoint.processing_time > 0 or endpoint.num_requests == 0


async def test_every_worker_process_is_an_instance(tmp_path: Path) -> None:
    """Under `run --workers 2` each worker process answers $SRV.PING with its id."""
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash(PASSWORDS["alice"])}))
    server = NatsServer(keys.body(), tmp_path / "nats").start()
    env = keys.env(server.client_url, policy, CALLOUT_WORKERS="2")
    service = ServiceProcess(env, tmp_path).start(wait_for=None)
    nc = None
    try:
        service.wait_for_event("callout.started", timeout=20, count=2)
        ids = {r["instance"] for r in service.events("callout.started")}
        nc = await admin(server, keys)
        pings = await gather_answers(nc, f"$SRV.PING.{NAME}", 2)
    finally:
        if nc is not None:
            await nc.close()
        service.stop()
        server.stop()

    assert len(ids) == 2
    assert {p["id"] for p in pings} == ids
