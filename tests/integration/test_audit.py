"""Audit events (CALLOUT_AUDIT_SUBJECT) in a JetStream stream, real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from tests.integration.clients import connect, connect_fails
from tests.integration.opsenv import (
    PASSWORDS,
    Keys,
    bcrypt_hash,
    http_port,
    policy_yaml,
    scrape,
)
from tests.natsserver import NatsServer, config_mode_body
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.api import RawStreamMsg

SUBJECT = "callout.audit"
WRONG = "not-the-password"
ACK_WAIT_MS = 2000  # process/auditlink.py ACK_WAIT: a decision waiting on it shows


def _body(keys: Keys, store: Path) -> str:
    """Config mode with JetStream on in the callout account, stored under `store`."""
    body = config_mode_body(
        issuer=keys.issuer.public_key,
        auth_nkey=keys.login.public_key,
        jetstream_dir=store,
    )
    login = f'users: [ {{ nkey: "{keys.login.public_key}" }} ]'
    assert login in body
    return body.replace(login, f"{login}, jetstream: enabled", 1)


async def _admin(server: NatsServer, keys: Keys) -> Client:
    """A connection in the callout account (the service's login: in auth_users)."""
    return await connect(server.client_url, nkeys_seed=str(keys.directory / "login.nk"))


async def _mixed_connects(url: str, count: int) -> dict[str, int]:
    """`count` connects, every third a wrong password; the decisions expected."""
    made = {"allow": 0, "deny": 0}
    for i in range(count):
        if i % 3 == 2:
            await connect_fails(url, user="alice", password=WRONG)
            made["deny"] += 1
        else:
            nc = await connect(url, user="alice", password=PASSWORDS["alice"])
            await nc.close()
            made["allow"] += 1
    return made


def _check_events(messages: list[RawStreamMsg]) -> None:
    """67 allow and 33 deny events: ids, subjects, fields, and no secret."""
    events: list[dict[str, Any]] = [json.loads(m.data or b"") for m in messages]
    assert [m.headers or {} for m in messages] == [
        {"Nats-Msg-Id": e["id"]} for e in events
    ]
    assert len({e["id"] for e in events}) == 100
    decisions = [e["decision"] for e in events]
    assert decisions.count("allow") == 67
    assert decisions.count("deny") == 33
    assert {m.subject for m in messages} == {
        f"{SUBJECT}.allow.APP",
        f"{SUBJECT}.deny.none",
    }
    allow = next(e for e in events if e["decision"] == "allow")
    assert allow["event"] == "callout.request_authorized"
    assert allow["user"] == "alice"
    assert allow["account"] == "APP"
    expected_keys = {"duration_ms", "policy_version", "client_host", "server_id"}
    assert expected_keys <= set(allow)
    raw = b"".join(m.data or b"" for m in messages)
    assert PASSWORDS["alice"].encode() not in raw
    assert WRONG.encode() not in raw
    assert not {"password", "token", "auth_token", "jwt"} & {
        k for e in events for k in e
    }
    assert b"eyJ" not in raw  # no JWT (the request, the issued user JWT)


async def _stored_count(port: int, want: int) -> float:
    """`callout_audit_stored_total` once it reaches `want` (or after 5 s)."""
    # the last acks may still be on their way back to the service when the
    # stream's copies are seen, and nothing outside the service marks their
    # arrival: ask /metrics again until they are counted
    stored = 0.0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            while stored < want:
                stored = (await scrape(port))[("callout_audit_stored_total", ())]
    return stored


async def test_a_hundred_connects_are_a_hundred_stored_events(
    tmp_path: Path,
) -> None:
    """100 decisions give exactly 100 events in the stream, de-duplicated by id."""
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash(PASSWORDS["alice"])}))
    server = NatsServer(_body(keys, tmp_path / "js"), tmp_path / "nats").start()
    env = keys.env(server.client_url, policy, CALLOUT_AUDIT_SUBJECT=SUBJECT)
    service = None
    admin = await _admin(server, keys)
    try:
        js = admin.jetstream()
        await js.add_stream(
            name="AUDIT",
            subjects=[f"{SUBJECT}.>"],
            max_age=86400,
            max_bytes=64 * 1024 * 1024,
            duplicate_window=120,
        )
        seen: set[str] = set()
        all_seen = asyncio.Event()

        async def watch(msg: Msg) -> None:
            seen.add(json.loads(msg.data)["id"])
            if len(seen) >= 100:
                all_seen.set()

        await admin.subscribe(f"{SUBJECT}.>", cb=watch)
        service = ServiceProcess(env, tmp_path).start()
        port = http_port(service)
        made = await _mixed_connects(server.client_url, 100)
        async with asyncio.timeout(10):
            await all_seen.wait()
        stored = await _stored_count(port, 100)
        assert service.stop() == 0  # flushes what is still waiting for its ack
        service = None
        messages = [
            await js.get_msg("AUDIT", seq) for seq in range(1, 101)
        ]  # a JetStream stream's sequence numbers start at 1, no gaps here
        before = (await js.stream_info("AUDIT")).state.messages
        first = messages[0]
        assert first.subject is not None
        assert first.data is not None
        assert first.headers is not None
        again = await js.publish(
            first.subject,
            first.data,
            headers={"Nats-Msg-Id": first.headers["Nats-Msg-Id"]},
        )
        after = (await js.stream_info("AUDIT")).state.messages
    finally:
        await admin.close()
        if service is not None:
            service.stop()
        server.stop()

    assert made == {"allow": 67, "deny": 33}
    assert before == 100
    assert again.duplicate is True
    assert after == 100
    _check_events(messages)
    assert stored == 100


async def test_a_stalled_stream_costs_events_not_decision_time(
    tmp_path: Path,
) -> None:
    """No stream, a subscriber that never acknowledges: drops counted, answers fast."""
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash(PASSWORDS["alice"])}))
    server = NatsServer(_body(keys, tmp_path / "js"), tmp_path / "nats").start()
    env = keys.env(
        server.client_url,
        policy,
        CALLOUT_AUDIT_SUBJECT=SUBJECT,
        CALLOUT_AUDIT_BUFFER="8",
    )
    service = None
    admin = await _admin(server, keys)
    ids: list[str] = []
    retried = asyncio.Event()

    async def never_acknowledge(msg: Msg) -> None:
        ids.append((msg.headers or {})["Nats-Msg-Id"])
        if len(ids) != len(set(ids)):
            retried.set()

    try:
        await admin.subscribe(f"{SUBJECT}.>", cb=never_acknowledge)
        service = ServiceProcess(env, tmp_path).start()
        port = http_port(service)
        made = await _mixed_connects(server.client_url, 150)
        samples = await scrape(port)
        async with asyncio.timeout(10):
            await retried.wait()  # the same id again after the ack wait
        decided = service.events()
        drop_lines = service.events("callout.audit_dropped")
    finally:
        await admin.close()
        if service is not None:
            service.stop()
        server.stop()

    assert made == {"allow": 100, "deny": 50}
    assert len(decided) == 150
    assert max(float(r["duration_ms"]) for r in decided) < ACK_WAIT_MS / 4
    overflow = samples[("callout_audit_dropped_total", (("reason", "overflow"),))]
    assert overflow > 0
    assert samples[("callout_audit_stored_total", ())] == 0
    assert [r["reason"] for r in drop_lines] == ["overflow"]  # once per interval
