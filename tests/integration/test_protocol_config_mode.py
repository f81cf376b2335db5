# Copyright 2026 The nats-auth-callout authors
# SPDX-License-Identifier: Apache-2.0
"""Config mode: keys + codec alone make nats-server 2.15.1 authorize nats-py clients.

Matrix: encryption (plain, xkey) x transport (tcp, websocket). The responder
(tests/integration/responder.py) signs both the user JWT and the response with
the configured issuer key; the user JWT's ``aud`` names the target account.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nats.errors
import pytest
from nats.aio.client import Client

from service.errors import EncryptionMismatch
from service.protocol.claims import AuthRequest, Permission, UserClaims
from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.xkeys import CurveKeyPair
from tests.integration.protocol import (  # noqa: F401 - the fixture matrix
    encryption_fixture,
    publish_and_receive,
    transport_fixture,
)
from tests.integration.responder import Responder
from tests.natsserver import config_mode_body

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.natsserver import NatsServer, ServerFactory

JOHN_PUB = ("users.john-doe.>",)
JOHN_SUB = ("users.john-doe.>", "_INBOX.>")
USER_INFO = "$SYS.REQ.USER.INFO"
FAST_FAIL_S = 1.0  # an answered refusal is far quicker than the 2 s timeout


@dataclass
class Env:
    """One config-mode server plus the keys the responder needs."""

    server: NatsServer
    issuer: KeyPair
    xkey: CurveKeyPair | None
    transport: str

    @property
    def url(self) -> str:
        """Where the client connects: the TCP or the WebSocket listener."""
        return self.server.url_for(self.transport)

    def responder(self, decide: Callable[[AuthRequest], UserClaims | str]) -> Responder:
        """The service user's responder; it always connects over TCP."""
        return Responder(
            self.server.client_url,
            decide=decide,
            signer=self.issuer,
            xkey=self.xkey,
            user="auth",
            password="pwd",
        )


@pytest.fixture(name="env")
def _env(nats_server_factory: ServerFactory, encryption: str, transport: str) -> Env:
    issuer = KeyPair.create(Prefix.ACCOUNT)
    xkey = CurveKeyPair.create() if encryption == "xkey" else None
    body = config_mode_body(
        issuer=issuer.public_key, xkey=None if xkey is None else xkey.public_key
    )
    body += "debug: true\n"  # the expiry disconnect is logged at debug level
    return Env(nats_server_factory(body), issuer, xkey, transport)


def grant_john_doe(
    *, extra_pub: tuple[str, ...] = (), expires: int = 0
) -> Callable[[AuthRequest], UserClaims | str]:
    """Grant john-doe his own subjects in APP; refuse anyone else."""

    def decide(req: AuthRequest) -> UserClaims | str:
        if req.connect_opts.user != "john-doe":
            return f"unknown user {req.connect_opts.user!r}"
        return UserClaims(
            subject=req.user_nkey,
            audience="APP",
            name="john-doe",
            expires=expires,
            pub=Permission(allow=JOHN_PUB + extra_pub),
            sub=Permission(allow=JOHN_SUB),
        )

    return decide


def refuse(reason: str) -> Callable[[AuthRequest], UserClaims | str]:
    """Refuse every request with an error response carrying ``reason``."""

    def decide(req: AuthRequest) -> UserClaims | str:
        return reason

    return decide


@contextlib.asynccontextmanager
async def john_doe(url: str, **options: Any) -> AsyncIterator[Client]:
    """A connected john-doe client, closed on exit."""
    nc = Client()
    try:
        await nc.connect(
            url,
            user="john-doe",
            password="any password",
            allow_reconnect=False,
            **options,
        )
        yield nc
    finally:
        await nc.close()


async def failed_connect(url: str) -> tuple[nats.errors.Error, float]:
    """Connect as john-doe, expecting a refusal: the error and seconds it took."""
    nc = Client()
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    start = time.monotonic()
    try:
        with pytest.raises(nats.errors.Error) as info:
            await nc.connect(
                url,
                user="john-doe",
                password="any password",
                allow_reconnect=False,
                error_cb=on_error,
            )
        elapsed = time.monotonic() - start
    finally:
        await nc.close()
    assert info.value is errors[0]  # closing may add a connection-reset error
    return info.value, elapsed


def _expected_request(env: Env, req: AuthRequest) -> None:
    """What the server told the service about a john-doe connection."""
    assert env.issuer.public_key == req.account
    assert (env.xkey is not None) == req.sealed
    assert (env.xkey is not None) == (req.server.xkey is not None)
    assert "2.15.1" == req.server.version
    assert "john-doe" == req.connect_opts.user
    assert "any password" == req.connect_opts.password
    assert ("websocket" if env.transport == "websocket" else "nats") == (
        req.client_info.type
    )


async def test_granted_user_round_trips_on_own_subjects(env: Env) -> None:
    """(a) The callout-issued permissions let john-doe use users.john-doe.>."""
    async with asyncio.timeout(5), env.responder(grant_john_doe()) as responder:
        async with john_doe(env.url) as nc:
            msg = await publish_and_receive(
                nc, "users.john-doe.>", "users.john-doe.x", b"hello"
            )
        outcome = await responder.wait_handled()

    assert "users.john-doe.x" == msg.subject
    assert b"hello" == msg.data
    assert "jwt" == outcome.kind
    assert outcome.request is not None
    _expected_request(env, outcome.request)
    assert [] == responder.errors


