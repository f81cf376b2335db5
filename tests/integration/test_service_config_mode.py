"""The service (`python -m service run`) against a real config-mode nats-server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.xkeys import CurveKeyPair
from tests.builders import hash_secret
from tests.integration.clients import (
    connect,
    connect_fails,
    permission_violation,
    raw_nkey_connect,
    round_trip,
    user_info,
)
from tests.natsserver import NatsServer, config_mode_body
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SECRETS = {
    "john-doe": "john-doe-pw-Zq8",
    "restricted": "restricted-pw-Lm3",
    "office": "office-pw-Tt1",
    "browser": "browser-pw-Hh5",
    "brief": "brief-pw-Kk2",
}
BILLING_TOKEN = "billing-token-9f3c1e"
FAST = 1.0  # a refusal must come well before the server's 2 s auth timeout


def _hash(secret: str) -> str:
    return hash_secret(secret)


def policy_yaml(sensor_nkey: str, *, anonymous: bool) -> str:
    """The test policy: every identity kind and every service-side check."""
    users = "\n".join(
        f"""  - name: {name}
    password: "{_hash(pw)}"
    roles: [customer]"""
        + extra
        for name, pw, extra in (
            ("john-doe", SECRETS["john-doe"], ""),
            (
                "restricted",
                SECRETS["restricted"],
                '\n    publish: {deny: ["users.restricted.admin.>"]}',
            ),
            ("office", SECRETS["office"], '\n    source_networks: ["10.0.0.0/8"]'),
            ("browser", SECRETS["browser"], "\n    connection_types: [WEBSOCKET]"),
            ("brief", SECRETS["brief"], "\n    expires: 2s"),
        )
    )
    anon = "anonymous:\n  roles: [guest]\n" if anonymous else ""
    return f"""version: 1
accounts:
  APP: {{}}
  BILLING: {{}}
defaults:
  account: APP
  expires: 1h
roles:
  customer:
    publish: {{allow: ["users.{{{{user}}}}.>", "$SYS.REQ.USER.INFO"]}}
    subscribe: {{allow: ["users.{{{{user}}}}.>", "_INBOX.>"]}}
  guest:
    publish: {{allow: ["$SYS.REQ.USER.INFO"]}}
    subscribe: {{allow: ["public.>", "_INBOX.>"]}}
users:
{users}
  - name: billing
    token: "{_hash(BILLING_TOKEN)}"
    roles: [customer]
    account: BILLING
  - name: sensor-7
    nkey: {sensor_nkey}
    roles: [customer]
{anon}"""


@dataclass
class Env:
    """A running nats-server + service pair and the keys behind them."""

    server: NatsServer
    service: ServiceProcess
    sensor: KeyPair
    policy_path: Path
    seeds: list[str]


def start_env(
    directory: Path, *, anonymous: bool = False, xkey: str = "none"
) -> tuple[NatsServer, ServiceProcess, Env]:
    """
    Start server and service.

    Args:
        xkey: "none", "both", or "service-only" (a mismatch).
    """
    directory.mkdir(parents=True, exist_ok=True)
    issuer = KeyPair.create(Prefix.ACCOUNT)
    login = KeyPair.create(Prefix.USER)
    sensor = KeyPair.create(Prefix.USER)
    curve = CurveKeyPair.create() if xkey != "none" else None
    server = NatsServer(
        config_mode_body(
            issuer=issuer.public_key,
            auth_nkey=login.public_key,
            accounts=("APP", "BILLING"),
            xkey=curve.public_key if curve is not None and xkey == "both" else None,
        ),
        directory / "nats",
    ).start()
    (directory / "issuer.nk").write_text(issuer.export_seed())
    (directory / "login.nk").write_text(login.export_seed())
    policy_path = directory / "policy.yaml"
    policy_path.write_text(policy_yaml(sensor.public_key, anonymous=anonymous))
    env = {
        "CALLOUT_NATS_URL": server.client_url,
        "CALLOUT_NATS_NKEY_SEED_FILE": str(directory / "login.nk"),
        "CALLOUT_ISSUER_SEED_FILE": str(directory / "issuer.nk"),
        "CALLOUT_POLICY_FILE": str(policy_path),
    }
    seeds = [issuer.export_seed(), login.export_seed(), sensor.export_seed()]
    if curve is not None:
        (directory / "xkey.nk").write_text(curve.export_seed())
        env["CALLOUT_XKEY_SEED_FILE"] = str(directory / "xkey.nk")
        seeds.append(curve.export_seed())
    service = ServiceProcess(env, directory).start()
    return server, service, Env(server, service, sensor, policy_path, seeds)


@pytest.fixture(name="env", scope="module")
def _env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    server, service, env = start_env(tmp_path_factory.mktemp("callout"))
    yield env
    assert service.stop() == 0
    server.stop()
    log = "\n".join(service.lines)
    for secret in [*SECRETS.values(), BILLING_TOKEN, *env.seeds]:
        assert secret not in log


def _denials(env: Env, before: int) -> list[dict[str, Any]]:
    """Denials logged after `before`: an allow in between (a client of an
    earlier test reconnecting, say) is not the decision under test."""
    return [e for e in env.service.events()[before:] if e["decision"] == "deny"]


def _explain(policy: Path, *args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "service", "explain", str(policy), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    view: dict[str, object] = json.loads(out.stdout)
    return view


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
async def test_john_doe_gets_his_own_subjects_only(env: Env, transport: str) -> None:
    """The seed scenario: own subjects round-trip, someone else's are a violation."""
    url = env.server.client_url if transport == "tcp" else env.server.ws_url
    pw = SECRETS["john-doe"]

    nc = await connect(url, user="john-doe", password=pw)
    try:
        echoed = await round_trip(nc, "users.john-doe.inbox")
        info = await user_info(nc)
    finally:
        await nc.close()
    violation = await permission_violation(
        url, "users.someone-else.inbox", user="john-doe", password=pw
    )

    assert echoed == b"ping"
    assert info["account"] == "APP"
    assert "users.someone-else.inbox" in violation


