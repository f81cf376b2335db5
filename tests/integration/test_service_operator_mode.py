"""The service in operator mode against a real nats-server built from codec JWTs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from service.protocol.creds import format_creds
from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.xkeys import CurveKeyPair
from tests.builders import hash_secret
from tests.integration.clients import connect, connect_fails, round_trip, user_info
from tests.integration.test_protocol_operator_mode import build_setup
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.natsserver import NatsServer, ServerFactory

PASSWORD = "alice-pw-Vb7"
MALLORY = "mallory-pw-Qq4"
BOT_TOKEN = "bot-token-5d1e"


@dataclass
class Env:
    """A running operator-mode server and service."""

    server: NatsServer
    service: ServiceProcess
    app: KeyPair
    sentinel_creds: Path


def _policy(app: str, other: str, app_key_file: str) -> str:
    hashes = {
        name: hash_secret(pw)
        for name, pw in (("alice", PASSWORD), ("mallory", MALLORY), ("bot", BOT_TOKEN))
    }
    return f"""version: 1
accounts:
  APP: {{public_key: {app}, signing_key_file: {app_key_file}}}
  OTHER: {{public_key: {other}, signing_key_file: other.nk}}
defaults: {{account: APP, expires: 1h}}
roles:
  customer:
    publish: {{allow: ["users.{{{{user}}}}.>", "$SYS.REQ.USER.INFO"]}}
    subscribe: {{allow: ["users.{{{{user}}}}.>", "_INBOX.>"]}}
users:
  - name: alice
    password: "{hashes["alice"]}"
    roles: [customer]
  - name: mallory
    password: "{hashes["mallory"]}"
    roles: [customer]
    account: OTHER
  - name: bot
    token: "{hashes["bot"]}"
    roles: [customer]
"""


@pytest.fixture(name="env", params=["signing-key/plain", "account-key/xkey"])
def _env(
    request: pytest.FixtureRequest, nats_server_factory: ServerFactory, tmp_path: Path
) -> Iterator[Env]:
    signer, encryption = str(request.param).split("/")
    xkey = CurveKeyPair.create() if encryption == "xkey" else None
    setup = build_setup(tmp_path, xkey=xkey)
    server = nats_server_factory(setup.body)
    (tmp_path / "auth.nk").write_text(setup.auth.export_seed())
    (tmp_path / "app.nk").write_text(setup.app.export_seed())
    (tmp_path / "app-signing.nk").write_text(setup.app_signing_key.export_seed())
    (tmp_path / "other.nk").write_text(setup.other.export_seed())
    key_file = "app-signing.nk" if signer == "signing-key" else "app.nk"
    policy = tmp_path / "policy.yaml"
    policy.write_text(_policy(setup.app.public_key, setup.other.public_key, key_file))
    sentinel_creds = tmp_path / "sentinel.creds"
    # a bearer sentinel: the server does not check the nonce signature
    sentinel_creds.write_text(
        format_creds(setup.sentinel_jwt, KeyPair.create(Prefix.USER))
    )
    env = {
        "CALLOUT_MODE": "operator",
        "CALLOUT_NATS_URL": server.client_url,
        "CALLOUT_NATS_CREDS": str(setup.creds),
        "CALLOUT_ISSUER_SEED_FILE": str(tmp_path / "auth.nk"),
        "CALLOUT_POLICY_FILE": str(policy),
    }
    if xkey is not None:
        (tmp_path / "xkey.nk").write_text(xkey.export_seed())
        env["CALLOUT_XKEY_SEED_FILE"] = str(tmp_path / "xkey.nk")
    service = ServiceProcess(env, tmp_path).start()
    yield Env(server, service, setup.app, sentinel_creds)
    assert service.stop() == 0
    log = "\n".join(service.lines)
    for secret in (
        PASSWORD,
        MALLORY,
        setup.auth.export_seed(),
        setup.app.export_seed(),
    ):
        assert secret not in log


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
async def test_password_only_client_is_placed_in_app(env: Env, transport: str) -> None:
    """A browser-style client with only a password (default_sentinel) lands in APP."""
    url = env.server.client_url if transport == "tcp" else env.server.ws_url

    nc = await connect(url, user="alice", password=PASSWORD)
    try:
        echoed = await round_trip(nc, "users.alice.x")
        info = await user_info(nc)
    finally:
        await nc.close()

    assert echoed == b"ping"
    assert info["account"] == env.app.public_key
    assert info["user"] == "alice"


async def test_sentinel_creds_client_is_authorized(env: Env) -> None:
    """A client presenting the sentinel creds and a token is authorized."""
    # nats-py sends only a token (not user/password) alongside creds
    nc = await connect(
        env.server.client_url, user_credentials=str(env.sentinel_creds), token=BOT_TOKEN
    )
    try:
        info = await user_info(nc)
    finally:
        await nc.close()

    assert info["account"] == env.app.public_key
    assert info["user"] == "bot"


async def test_bad_password_is_denied_fast(env: Env) -> None:
    """A wrong password is refused well before the auth timeout."""
    error, elapsed = await connect_fails(
        env.server.client_url, user="alice", password="wrong"
    )

    assert "authorization violation" in error
    assert elapsed < 1.0
    line = env.service.wait_for_event("callout.request_rejected")
    assert line["reason"] == "bad_password"


async def test_account_outside_allowed_accounts_is_refused(env: Env) -> None:
    """The server refuses a placement in an account AUTH does not allow."""
    error, _ = await connect_fails(
        env.server.client_url, user="mallory", password=MALLORY
    )

    assert "authorization violation" in error
    env.server.wait_for_log("not permitted as valid account option")
