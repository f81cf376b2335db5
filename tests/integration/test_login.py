"""
The service's own NATS login: a bad seed or creds file is a startup error
(exit 2, a message naming the setting), a login the server refuses is
logged as such and retried with backoff, and SIGTERM stops the service
with exit 0 even while its server is down.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import pytest

from service.protocol.creds import format_creds
from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.xkeys import CurveKeyPair
from tests.integration.opsenv import (
    PASSWORDS,
    Keys,
    bcrypt_hash,
    count_lines,
    policy_yaml,
    start_service,
)
from tests.natsserver import NatsServer, config_mode_body
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from pathlib import Path

ACCOUNT_SEED = KeyPair.create(Prefix.ACCOUNT).export_seed()
CURVE_SEED = CurveKeyPair.create().export_seed()
USER = KeyPair.create(Prefix.USER)


@pytest.mark.parametrize(
    ("setting", "content", "message"),
    [
        ("CALLOUT_NATS_NKEY_SEED_FILE", "not a seed\n", "a seed is 58 characters"),
        (
            "CALLOUT_NATS_NKEY_SEED_FILE",
            CURVE_SEED,
            "expected a user seed, got a curve seed",
        ),
        (
            "CALLOUT_NATS_NKEY_SEED_FILE",
            ACCOUNT_SEED,
            "expected a user seed, got an account seed",
        ),
        (
            "CALLOUT_NATS_CREDS",
            "garbage\n",
            "creds file needs a JWT block and a seed block",
        ),
        (
            "CALLOUT_NATS_CREDS",
            format_creds("not-a-jwt", USER),
            "the JWT block is not a JWT",
        ),
    ],
    ids=["garbage seed", "curve seed", "account seed", "garbage creds", "no jwt"],
)
def test_a_bad_login_file_is_a_startup_error(
    tmp_path: Path, setting: str, content: str, message: str
) -> None:
    """A login file nats-py cannot use stops startup with exit 2 and a message."""
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash(PASSWORDS["alice"])}))
    login = tmp_path / "bad-login"
    login.write_text(content)
    env = keys.env("nats://127.0.0.1:4222", policy)
    del env["CALLOUT_NATS_NKEY_SEED_FILE"]
    service = ServiceProcess(env | {setting: str(login)}, tmp_path).start(wait_for=None)

    assert service._proc is not None
    service._proc.wait(15)
    code = service.stop()  # exited already: its code, and the pipe closed
    failed = service.wait_for_event("callout.startup_failed")

    assert code == 2
    assert f"{setting} {login}: {message}" in failed["error"]
    assert "Traceback" not in "\n".join(service.lines)
    assert content.strip() not in "\n".join(service.lines)


async def test_a_refused_login_is_logged_and_retried_with_backoff(
    tmp_path: Path,
) -> None:
    """
    A wrong password for the service's login (in auth_users, so the server
    refuses it at once): a clear line, and fewer and fewer attempts.
    """
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash(PASSWORDS["alice"])}))
    body = config_mode_body(issuer=keys.issuer.public_key, auth_password="right")
    server = NatsServer(body, tmp_path / "nats").start()
    env = keys.env(server.client_url, policy) | {
        "CALLOUT_NATS_USER": "auth",
        "CALLOUT_NATS_PASSWORD": "wrong",
    }
    del env["CALLOUT_NATS_NKEY_SEED_FILE"]
    try:
        service = start_service(env, tmp_path, wait="callout.nats_login_refused")
        # the next line of the kind comes 5 s later at the earliest
        second = await asyncio.to_thread(
            service.wait_for_event, "callout.nats_login_refused", 15, 2
        )
        attempts = count_lines(server, "authentication error")
        code = service.stop()
    finally:
        server.stop()
    first = service.events("callout.nats_login_refused")[0]

    assert code == 0
    assert first["level"] == "error"
    assert "Authorization Violation" in first["detail"]
    assert second["retry_in"] > first["retry_in"]
    # 0.1 s apart for 5 s would be about 50 attempts; backing off, under 10
    assert 2 <= attempts < 10


async def test_sigterm_while_the_server_is_down_exits_0(tmp_path: Path) -> None:
    """The server goes away; SIGTERM still gives callout.stopped and exit 0."""
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash(PASSWORDS["alice"])}))
    server = NatsServer(keys.body(), tmp_path / "nats").start()
    try:
        service = start_service(
            keys.env(server.client_url, policy), tmp_path, wait="callout.started"
        )
    finally:
        server.stop()
    await asyncio.to_thread(service.wait_for_event, "callout.nats_disconnected")

    code = service.stop(signal.SIGTERM)

    assert code == 0, "\n".join(service.lines[-20:])
    assert service.events("callout.stopped")
    assert "Traceback" not in "\n".join(service.lines)