async def test_server_permissions_equal_explain(env: Env) -> None:
    """nats-server reports the permissions that explain prints."""
    nc = await connect(
        env.server.client_url, user="john-doe", password=SECRETS["john-doe"]
    )
    try:
        info = await user_info(nc)
    finally:
        await nc.close()
    view = _explain(
        env.policy_path, "--user", "john-doe", "--password", SECRETS["john-doe"]
    )
    perms = view["permissions"]
    assert isinstance(perms, dict)

    assert sorted(info["permissions"]["publish"]["allow"]) == sorted(
        perms["pub"]["allow"]
    )
    assert sorted(info["permissions"]["subscribe"]["allow"]) == sorted(
        perms["sub"]["allow"]
    )
    assert view["account"] == info["account"] == "APP"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"user": "john-doe", "password": "wrong"}, "bad_password"),
        ({"user": "nobody", "password": "x"}, "unknown_user"),
        ({"token": "not-a-known-token"}, "unknown_token"),
        ({}, "no_credentials"),
    ],
)
async def test_bad_credentials_are_denied_fast(
    env: Env, options: dict[str, str], reason: str
) -> None:
    """Wrong or missing credentials are refused well before the auth timeout."""
    before = len(env.service.events())

    error, elapsed = await connect_fails(env.server.client_url, **options)
    env.service.wait_for(lambda _: bool(_denials(env, before)))
    line = _denials(env, before)[0]

    assert "authorization violation" in error
    assert elapsed < FAST
    assert line["decision"] == "deny"
    assert line["reason"] == reason
    env.server.wait_for_log(f"Auth callout service returned an error: {reason}")


async def test_token_user_is_placed_in_its_account(env: Env) -> None:
    """A bearer-token user lands in the account the policy names (BILLING)."""
    nc = await connect(env.server.client_url, token=BILLING_TOKEN)
    try:
        info = await user_info(nc)
        echoed = await round_trip(nc, "users.billing.x")
    finally:
        await nc.close()

    assert info["account"] == "BILLING"
    assert echoed == b"ping"


async def test_nkey_user_signs_the_nonce(env: Env) -> None:
    """An nkey client that signs the server's nonce is authorized."""
    answer = await raw_nkey_connect(
        "127.0.0.1", env.server.port, env.sensor.public_key, env.sensor.sign
    )

    assert answer == "PONG"


@pytest.mark.parametrize(
    ("who", "reason"),
    [("unknown", "unknown_nkey"), ("bad-signature", "bad_nkey_signature")],
)
async def test_nkey_refusals(env: Env, who: str, reason: str) -> None:
    """An unknown nkey, or a signature by the wrong key, is refused fast."""
    stranger = KeyPair.create(Prefix.USER)
    nkey = stranger.public_key if who == "unknown" else env.sensor.public_key
    before = len(env.service.events())

    answer = await raw_nkey_connect("127.0.0.1", env.server.port, nkey, stranger.sign)

    env.service.wait_for(lambda _: bool(_denials(env, before)))
    assert "authorization violation" in answer.lower()
    assert _denials(env, before)[0]["reason"] == reason


