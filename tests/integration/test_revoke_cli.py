"""`nats-auth-callout revoke` when it cannot do its job: each says why, exit 1 or 2."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from service.cli import main
from tests.integration.opsenv import SYSTEM_ENV, Keys, free_port
from tests.natsserver import NatsServer

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def _settings(monkeypatch: pytest.MonkeyPatch, keys: Keys, url: str) -> None:
    for name in [n for n in os.environ if n.startswith("CALLOUT_")]:
        monkeypatch.delenv(name)
    env = keys.env(url, keys.directory / "policy.yaml", **SYSTEM_ENV)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_revoke_without_a_system_login_is_a_usage_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No CALLOUT_SYSTEM_*: exit 2, naming the settings it needs."""
    keys = Keys.create(tmp_path)
    _settings(monkeypatch, keys, "nats://127.0.0.1:4222")
    for name in SYSTEM_ENV:
        monkeypatch.delenv(name)

    code = main(["revoke", "john-doe"])

    assert code == 2
    assert "revoke needs CALLOUT_SYSTEM_USER" in capsys.readouterr().err


def test_revoke_with_no_server_is_a_usage_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing listens at the URL: exit 2, no traceback, no secret."""
    keys = Keys.create(tmp_path)
    _settings(monkeypatch, keys, f"nats://127.0.0.1:{free_port()}")

    code = main(["revoke", "john-doe"])

    err = capsys.readouterr().err
    assert code == 2
    assert "cannot connect with the system-account login" in err
    assert SYSTEM_ENV["CALLOUT_SYSTEM_PASSWORD"] not in err


def test_revoke_with_no_running_service_revokes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A server but no service instance: exit 1, nothing revoked, nobody kicked."""
    keys = Keys.create(tmp_path)
    server = NatsServer(keys.body(system=True), tmp_path / "nats").start()
    try:
        _settings(monkeypatch, keys, server.client_url)

        code = main(["revoke", "john-doe", "--for", "10m"])
    finally:
        server.stop()

    assert code == 1
    assert "no running instance answered" in capsys.readouterr().err
