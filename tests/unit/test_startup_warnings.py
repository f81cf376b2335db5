"""Startup warnings: setups that work but quietly weaken security."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.cli import startup_warnings
from service.config import Settings
from service.policy import parse_policy

if TYPE_CHECKING:
    from pathlib import Path

POLICY = parse_policy(
    """version: 1
accounts: {APP: {}, SYS: {}}
defaults: {account: APP}
users:
  - name: auth
    password: "$2b$04$abcdefghijklmnopqrstuuJ0ZbbdJ5m8tOVmUd9U9dk.c5CpJ0yXm"
"""
)


def test_warns_about_bypass_system_account_cleartext_and_no_xkey() -> None:
    """Each weak spot of this setup gets its own warning."""
    settings = Settings(nats_user="auth", nats_url="nats://nats.example:4222")

    warnings = "\n".join(startup_warnings(settings, POLICY))

    assert "bypasses the callout" in warnings
    assert "'SYS'" in warnings
    assert "password travels in clear" in warnings
    assert "not encrypted" in warnings


def test_nkey_login_over_plain_url_is_not_called_cleartext() -> None:
    """An nkey login signs a nonce; only password logins get the cleartext warning."""
    settings = Settings(nats_url="nats://nats.example:4222", xkey_seed="x")

    warnings = startup_warnings(settings, POLICY)

    assert not any("clear" in w for w in warnings)


def test_an_admin_token_without_an_http_port_is_warned_about(tmp_path: Path) -> None:
    """A token file with no HTTP port would silently leave /admin/revoke off."""
    token = tmp_path / "admin.token"
    settings = Settings(xkey_seed="x", admin_token_file=token, http_listen="")

    warnings = startup_warnings(settings, POLICY)
    with_port = startup_warnings(
        Settings(xkey_seed="x", admin_token_file=token, http_listen="127.0.0.1:0"),
        POLICY,
    )

    assert any("CALLOUT_ADMIN_TOKEN_FILE is set but" in w for w in warnings)
    assert not any("CALLOUT_ADMIN_TOKEN_FILE" in w for w in with_port)