async def test_publish_outside_grant_is_a_permissions_violation(env: Env) -> None:
    """(b) The server enforces the issued publish allow list."""
    violation: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        if not violation.done():
            violation.set_result(exc)

    async with (
        asyncio.timeout(5),
        env.responder(grant_john_doe()),
        john_doe(env.url, error_cb=on_error) as nc,
    ):
        await nc.publish("users.someone-else.x", b"nope")
        await nc.flush()
        error = await violation
        still_connected = nc.is_connected

    # nats-py lower-cases the server's -ERR text
    assert 'permissions violation for publish to "users.someone-else.x"' == (
        str(error).removeprefix("nats: ").lower()
    )
    assert still_connected


async def test_user_info_reports_the_issued_permissions(env: Env) -> None:
    """(c) $SYS.REQ.USER.INFO shows account APP and exactly the granted lists."""
    decide = grant_john_doe(extra_pub=(USER_INFO,))
    async with (
        asyncio.timeout(5),
        env.responder(decide),
        john_doe(env.url) as nc,
    ):
        reply = await nc.request(USER_INFO, b"", timeout=2)
    info = json.loads(reply.data)["data"]
    permissions = info["permissions"]

    assert "APP" == info["account"]
    assert "john-doe" == info["user"]
    assert sorted((*JOHN_PUB, USER_INFO)) == sorted(permissions["publish"]["allow"])
    assert sorted(JOHN_SUB) == sorted(permissions["subscribe"]["allow"])
    assert "deny" not in permissions["publish"]
    assert "deny" not in permissions["subscribe"]
    assert "expires" not in info


async def test_error_response_fails_the_client_fast(env: Env) -> None:
    """(d) An error response: Authorization Violation at once, reason in the log."""
    reason = "john-doe is suspended"
    mark = env.server.log_mark()
    async with asyncio.timeout(5), env.responder(refuse(reason)) as responder:
        error, elapsed = await failed_connect(env.url)
        outcome = await responder.wait_handled()
    line = await asyncio.to_thread(
        env.server.wait_for_log,
        f"Auth callout service returned an error: {reason}",
        since=mark,
    )

    assert "Authorization Violation" in str(error)
    assert elapsed < FAST_FAIL_S
    assert "error" == outcome.kind
    assert reason == outcome.reason
    assert "[WRN]" in line


async def test_user_jwt_expiry_disconnects_the_client(env: Env) -> None:
    """(e) exp = now+2 s: the server closes with 'User Authentication Expired'."""
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    mark = env.server.log_mark()
    expires = int(time.time()) + 2
    async with (
        asyncio.timeout(5),
        env.responder(grant_john_doe(expires=expires)),
        john_doe(env.url, closed_cb=on_closed) as nc,
    ):
        await nc.flush()
        assert nc.is_connected
        await closed.wait()
        closed_at = time.time()
        last_error = str(nc.last_error).removeprefix("nats: ")
    line = await asyncio.to_thread(
        env.server.wait_for_log, "User Authentication Expired", since=mark
    )

    assert closed_at >= expires - 1  # not before the JWT's exp second
    assert "Account:APP - user:john-doe" in line
    # nats-py keeps the -ERR text unless the socket EOF is processed first
    assert last_error in {"user authentication expired", "unexpected EOF"}


@pytest.mark.parametrize("xkey_on", ["service-only", "server-only"])
async def test_xkey_mismatch_aborts_and_the_client_times_out(
    nats_server_factory: ServerFactory, transport: str, xkey_on: str
) -> None:
    """(f) Encryption configured on one side only: no reply, client times out."""
    issuer = KeyPair.create(Prefix.ACCOUNT)
    xkey = CurveKeyPair.create()
    server_has_xkey = xkey_on == "server-only"
    timeout = 0.5
    server = nats_server_factory(
        config_mode_body(
            issuer=issuer.public_key,
            xkey=xkey.public_key if server_has_xkey else None,
            timeout=timeout,
        )
    )
    env = Env(server, issuer, None if server_has_xkey else xkey, transport)
    mark = server.log_mark()
    async with asyncio.timeout(5), env.responder(grant_john_doe()) as responder:
        error, elapsed = await failed_connect(env.url)
        outcome = await responder.wait_handled()

    assert "Authorization Violation" in str(error)
    assert elapsed >= timeout * 0.9
    assert "aborted" == outcome.kind
    assert isinstance(outcome.error, EncryptionMismatch)
    assert [outcome.error] == responder.errors
    new_lines = server.log_text().splitlines()[mark:]
    assert not [line for line in new_lines if "Auth callout service" in line]


async def test_sub_second_timeout_request_is_not_expired_on_arrival(
    nats_server_factory: ServerFactory,
) -> None:
    """authorization.timeout 0.5: a request sent at X.05-X.3 has exp = X.

    nats-server sets exp = trunc(now + timeout), and Go's jwt Validate treats
    it as valid while time.Now().Unix() <= exp; the server keeps waiting until
    X.55-X.8. So the service must still answer a request that arrives at X.1.
    """
    issuer = KeyPair.create(Prefix.ACCOUNT)
    server = nats_server_factory(
        config_mode_body(issuer=issuer.public_key, timeout=0.5)
    )
    env = Env(server, issuer, None, "tcp")
    async with asyncio.timeout(5), env.responder(grant_john_doe()) as responder:
        # Not synchronisation: put the connect at 0.05-0.3 s into a wall-clock
        # second, where exp = trunc(t + 0.5) is the current second.
        while not 0.05 <= time.time() % 1 < 0.3:
            await asyncio.sleep((1.05 - time.time() % 1) % 1)
        async with john_doe(env.url) as nc:
            await nc.flush()
        outcome = await responder.wait_handled()

    assert "jwt" == outcome.kind
    assert [] == responder.errors
