"""
The login throttle against a real nats-server: guessing costs N bcrypt checks,
not one per guess, and the user is still welcome from elsewhere.

Clients speak the protocol by hand so that each can choose its source address
on the loopback network (127.0.0.x): the server reports it as `client_info.host`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from tests.builders import hash_secret
from tests.integration.clients import raw_login
from tests.integration.opsenv import Keys, http_port, scrape, start_service
from tests.natsserver import NatsServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.service_process import ServiceProcess

PASSWORD = "john-doe-right"
FAILURES, ADDRESS_FAILURES, BACKOFF = 5, 20, 1
POLICY = f"""\
version: 1
accounts: {{APP: {{}}}}
defaults: {{account: APP, expires: 1h}}
throttle:
  failures: {FAILURES}
  address_failures: {ADDRESS_FAILURES}
  window: 10m
  backoff: {BACKOFF}s
  max_backoff: 4s
users:
  - name: john-doe
    password: "{hash_secret(PASSWORD)}"
    subscribe: {{allow: ["users.{{{{user}}}}.>"]}}
"""


@pytest.fixture(name="env")
def _env(tmp_path: Path) -> Iterator[tuple[NatsServer, ServiceProcess, int]]:
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    server = NatsServer(keys.body(), tmp_path / "nats", websocket=False).start()
    service = start_service(
        keys.env(server.client_url, policy), tmp_path, wait="callout.started"
    )
    try:
        yield server, service, http_port(service)
    finally:
        assert service.stop() == 0
        server.stop()


async def _checks(port: int) -> float:
    return (await scrape(port))[("callout_secret_checks_total", ())]


async def test_guessing_one_password_costs_n_bcrypt_checks_not_500(
    env: tuple[NatsServer, ServiceProcess, int],
) -> None:
    """500 wrong guesses: 5 checks, all refused; john-doe elsewhere gets in at once."""
    server, service, http = env

    guesses = [
        await raw_login(server.port, "john-doe", f"guess-{n}", source="127.0.0.1")
        for n in range(500)
    ]
    checks_after_guessing = await _checks(http)
    # the right password from the guesser's address is refused too (no oracle)
    during = await raw_login(server.port, "john-doe", PASSWORD, source="127.0.0.1")
    elsewhere = await raw_login(server.port, "john-doe", PASSWORD, source="127.0.0.2")
    started = service.wait_for_event("callout.backoff_started")
    await asyncio.sleep(BACKOFF + 0.2)  # the back-off is time itself: let it pass
    after = await raw_login(server.port, "john-doe", PASSWORD, source="127.0.0.1")
    samples = await scrape(http)

    assert guesses == ["refused"] * 500
    assert checks_after_guessing <= FAILURES + 1
    assert during == "refused"
    assert elsewhere == "ok"
    assert after == "ok"
    assert started["scope"] == "principal"
    assert started["client_host"] == "127.0.0.1"
    assert samples[("callout_throttled_total", (("scope", "principal"),))] >= 495
    reasons = {e["reason"] for e in service.events()[FAILURES:500]}
    assert reasons == {"throttled"}


async def test_a_spray_of_unknown_names_spends_only_the_address_budget(
    env: tuple[NatsServer, ServiceProcess, int],
) -> None:
    """300 unknown names from one address: at most 20 decoy checks; others unharmed."""
    server, service, http = env

    spray = [
        await raw_login(server.port, f"name-{n}", "guess", source="127.0.0.3")
        for n in range(300)
    ]
    checks = await _checks(http)
    known = await raw_login(server.port, "john-doe", PASSWORD, source="127.0.0.4")

    assert spray == ["refused"] * 300
    assert checks <= ADDRESS_FAILURES + 1
    assert known == "ok"
    started = service.wait_for_event("callout.backoff_started")
    assert started["scope"] == "address"
    assert started["user"] is None
