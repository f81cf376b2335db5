"""
`POST /admin/revoke` on a running service's HTTP port, against a real
nats-server with the system-account link (docs/operations.md "Revocation
and live sessions").
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import aiohttp
from nats.aio.client import Client

from tests.integration.clients import CONNECT_OPTS, connect_fails
from tests.integration.opsenv import (
    PASSWORDS,
    SYSTEM_ENV,
    Keys,
    bcrypt_hash,
    http_port,
    start_service,
)
from tests.integration.test_live_sessions import policy
from tests.natsserver import NatsServer

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "admin-token-Vf83kq0Zp2LmX7"


async def _post(port: int, body: dict[str, Any], token: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
        session.post(
            f"http://127.0.0.1:{port}/admin/revoke",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        return response.status, await response.text()


def _start(tmp_path: Path, **extra: str) -> tuple[NatsServer, Any, int]:
    keys = Keys.create(tmp_path)
    server = NatsServer(keys.body(system=True), tmp_path / "nats").start()
    hashes = {name: bcrypt_hash(pw) for name, pw in PASSWORDS.items()}
    path = tmp_path / "policy.yaml"
    path.write_text(policy(hashes))
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    env = keys.env(server.client_url, path, CALLOUT_ADMIN_TOKEN_FILE=str(token_file))
    service = start_service(env | extra, tmp_path, wait="callout.started")
    return server, service, http_port(service)


async def test_admin_revoke_kicks_the_user_and_refuses_a_new_connect(
    tmp_path: Path,
) -> None:
    """With the token, POST revoke closes carol's connection and she is then refused."""
    server, service, port = _start(tmp_path, **SYSTEM_ENV)
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    carol, bob = Client(), Client()
    try:
        service.wait_for_event("callout.system_connected", timeout=10)
        await carol.connect(
            server.client_url,
            user="carol",
            password=PASSWORDS["carol"],
            closed_cb=on_closed,
            **CONNECT_OPTS,
        )
        await bob.connect(
            server.client_url, user="bob", password=PASSWORDS["bob"], **CONNECT_OPTS
        )
        wrong = await _post(port, {"user": "carol"}, "not-the-" + TOKEN)
        await carol.flush(timeout=2)
        still_there = carol.is_connected
        status, text = await _post(
            port, {"user": "carol", "reason": "left", "for": "1h"}, TOKEN
        )
        async with asyncio.timeout(2):
            await closed.wait()
        refused, _ = await connect_fails(
            server.client_url, user="carol", password=PASSWORDS["carol"]
        )
        await bob.flush(timeout=2)
        bob_stays = bob.is_connected
    finally:
        for nc in (carol, bob):
            await nc.close()
        code = service.stop()
        server.stop()
    answer = json.loads(text)
    denied = [
        r for r in service.events("callout.request_rejected") if r["user"] == "carol"
    ]
    log = "\n".join(service.lines)

    assert (wrong[0], still_there) == (401, True)
    assert status == 200, text
    assert (answer["user"], answer["instances"], answer["found"]) == ("carol", 1, 1)
    assert answer["kicked"] == 1
    assert answer["until"] is not None
    assert "authorization violation" in refused
    assert denied[-1]["reason"] == "revoked"
    assert bob_stays
    assert [e["status"] for e in service.events("callout.admin_revoke")] == [200]
    assert len(service.events("callout.admin_unauthorized")) == 1
    assert TOKEN not in log
    assert code == 0


async def test_admin_revoke_without_a_system_login_is_503(tmp_path: Path) -> None:
    """The token file but no CALLOUT_SYSTEM_*: the right token gets 503 and a reason."""
    server, service, port = _start(tmp_path)
    try:
        status, text = await _post(port, {"user": "carol"}, TOKEN)
    finally:
        code = service.stop()
        server.stop()

    assert status == 503
    assert "system-account login" in json.loads(text)["error"]
    assert code == 0
