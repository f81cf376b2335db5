"""A request shed before bcrypt still names its server and client in its line."""

from __future__ import annotations

import time

import bcrypt
from structlog.testing import capture_logs

from service.config import Keys, Settings
from service.dispatch.dispatcher import Dispatcher
from service.ops.health import Health
from service.ops.metrics import Metrics
from service.policy import parse_policy
from service.protocol.nkeys import KeyPair, Prefix
from service.signers import AccountSigner
from tests.factories import FakeServer, make_request

ISSUER = KeyPair.create(Prefix.ACCOUNT)


async def test_a_shed_request_logs_the_claimed_server_and_client() -> None:
    """deadline_unmeetable carries server_id, client_host and client_type, not null."""
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    policy = parse_policy(
        "version: 1\naccounts: {APP: {}}\ndefaults: {account: APP}\n"
        f'users:\n  - {{name: u, password: "{hashed}"}}\n'
    )
    dispatcher = Dispatcher(
        Settings(threads=1),
        Keys(issuer=ISSUER, xkey=None),
        policy,
        {"APP": AccountSigner(ISSUER, audience="APP")},
        metrics=Metrics(),
        health=Health(),
    )
    dispatcher.cold.cost = 10.0  # bcrypt "takes" 10 s: a 2 s request is shed
    server = FakeServer()
    body, _ = make_request(
        server,
        issuer_account=ISSUER.public_key,
        connect_opts={"user": "u", "pass": "pw"},
        now=int(time.time()),
        ttl=2,
    )

    async def respond(_reply: bytes) -> None:
        raise AssertionError("a shed request gets no reply")

    with capture_logs() as logs:
        await dispatcher.dispatch(body, None, respond)
        await dispatcher.wait()
    dispatcher.close()

    (line,) = [e for e in logs if e["event"] == "callout.request_aborted"]
    assert line["reason"] == "deadline_unmeetable"
    assert line["server_id"] == server.id
    assert line["client_host"] == "127.0.0.1"
    assert line["client_type"] == "nats"
