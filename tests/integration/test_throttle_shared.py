"""
The login throttle's state shared by processes, against a real nats-server:
the workers of `run --workers 2` (through their supervisor).

The queue group spreads an attacker's guesses over every process; shared,
they still add up to one back-off after `failures` bcrypt checks in all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.integration.clients import raw_login
from tests.integration.opsenv import Keys, scrape
from tests.integration.test_throttle import FAILURES, POLICY
from tests.natsserver import NatsServer
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

GUESSES = 60  # all on one worker by chance: 2 ** -59


@pytest.fixture(name="workers")
def _workers(tmp_path: Path) -> Iterator[tuple[NatsServer, ServiceProcess]]:
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    server = NatsServer(keys.body(), tmp_path / "nats", websocket=False).start()
    env = keys.env(server.client_url, policy, CALLOUT_WORKERS="2")
    service = ServiceProcess(env, tmp_path).start(wait_for=None)
    try:
        service.wait_for_event("callout.started", timeout=20, count=2)
        yield server, service
    finally:
        assert service.stop() == 0
        server.stop()


async def _total(ports: list[int], name: str) -> float:
    return sum([(await scrape(port))[(name, ())] for port in ports])


async def test_guesses_spread_over_two_workers_trip_one_backoff(
    workers: tuple[NatsServer, ServiceProcess],
) -> None:
    """60 wrong guesses answered by both workers: `failures` bcrypt checks in all."""
    server, service = workers
    service.wait_for_event("callout.http_listening", timeout=15, count=2)
    ports = [int(r["port"]) for r in service.events("callout.http_listening")]

    answers = [
        await raw_login(server.port, "john-doe", f"guess-{n}", source="127.0.0.1")
        for n in range(GUESSES)
    ]
    checks = await _total(ports, "callout_secret_checks_total")

    decisions = [r for r in service.events() if r.get("reason")]
    throttled = {r["worker"] for r in decisions if r["reason"] == "throttled"}
    assert answers == ["refused"] * GUESSES
    assert checks <= FAILURES + 1  # unshared: up to 2 * FAILURES
    assert throttled == {0, 1}  # both refuse, whichever counted the failures
    assert len(service.events("callout.backoff_started")) >= 1
