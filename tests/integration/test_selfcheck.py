"""The self-checks against real, deliberately misconfigured servers."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.xkeys import CurveKeyPair
from tests.integration.clients import connect, connect_fails
from tests.integration.opsenv import (
    PASSWORDS,
    Keys,
    bcrypt_hash,
    http_get,
    http_port,
    policy_yaml,
    start_service,
)
from tests.natsserver import NatsServer

if TYPE_CHECKING:
    from pathlib import Path

    from tests.service_process import Record, ServiceProcess


def _setup(
    tmp_path: Path, keys: Keys, body: str, *, account: str = "APP", **extra: str
) -> tuple[NatsServer, ServiceProcess]:
    """Start `body` (with `{LOGIN}` = the service's nkey) and the service."""
    policy = tmp_path / "policy.yaml"
    hashed = bcrypt_hash(PASSWORDS["alice"])
    policy.write_text(policy_yaml({"alice": hashed}, account=account))
    server = NatsServer(body.replace("{LOGIN}", keys.login.public_key), tmp_path / "n")
    server.start()
    service = start_service(
        keys.env(server.client_url, policy, **extra), tmp_path, wait="callout.started"
    )
    return server, service


def _only(service: ServiceProcess, event: str) -> list[Record]:
    return service.events(event)


async def _two_refused_connects(url: str) -> list[str]:
    """Two concurrent connects as alice, both expected to fail."""
    results = await asyncio.gather(
        *(connect_fails(url, user="alice", password=PASSWORDS["alice"]) for _ in "ab")
    )
    return [error for error, _ in results]


async def test_issuer_mismatch_is_reported_once_per_server(tmp_path: Path) -> None:
    """The server expects another issuer: one loud error, /readyz says why."""
    theirs = KeyPair.create(Prefix.ACCOUNT).public_key
    keys = Keys.create(tmp_path)
    server, service = _setup(tmp_path, keys, keys.body(issuer=theirs))
    try:
        errors = await _two_refused_connects(server.client_url)
        await asyncio.to_thread(
            service.wait_for_event, "callout.request_authorized", 5.0, 2
        )
        report = service.wait_for_event("callout.issuer_mismatch")
        status, body = await http_get(http_port(service), "/readyz")
    finally:
        assert service.stop() == 0
        server.stop()

    assert all("authorization violation" in e for e in errors)
    assert len(_only(service, "callout.issuer_mismatch")) == 1
    assert report["level"] == "error"
    assert report["server_issuer"] == theirs
    assert report["server_id"].startswith("N")
    assert (status, json.loads(body)) == (
        503,
        {"ready": False, "reason": "issuer_mismatch"},
    )


async def test_xkey_on_the_server_only_is_reported_once(tmp_path: Path) -> None:
    """The server seals requests, the service has no xkey: one explained error."""
    keys = Keys.create(tmp_path)
    xkey = CurveKeyPair.create().public_key
    server, service = _setup(tmp_path, keys, keys.body(xkey=xkey, timeout=1))
    try:
        errors = await _two_refused_connects(server.client_url)
        await asyncio.to_thread(
            service.wait_for_event, "callout.request_aborted", 5.0, 2
        )
        report = service.wait_for_event("callout.xkey_mismatch")
    finally:
        assert service.stop() == 0
        server.stop()

    assert all("timeout" in e or "authorization" in e for e in errors), errors
    assert len(_only(service, "callout.xkey_mismatch")) == 1
    assert report["level"] == "error"
    assert report["server_xkey"].startswith("X")
    assert "CALLOUT_XKEY_SEED is not set" in report["hint"]


async def test_xkey_on_the_service_only_names_the_server(tmp_path: Path) -> None:
    """A plain server and a service with an xkey: the error names the server."""
    keys = Keys.create(tmp_path)
    seed = tmp_path / "xkey.nk"
    curve = CurveKeyPair.create()
    seed.write_text(curve.export_seed())
    server, service = _setup(
        tmp_path, keys, keys.body(timeout=1), CALLOUT_XKEY_SEED_FILE=str(seed)
    )
    try:
        await _two_refused_connects(server.client_url)
        await asyncio.to_thread(
            service.wait_for_event, "callout.request_aborted", 5.0, 2
        )
        report = service.wait_for_event("callout.xkey_mismatch")
    finally:
        assert service.stop() == 0
        server.stop()

    assert len(_only(service, "callout.xkey_mismatch")) == 1
    assert report["server_id"].startswith("N")
    assert curve.public_key in report["hint"]


async def test_global_account_and_bypass_users_are_reported(tmp_path: Path) -> None:
    """Callout in $G with a static user in auth_users: two warnings at startup,
    and an error that CALLOUT_AUTH_ACCOUNT (AUTH) is not the callout account."""
    keys = Keys.create(tmp_path)
    body = f"""authorization {{
  timeout: 2
  users: [ {{ nkey: "{keys.login.public_key}" }}, {{ user: backdoor, password: bd }} ]
  auth_callout {{
    issuer: "{keys.issuer.public_key}"
    auth_users: [ "{keys.login.public_key}", backdoor ]
  }}
}}
"""
    server = NatsServer(body, tmp_path / "n").start()
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash("x")}, account="$G"))
    # connected before the service starts, which is when it looks
    backdoor = await connect(server.client_url, user="backdoor", password="bd")
    service = start_service(
        keys.env(server.client_url, policy), tmp_path, wait="callout.started"
    )
    try:
        global_ = service.wait_for_event("callout.global_account_used")
        bypass = service.wait_for_event("callout.bypass_users_connected")
        mismatch = service.wait_for_event("callout.auth_account_mismatch")
    finally:
        await backdoor.close()
        assert service.stop() == 0
        server.stop()

    assert global_["level"] == "warning"
    assert bypass["users"] == ["backdoor"]
    assert bypass["account"] == "$G"
    assert (mismatch["level"], mismatch["account"], mismatch["setting"]) == (
        "error",
        "$G",
        "AUTH",
    )
    assert not service.events("callout.not_in_callout_account")


async def test_login_outside_the_callout_account_is_reported(tmp_path: Path) -> None:
    """The service's login lives in another account: it would never get a request."""
    keys = Keys.create(tmp_path)
    body = f"""accounts {{
  AUTH {{ users: [ {{ user: auth, password: auth-pw }} ] }}
  OTHER {{ users: [ {{ nkey: "{{LOGIN}}" }} ] }}
  APP {{}}
}}
authorization {{
  auth_callout {{
    issuer: "{keys.issuer.public_key}"
    account: AUTH
    auth_users: [ auth, "{{LOGIN}}" ]
  }}
}}
"""
    server, service = _setup(tmp_path, keys, body)
    try:
        report = service.wait_for_event("callout.not_in_callout_account")
    finally:
        assert service.stop() == 0
        server.stop()

    assert report["level"] == "error"
    assert report["account"] == "OTHER"
