"""
Login state shared by replicas through a JetStream KV bucket
(CALLOUT_STATE_BUCKET), against a real nats-server: guesses spread over two
replicas trip one back-off, a restarted replica starts warm, and without
JetStream each replica throttles alone after one warning.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

from tests.integration.clients import connect, raw_login
from tests.integration.opsenv import PASSWORDS, Keys, bcrypt_hash, http_port, scrape
from tests.integration.opsenv import policy_yaml as users_policy
from tests.natsserver import NatsServer, config_mode_body
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from nats.aio.client import Client

BUCKET = "callout-state"
FAILURES = 5
GUESSES = 60  # all on one replica by chance: 2 ** -59
THROTTLE = (
    f"throttle: {{failures: {FAILURES}, address_failures: 50, window: 10m,"
    " backoff: 30s, max_backoff: 60s}\n"
)


class Cluster:
    """One nats-server (JetStream on or off) and the replicas started on it."""

    def __init__(self, tmp_path: Path, *, jetstream: bool) -> None:
        self.tmp_path = tmp_path
        self.keys = Keys.create(tmp_path)
        self.policy = tmp_path / "policy.yaml"
        hashes = {name: bcrypt_hash(pw) for name, pw in PASSWORDS.items()}
        self.policy.write_text(users_policy(hashes, extra=THROTTLE))
        body = config_mode_body(
            issuer=self.keys.issuer.public_key,
            auth_nkey=self.keys.login.public_key,
            jetstream_dir=tmp_path / "js" if jetstream else None,
        )
        login_line = f'users: [ {{ nkey: "{self.keys.login.public_key}" }} ]'
        if jetstream:  # in the callout account, where the service's login is
            body = body.replace(login_line, f"{login_line}, jetstream: enabled", 1)
        self.server = NatsServer(body, tmp_path / "nats", websocket=False).start()
        self.replicas: list[ServiceProcess] = []

    def replica(self) -> ServiceProcess:
        """A replica with the bucket, subscribed (after reading the bucket)."""
        env = self.keys.env(
            self.server.client_url, self.policy, CALLOUT_STATE_BUCKET=BUCKET
        )
        service = ServiceProcess(env, self.tmp_path).start()
        self.replicas.append(service)
        return service

    async def admin(self) -> Client:
        """A connection in the callout account, to read the bucket."""
        seed = str(self.keys.directory / "login.nk")
        return await connect(self.server.client_url, nkeys_seed=seed)

    def close(self) -> None:
        for service in self.replicas:
            with contextlib.suppress(Exception):
                service.stop()
        self.server.stop()


@pytest.fixture(name="cluster")
def _cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, jetstream=True)
    try:
        yield cluster
    finally:
        cluster.close()


async def _checks(services: list[ServiceProcess]) -> float:
    key = ("callout_secret_checks_total", ())
    return sum([(await scrape(http_port(s)))[key] for s in services])


async def _guess(cluster: Cluster, count: int) -> list[str]:
    port = cluster.server.port
    return [
        await raw_login(port, "alice", f"guess-{n}", source="127.0.0.1")
        for n in range(count)
    ]


def _reasons(service: ServiceProcess) -> list[str]:
    return [r["reason"] for r in service.events() if r.get("reason")]


async def test_guesses_spread_over_two_replicas_trip_one_backoff(
    cluster: Cluster,
) -> None:
    """60 wrong guesses answered by both replicas: `failures` bcrypt checks in all."""
    replicas = [cluster.replica(), cluster.replica()]

    answers = await _guess(cluster, GUESSES)
    checks = await _checks(replicas)

    assert answers == ["refused"] * GUESSES
    assert checks <= FAILURES + 1  # counted apart: up to 2 * FAILURES
    for service in replicas:  # both were asked, both refuse without bcrypt
        assert "throttled" in _reasons(service)


async def test_a_restarted_replica_starts_warm_from_the_bucket(
    cluster: Cluster,
) -> None:
    """Users verified before a restart log in again with no bcrypt check at all."""
    first = cluster.replica()
    for name, password in PASSWORDS.items():
        nc = await connect(cluster.server.client_url, user=name, password=password)
        await nc.close()
    checks_before = await _checks([first])
    assert first.stop() == 0  # its last writes are flushed on the way out

    second = cluster.replica()
    loaded = second.wait_for_event("callout.state_loaded")
    for name, password in PASSWORDS.items():
        nc = await connect(cluster.server.client_url, user=name, password=password)
        await nc.close()
    checks_after = await _checks([second])

    assert checks_before == len(PASSWORDS)
    assert loaded["logins"] == len(PASSWORDS)
    assert checks_after == 0  # without the bucket: one per user again
    admin = await cluster.admin()
    try:
        kv = await admin.jetstream().key_value(BUCKET)
        entries = [await kv.get(key) for key in await kv.keys()]
        stored = b"".join(e.key.encode() + (e.value or b"") for e in entries)
    finally:
        await admin.close()
    assert len(entries) >= len(PASSWORDS)
    for name, password in PASSWORDS.items():  # HMACs only
        assert name.encode() not in stored
        assert password.encode() not in stored
    assert b"$2" not in stored  # no bcrypt hash
    assert b"127.0.0.1" not in stored


@pytest.fixture(name="no_jetstream")
def _no_jetstream(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, jetstream=False)
    try:
        yield cluster
    finally:
        cluster.close()


async def test_without_jetstream_each_replica_throttles_alone_and_warns_once(
    no_jetstream: Cluster,
) -> None:
    """No bucket to be had: one warning per replica, and local back-offs still hold."""
    replicas = [no_jetstream.replica() for _ in range(2)]

    answers = await _guess(no_jetstream, GUESSES)
    checks = await _checks(replicas)

    assert answers == ["refused"] * GUESSES
    assert checks <= 2 * FAILURES  # each counts its own share
    for service in replicas:
        (warning,) = service.events("callout.state_unavailable")
        assert warning["bucket"] == BUCKET
        assert "throttled" in _reasons(service)
