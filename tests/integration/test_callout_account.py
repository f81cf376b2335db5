"""
No principal is ever placed in the callout account, against a real server:
a policy that tries is refused at startup and on reload (the old one serves).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from tests.integration.clients import connect, connect_fails, user_info
from tests.integration.opsenv import Keys, bcrypt_hash
from tests.integration.test_protocol_operator_mode import build_setup
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from pathlib import Path

    from tests.natsserver import NatsServer, ServerFactory

ALICE, MALLORY = "alice-pw-Yh3", "mallory-pw-Pz8"
REFUSED = "'AUTH' is the callout account"


@dataclass
class Case:
    """A server of one mode, the service's settings, and the two policies."""

    server: NatsServer
    env: dict[str, str]
    policy: Path
    good: str
    bad: str
    app: str  # what user info reports as alice's account


def _users(*, mallory_in_auth: bool) -> str:
    text = (
        "users:\n"
        f'  - name: alice\n    password: "{bcrypt_hash(ALICE)}"\n'
        '    subscribe: {allow: ["_INBOX.>"]}\n'
        '    publish: {allow: ["$SYS.REQ.USER.INFO"]}\n'
    )
    if mallory_in_auth:  # what mallory would do there: read every request
        text += (
            f'  - name: mallory\n    password: "{bcrypt_hash(MALLORY)}"\n'
            '    subscribe: {allow: ["$SYS.REQ.USER.AUTH"]}\n'
            "    account: AUTH\n"
        )
    return text


def _config_mode(factory: ServerFactory, tmp_path: Path) -> Case:
    keys = Keys.create(tmp_path / "keys")
    server = factory(keys.body())  # its auth_callout account is AUTH
    head = "version: 1\naccounts:\n  APP: {}\n{auth}defaults: {account: APP}\n"
    policy = tmp_path / "policy.yaml"
    return Case(
        server,
        keys.env(server.client_url, policy),
        policy,
        head.replace("{auth}", "") + _users(mallory_in_auth=False),
        head.replace("{auth}", "  AUTH: {}\n") + _users(mallory_in_auth=True),
        "APP",
    )


def _operator_mode(factory: ServerFactory, tmp_path: Path) -> Case:
    setup = build_setup(tmp_path, xkey=None)
    server = factory(setup.body)
    (tmp_path / "auth.nk").write_text(setup.auth.export_seed())
    (tmp_path / "app.nk").write_text(setup.app.export_seed())
    app = f"  APP: {{public_key: {setup.app.public_key}, signing_key_file: app.nk}}\n"
    auth = f"  AUTH: {{public_key: {setup.auth.public_key}}}\n"
    head = "version: 1\naccounts:\n" + app + "{auth}defaults: {account: APP}\n"
    policy = tmp_path / "policy.yaml"
    env = {
        "CALLOUT_MODE": "operator",
        "CALLOUT_NATS_URL": server.client_url,
        "CALLOUT_NATS_CREDS": str(setup.creds),
        "CALLOUT_ISSUER_SEED_FILE": str(tmp_path / "auth.nk"),
        "CALLOUT_POLICY_FILE": str(policy),
    }
    return Case(
        server,
        env,
        policy,
        head.replace("{auth}", "") + _users(mallory_in_auth=False),
        head.replace("{auth}", auth) + _users(mallory_in_auth=True),
        setup.app.public_key,
    )


def _case(mode: str, factory: ServerFactory, tmp_path: Path) -> Case:
    build = _config_mode if mode == "config" else _operator_mode
    return build(factory, tmp_path)


@pytest.mark.parametrize("mode", ["config", "operator"])
async def test_reload_into_the_callout_account_is_refused(
    mode: str, nats_server_factory: ServerFactory, tmp_path: Path
) -> None:
    """The reload is refused with its line; mallory is unknown, alice still in APP."""
    case = _case(mode, nats_server_factory, tmp_path)
    case.policy.write_text(case.good)
    service = ServiceProcess(case.env, tmp_path).start()
    try:
        case.policy.write_text(case.bad)
        assert service._proc is not None
        service._proc.send_signal(signal.SIGHUP)
        failed = service.wait_for_event("callout.policy_reload_failed")
        error, _ = await connect_fails(
            case.server.client_url, user="mallory", password=MALLORY
        )
        nc = await connect(case.server.client_url, user="alice", password=ALICE)
        try:
            info = await user_info(nc)
        finally:
            await nc.close()
        denied = service.wait_for_event("callout.request_rejected")
    finally:
        assert service.stop() == 0

    assert any(
        p.startswith(f"{case.policy}:4: accounts.AUTH: {REFUSED}")
        for p in failed["problems"]
    )
    assert "authorization violation" in error
    assert denied["reason"] == "unknown_user"
    assert info["account"] == case.app


@pytest.mark.parametrize("mode", ["config", "operator"])
def test_startup_with_a_placement_in_the_callout_account_fails(
    mode: str, nats_server_factory: ServerFactory, tmp_path: Path
) -> None:
    """`run` refuses the policy at startup: exit 2, the line of each placement."""
    case = _case(mode, nats_server_factory, tmp_path)
    case.policy.write_text(case.bad)

    service = ServiceProcess(case.env, tmp_path).start(
        wait_for="callout.startup_failed"
    )
    assert service._proc is not None
    code = service._proc.wait(timeout=10)
    service.stop()
    failed = next(r for r in service.records if r["event"] == "callout.startup_failed")
    mallory_account_line = case.bad.count("\n")

    assert code == 2
    assert f"{case.policy}:4: accounts.AUTH: {REFUSED}" in failed["error"]
    assert (
        f"{case.policy}:{mallory_account_line}: users[1].account: {REFUSED}"
        in (failed["error"])
    )
    assert not any(r.get("event") == "callout.started" for r in service.records)
