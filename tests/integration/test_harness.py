# Copyright 2026 The nats-auth-callout authors
# SPDX-License-Identifier: Apache-2.0
"""The harness itself, against a real nats-server 2.15.1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from typing import TYPE_CHECKING

import nats
import nkeys
import pytest

from tests.natsserver import (
    check_config,
    config_mode_body,
    operator_mode_body,
    render_config,
)

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from tests.natsserver import ServerFactory

PLAIN = "authorization { users: [ {user: a, password: b} ] }"
ISSUER = "ABJHLOVMPA4CI6R5KLNGOB4GSLNIY7IOUPAJC4YFNDLQVIOBYQGUWVLA"
XKEY = "XAB3NANV3M6N7AHSQP2U5FRWKKUT7EG2ZXXABV4XVXYQRJGM4S2CZGHT"


async def _echo_round_trip(nc: Client) -> None:
    async def echo(msg: Msg) -> None:
        await msg.respond(b"echo:" + msg.data)

    sub = await nc.subscribe("svc.echo", cb=echo)
    try:
        reply = await nc.request("svc.echo", b"ping", timeout=5)
    finally:
        await sub.unsubscribe()
    assert reply.data == b"echo:ping"


# nats-py 2.16's WebSocketTransport passes a float `timeout=` to aiohttp's
# ws_connect, which aiohttp 3.14 deprecates; under filterwarnings=error the
# connect attempt fails (and retries) until the test times out.
AIOHTTP_WS_TIMEOUT = pytest.mark.filterwarnings(
    "ignore:parameter 'timeout' of type 'float' is deprecated"
    ":DeprecationWarning:nats.aio.transport"
)


@pytest.mark.parametrize(
    "transport", ["tcp", pytest.param("websocket", marks=AIOHTTP_WS_TIMEOUT)]
)
async def test_client_round_trips_over_tcp_and_websocket(
    nats_server_factory: ServerFactory, transport: str
) -> None:
    """A nats-py client does request/reply on both listeners of one server."""
    server = nats_server_factory(PLAIN)
    url = server.client_url if transport == "tcp" else server.ws_url
    async with asyncio.timeout(10):
        nc = await nats.connect(url, user="a", password="b", allow_reconnect=False)
        try:
            await _echo_round_trip(nc)
        finally:
            await nc.close()


async def test_wait_for_log_finds_the_client_connection_line(
    nats_server_factory: ServerFactory,
) -> None:
    """With debug on, the captured log shows the connection of a client."""
    server = nats_server_factory(PLAIN + "\ndebug: true")
    mark = server.log_mark()
    async with asyncio.timeout(10):
        nc = await nats.connect(server.client_url, user="a", password="b")
        try:
            line = await asyncio.to_thread(
                server.wait_for_log, "Client connection created", since=mark
            )
        finally:
            await nc.close()
    assert "[DBG]" in line
    assert "Server is ready" in server.log_text()


def test_wait_for_log_times_out_with_assertion_error(
    nats_server_factory: ServerFactory,
) -> None:
    """A line that never appears raises AssertionError carrying the log tail."""
    server = nats_server_factory(PLAIN)
    with pytest.raises(AssertionError, match="Server is ready"):
        server.wait_for_log("this line is never logged", timeout=0.3)


async def test_server_does_not_stall_when_its_log_exceeds_a_pipe(
    nats_server_factory: ServerFactory,
) -> None:
    """With trace on, 3000 messages flow and the drained log passes 64 KiB."""
    server = nats_server_factory(PLAIN + "\ntrace: true")
    total = 3000
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    received = 0

    async def count(msg: Msg) -> None:
        nonlocal received
        received += 1
        if received == total and not done.done():
            done.set_result(received)

    async with asyncio.timeout(60):
        nc = await nats.connect(server.client_url, user="a", password="b")
        try:
            await nc.subscribe("bulk", cb=count)
            for i in range(total):
                await nc.publish("bulk", b"message %d" % i)
            await nc.flush()
            assert await done == total
            await _echo_round_trip(nc)
        finally:
            await nc.close()
    assert len(server.log_text()) > 64 * 1024


async def test_restart_keeps_the_port_and_the_client_reconnects(
    nats_server_factory: ServerFactory,
) -> None:
    """restart() comes back on the same port and a reconnecting client resumes."""
    server = nats_server_factory(PLAIN)
    port, ws_port = server.port, server.ws_port
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    async with asyncio.timeout(20):
        nc = await nats.connect(
            server.client_url,
            user="a",
            password="b",
            reconnected_cb=on_reconnect,
            reconnect_time_wait=0.1,
            max_reconnect_attempts=-1,
        )
        try:
            await _echo_round_trip(nc)
            await asyncio.to_thread(server.restart)
            assert (server.port, server.ws_port) == (port, ws_port)
            await reconnected.wait()
            await _echo_round_trip(nc)
        finally:
            await nc.close()


def test_stop_is_idempotent(nats_server_factory: ServerFactory) -> None:
    """Stopping twice is harmless and the process is gone afterwards."""
    server = nats_server_factory(PLAIN)
    server.stop()
    server.stop()
    assert not server.running


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "check.conf"
    path.write_text(render_config(body), encoding="utf-8")
    return path


def _user_public_key() -> str:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return str(nkeys.from_seed(seed).public_key.decode())


@pytest.mark.parametrize(
    "body",
    [
        config_mode_body(issuer=ISSUER),
        config_mode_body(issuer=ISSUER, xkey=XKEY, timeout=2.5),
        config_mode_body(
            issuer=ISSUER,
            accounts=("APP", "OTHER"),
            extra_users="{ user: static, password: s }",
        ),
        config_mode_body(issuer=ISSUER, auth_nkey=_user_public_key()),
    ],
    ids=["plain", "xkey", "extra-accounts", "nkey-login"],
)
def test_config_mode_bodies_pass_the_config_test(tmp_path: Path, body: str) -> None:
    """nats-server -t accepts every config-mode layout the helper produces."""
    result = check_config(_write(tmp_path, body))
    assert result.returncode == 0, result.stdout


def test_broken_config_fails_the_config_test(tmp_path: Path) -> None:
    """nats-server -t rejects an auth callout whose issuer is not an account key."""
    result = check_config(_write(tmp_path, config_mode_body(issuer="not-a-key")))
    assert result.returncode != 0
    assert "not-a-key" in result.stdout


def test_config_mode_server_starts(nats_server_factory: ServerFactory) -> None:
    """A server with the config-mode callout layout (and xkey) becomes ready."""
    server = nats_server_factory(config_mode_body(issuer=ISSUER, xkey=XKEY))
    assert server.port > 0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _keypair(prefix: int) -> Any:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def _public(kp: Any) -> str:
    return str(kp.public_key.decode())


def _jwt(signer: Any, subject: str, kind: str, **nats_claims: object) -> str:
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": _public(signer),
        "name": kind,
        "sub": subject,
        "nats": {"type": kind, "version": 2, **nats_claims},
    }
    digest = hashlib.sha256(json.dumps(claims).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(signer.sign(signing_input.encode()))}"


def test_operator_mode_body_with_sentinel_starts_a_server(
    nats_server_factory: ServerFactory, tmp_path: Path
) -> None:
    """operator_mode_body (MEM resolver, sentinel, auth timeout) passes -t and runs."""
    operator = _keypair(nkeys.PREFIX_BYTE_OPERATOR)
    system, app = (_keypair(nkeys.PREFIX_BYTE_ACCOUNT) for _ in range(2))
    sentinel = _jwt(
        app,
        _public(_keypair(nkeys.PREFIX_BYTE_USER)),
        "user",
        bearer_token=True,
        pub={"deny": [">"]},
        sub={"deny": [">"]},
    )
    body = operator_mode_body(
        operator_jwt=_jwt(operator, _public(operator), "operator"),
        system_account=_public(system),
        preload={
            _public(acct): _jwt(operator, _public(acct), "account")
            for acct in (system, app)
        },
        default_sentinel=sentinel,
        timeout=0.5,
    )
    result = check_config(_write(tmp_path, body))
    assert result.returncode == 0, result.stdout
    server = nats_server_factory(body)
    server.wait_for_log("Trusted Operators", timeout=1)