async def test_per_user_deny_is_merged_with_roles(env: Env) -> None:
    """A user's own deny list narrows what the role allows."""
    creds = {"user": "restricted", "password": SECRETS["restricted"]}
    nc = await connect(env.server.client_url, **creds)
    try:
        echoed = await round_trip(nc, "users.restricted.data")
    finally:
        await nc.close()
    violation = await permission_violation(
        env.server.client_url, "users.restricted.admin.reset", **creds
    )

    assert echoed == b"ping"
    assert "users.restricted.admin.reset" in violation


async def test_source_networks_are_enforced_by_the_service(env: Env) -> None:
    """A user limited to 10.0.0.0/8 is refused from 127.0.0.1."""
    before = len(env.service.events())

    error, _ = await connect_fails(
        env.server.client_url, user="office", password=SECRETS["office"]
    )
    env.service.wait_for(
        lambda _: any(e.get("user") == "office" for e in env.service.events()[before:])
    )

    # another test's client may reconnect meanwhile: pick office's decision
    decision = next(
        e for e in env.service.events()[before:] if e.get("user") == "office"
    )
    assert "authorization violation" in error
    assert decision["reason"] == "source_not_allowed"


async def test_connection_types_are_enforced_by_the_service(env: Env) -> None:
    """A WEBSOCKET-only user is refused over TCP and accepted over WebSocket."""
    creds = {"user": "browser", "password": SECRETS["browser"]}
    before = len(env.service.events())

    error, _ = await connect_fails(env.server.client_url, **creds)
    env.service.wait_for(lambda _: bool(_denials(env, before)))
    nc = await connect(env.server.ws_url, **creds)
    await nc.close()

    assert "authorization violation" in error
    assert _denials(env, before)[0]["reason"] == "connection_type_not_allowed"


async def test_short_expiry_disconnects_the_client(env: Env) -> None:
    """A user with `expires: 2s` is disconnected by the server when it passes."""
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    nc = await connect(
        env.server.client_url,
        user="brief",
        password=SECRETS["brief"],
        closed_cb=on_closed,
    )
    try:
        async with asyncio.timeout(6):
            await closed.wait()
    finally:
        await nc.close()

    assert "user authentication expired" in str(nc.last_error).lower()


async def test_one_decision_line_per_connect(env: Env) -> None:
    """Each connect attempt gives exactly one decision line with the schema's fields."""
    before = len(env.service.events())

    nc = await connect(
        env.server.client_url, user="john-doe", password=SECRETS["john-doe"]
    )
    await nc.close()
    await connect_fails(env.server.client_url, user="john-doe", password="nope")
    env.service.wait_for(lambda _: len(env.service.events()) >= before + 2)
    lines = env.service.events()[before:]

    assert [line["decision"] for line in lines] == ["allow", "deny"]
    for line in lines:
        assert {
            "event",
            "decision",
            "user",
            "account",
            "reason",
            "client_host",
            "client_type",
            "server_id",
            "duration_ms",
            "policy_version",
            "level",
            "timestamp",
        } <= line.keys()
        assert line["policy_version"].startswith("sha256:")
        assert line["client_host"] == "127.0.0.1"
        assert line["client_type"] == "nats"


async def test_anonymous_is_off_unless_configured(tmp_path: Path) -> None:
    """With `anonymous:` a credential-less client gets the guest role."""
    server, service, _ = start_env(tmp_path, anonymous=True)
    try:
        nc = await connect(server.client_url)
        try:
            info = await user_info(nc)
        finally:
            await nc.close()
    finally:
        assert service.stop() == 0
        server.stop()

    assert sorted(info["permissions"]["subscribe"]["allow"]) == ["_INBOX.>", "public.>"]


async def test_xkey_encrypted_requests_are_answered(tmp_path: Path) -> None:
    """With an xkey on both sides, sealed requests are opened and answered."""
    server, service, _ = start_env(tmp_path, xkey="both")
    try:
        nc = await connect(
            server.client_url, user="john-doe", password=SECRETS["john-doe"]
        )
        echoed = await round_trip(nc, "users.john-doe.x")
        await nc.close()
    finally:
        assert service.stop() == 0
        server.stop()

    assert echoed == b"ping"


async def test_service_with_xkey_refuses_a_plain_server(tmp_path: Path) -> None:
    """A service with an xkey facing a server without one aborts: nobody gets in."""
    server, service, _ = start_env(tmp_path, xkey="service-only")
    try:
        error, _ = await connect_fails(
            server.client_url, user="john-doe", password=SECRETS["john-doe"]
        )
        line = service.wait_for_event("callout.request_aborted")
    finally:
        assert service.stop() == 0
        server.stop()

    assert "authorization violation" in error
    assert line["reason"] == "encryption_mismatch"
