# Copyright 2026 The nats-auth-callout authors
# SPDX-License-Identifier: Apache-2.0
"""Operator mode from ``service.protocol`` and ``service.setup``: JWTs, creds, sentinel.

Accounts: SYS (system), AUTH (runs the callout; its ``authorization`` names the
service user, allows APP and optionally carries the xkey), APP (the target,
with a signing key) and OTHER (not in ``allowed_accounts``). Clients present
only user/password; ``default_sentinel`` (a bearer deny-all user of AUTH)
routes them to the callout. The responder signs the response with the AUTH
key and the user JWT with APP's signing key plus ``issuer_account``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nats.errors
import pytest
from nats.aio.client import Client

from service.protocol.claims import AuthRequest, Permission, UserClaims
from service.protocol.creds import format_creds
from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.xkeys import CurveKeyPair
from service.setup import init
from tests.integration.protocol import (  # noqa: F401 - the fixture matrix
    encryption_fixture,
    publish_and_receive,
    transport_fixture,
)
from tests.integration.responder import Responder
from tests.natsserver import check_config, operator_mode_body

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from tests.natsserver import NatsServer, ServerFactory

USER_INFO = "$SYS.REQ.USER.INFO"
PUB = ("orders.>", USER_INFO)
SUB = ("orders.>", "_INBOX.>")
FAST_FAIL_S = 1.0
PASSWORD = "secret"


@dataclass
class Env:
    """An operator-mode server and every key the responder or a test needs."""

    server: NatsServer
    transport: str
    auth: KeyPair
    app: KeyPair
    app_signing_key: KeyPair
    other: KeyPair
    xkey: CurveKeyPair | None
    creds: Path
    sentinel_jwt: str

    @property
    def url(self) -> str:
        """Where the client connects: the TCP or the WebSocket listener."""
        return self.server.url_for(self.transport)

    def responder(
        self,
        decide: Callable[[AuthRequest], UserClaims | str],
        *,
        user_signer: KeyPair | None = None,
    ) -> Responder:
        """The service user (creds of AUTH) answering with the AUTH key."""
        return Responder(
            self.server.client_url,
            decide=decide,
            signer=self.auth,
            user_signer=user_signer or self.app_signing_key,
            xkey=self.xkey,
            user_credentials=str(self.creds),
        )


@dataclass(frozen=True)
class OperatorSetup:
    """An operator-mode config body and the keys and files behind it."""

    body: str
    auth: KeyPair
    app: KeyPair
    app_signing_key: KeyPair
    other: KeyPair
    creds: Path
    sentinel_jwt: str


def build_setup(tmp_path: Path, *, xkey: CurveKeyPair | None) -> OperatorSetup:
    """Operator, accounts, service creds and sentinel, all encoded by codec."""
    other = KeyPair.create(Prefix.ACCOUNT)
    setup = init.OperatorSetup(
        xkey="" if xkey is None else xkey.public_key, extra={"OTHER": other}
    )
    creds = tmp_path / "auth-service.creds"
    creds.write_text(
        format_creds(setup.service_jwt, setup.service_user), encoding="utf-8"
    )
    body = operator_mode_body(
        operator_jwt=setup.operator_jwt,
        system_account=setup.system.public_key,
        preload=setup.preload,
        default_sentinel=setup.sentinel_jwt,
    )
    return OperatorSetup(
        body, setup.auth, setup.app, setup.app_signing, other, creds, setup.sentinel_jwt
    )


@pytest.fixture(name="env")
def _env(
    nats_server_factory: ServerFactory,
    tmp_path: Path,
    encryption: str,
    transport: str,
) -> Env:
    xkey = CurveKeyPair.create() if encryption == "xkey" else None
    setup = build_setup(tmp_path, xkey=xkey)
    return Env(
        server=nats_server_factory(setup.body),
        transport=transport,
        auth=setup.auth,
        app=setup.app,
        app_signing_key=setup.app_signing_key,
        other=setup.other,
        xkey=xkey,
        creds=setup.creds,
        sentinel_jwt=setup.sentinel_jwt,
    )


def place_in(
    account: KeyPair, *, issuer_account: str = ""
) -> Callable[[AuthRequest], UserClaims | str]:
    """Grant alice (password "secret") orders.> in ``account``; refuse others."""

    def decide(req: AuthRequest) -> UserClaims | str:
        if (req.connect_opts.user, req.connect_opts.password) != ("alice", PASSWORD):
            return "bad user or password"
        return UserClaims(
            subject=req.user_nkey,
            name="alice",
            issuer_account=issuer_account,
            pub=Permission(allow=PUB),
            sub=Permission(allow=SUB),
        )

    return decide


@contextlib.asynccontextmanager
async def alice(url: str, password: str = PASSWORD) -> AsyncIterator[Client]:
    """A connected client with only user/password (no JWT), closed on exit."""
    nc = Client()
    try:
        await nc.connect(url, user="alice", password=password, allow_reconnect=False)
        yield nc
    finally:
        await nc.close()


async def failed_connect(url: str, password: str = PASSWORD) -> tuple[str, float]:
    """Connect as alice expecting refusal: the error text and seconds it took."""
    start = time.monotonic()
    with pytest.raises(nats.errors.Error) as info:
        async with alice(url, password):
            pass
    return str(info.value), time.monotonic() - start


def test_the_codec_built_config_passes_the_config_test(tmp_path: Path) -> None:
    """nats-server -t accepts the operator, account and sentinel JWTs from codec."""
    setup = build_setup(tmp_path, xkey=CurveKeyPair.create())
    path = tmp_path / "check.conf"
    path.write_text(setup.body, encoding="utf-8")

    result = check_config(path)

    assert 0 == result.returncode, result.stdout


async def test_sentinel_user_is_placed_in_app_by_a_signing_key(env: Env) -> None:
    """(a, b, d) user/password only -> callout -> APP via its signing key; works."""
    decide = place_in(env.app, issuer_account=env.app.public_key)
    async with asyncio.timeout(5), env.responder(decide) as responder:
        async with alice(env.url) as nc:
            msg = await publish_and_receive(nc, "orders.>", "orders.new", b"42")
            reply = await nc.request(USER_INFO, b"", timeout=2)
        outcome = await responder.wait_handled()
    info = json.loads(reply.data)["data"]
    req = outcome.request

    assert "orders.new" == msg.subject
    assert b"42" == msg.data
    assert env.app.public_key == info["account"]
    assert "alice" == info["user"]
    assert sorted(PUB) == sorted(info["permissions"]["publish"]["allow"])
    assert sorted(SUB) == sorted(info["permissions"]["subscribe"]["allow"])
    assert "jwt" == outcome.kind
    assert req is not None
    assert env.auth.public_key == req.account
    assert env.sentinel_jwt == req.connect_opts.jwt
    assert (env.xkey is not None) == req.sealed
    assert ("websocket" if env.transport == "websocket" else "nats") == (
        req.client_info.type
    )
    assert [] == responder.errors


async def test_account_outside_allowed_accounts_is_refused(env: Env) -> None:
    """(c) A user JWT issued by OTHER (not allowed) -> Authorization Violation."""
    mark = env.server.log_mark()
    decide = place_in(env.other)
    async with (
        asyncio.timeout(5),
        env.responder(decide, user_signer=env.other) as responder,
    ):
        error, elapsed = await failed_connect(env.url)
        outcome = await responder.wait_handled()
    line = await asyncio.to_thread(
        env.server.wait_for_log, "not permitted as valid account option", since=mark
    )

    assert "Authorization Violation" in error
    assert elapsed < FAST_FAIL_S
    assert "jwt" == outcome.kind
    assert f'Account "{env.other.public_key}"' in line
    assert f'for account "{env.auth.public_key}"' in line


async def test_error_response_fails_the_client_fast(env: Env) -> None:
    """A wrong password gets an error response: fast refusal, reason in the log."""
    mark = env.server.log_mark()
    decide = place_in(env.app, issuer_account=env.app.public_key)
    async with asyncio.timeout(5), env.responder(decide) as responder:
        error, elapsed = await failed_connect(env.url, password="wrong")
        outcome = await responder.wait_handled()
    await asyncio.to_thread(
        env.server.wait_for_log,
        "Auth callout service returned an error: bad user or password",
        since=mark,
    )

    assert "Authorization Violation" in error
    assert elapsed < FAST_FAIL_S
    assert "error" == outcome.kind
