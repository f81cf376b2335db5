"""The worker's connection-error lines: at most one per 5 s per kind."""

from __future__ import annotations

from nats.errors import Error as NatsError
from structlog.testing import capture_logs

from service.config import Keys, Settings
from service.policy import parse_policy
from service.process.worker import Worker
from service.protocol.nkeys import KeyPair, Prefix
from service.signers import AccountSigner

ISSUER = KeyPair.create(Prefix.ACCOUNT)


def _worker() -> Worker:
    policy = parse_policy(
        "version: 1\naccounts: {APP: {}}\ndefaults: {account: APP}\nusers: []\n"
    )
    signers = {"APP": AccountSigner(ISSUER, audience="APP")}
    return Worker(Settings(), Keys(issuer=ISSUER, xkey=None), policy, signers)


async def test_two_alternating_error_kinds_are_each_logged_once() -> None:
    """A refused login and a reset connection, alternating, give one line each."""
    worker = _worker()

    with capture_logs() as lines:
        for _ in range(50):
            await worker._on_error(NatsError("nats: 'Authorization Violation'"))
            await worker._on_error(ConnectionResetError("reset by peer"))

    events = sorted(line["event"] for line in lines)
    assert events == ["callout.nats_connect_failed", "callout.nats_login_refused"]


async def test_a_refused_login_backs_off_to_ten_seconds() -> None:
    """Each refused login doubles the wait before the next attempt, up to 10 s."""
    worker = _worker()
    waits = []

    with capture_logs():
        for _ in range(10):
            await worker._on_error(NatsError("nats: 'Authorization Violation'"))
            waits.append(worker._client.options["reconnect_time_wait"])

    assert waits[:4] == [0.2, 0.4, 0.8, 1.6]
    assert waits[-1] == 10.0
    assert waits == sorted(waits)
