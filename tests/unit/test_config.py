"""Settings and key loading: clear startup errors, no secret in any message."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from service.config import (
    Settings,
    cleartext_urls,
    load_keys,
    load_settings,
    login_problems,
)
from service.errors import ConfigError
from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.xkeys import CurveKeyPair

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os  # noqa: PLC0415

    for name in list(os.environ):
        if name.startswith("CALLOUT_"):
            monkeypatch.delenv(name)


def test_defaults_match_the_design_table() -> None:
    """Unset variables take the defaults docs/operations.md "Configuration" promises."""
    settings = load_settings()

    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.queue_group == "auth-callout"
    assert settings.mode == "config"
    assert settings.log_format == "json"
    assert settings.log_level == "info"
    assert settings.http_listen == ""
    assert str(settings.policy_file) == "policy.yaml"


def test_env_file_is_read(tmp_path: Path) -> None:
    """`--env-file` supplies CALLOUT_* values."""
    env = tmp_path / "callout.env"
    env.write_text(
        "CALLOUT_QUEUE_GROUP=replicas\nCALLOUT_NATS_URL=nats://a:1,nats://b:2\n"
    )

    settings = load_settings(env)

    assert settings.queue_group == "replicas"
    assert settings.servers == ["nats://a:1", "nats://b:2"]


def test_missing_env_file_is_a_clear_error(tmp_path: Path) -> None:
    """A missing env file names the path."""
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "nope.env")


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value names the variable."""
    monkeypatch.setenv("CALLOUT_MODE", "nonsense")

    with pytest.raises(ConfigError, match="CALLOUT_MODE"):
        load_settings()


def test_missing_issuer_seed_is_an_error() -> None:
    """Without an issuer seed the service cannot sign and refuses to start."""
    with pytest.raises(
        ConfigError, match="CALLOUT_ISSUER_SEED or CALLOUT_ISSUER_SEED_FILE"
    ):
        load_keys(Settings())


def test_wrong_kind_of_seed_is_named_without_the_seed() -> None:
    """A user seed where an account seed belongs is refused; the seed is not echoed."""
    seed = KeyPair.create(Prefix.USER).export_seed()

    with pytest.raises(ConfigError) as info:
        load_keys(Settings(issuer_seed=seed))

    assert "expected an account seed, got a user seed" in str(info.value)
    assert seed not in str(info.value)


def test_seed_files_are_read(tmp_path: Path) -> None:
    """`_FILE` variants load the issuer and xkey seeds."""
    issuer, curve = KeyPair.create(Prefix.ACCOUNT), CurveKeyPair.create()
    (tmp_path / "i").write_text(issuer.export_seed() + "\n")
    (tmp_path / "x").write_text(curve.export_seed())

    keys = load_keys(
        Settings(issuer_seed_file=tmp_path / "i", xkey_seed_file=tmp_path / "x")
    )

    assert keys.issuer.public_key == issuer.public_key
    assert keys.xkey is not None
    assert keys.xkey.public_key == curve.public_key


def test_seed_and_seed_file_together_are_refused(tmp_path: Path) -> None:
    """Two sources for one seed is ambiguous and refused."""
    seed = KeyPair.create(Prefix.ACCOUNT).export_seed()
    (tmp_path / "i").write_text(seed)

    with pytest.raises(ConfigError, match="not both"):
        load_keys(Settings(issuer_seed=seed, issuer_seed_file=tmp_path / "i"))


def test_unreadable_seed_file_is_a_clear_error(tmp_path: Path) -> None:
    """A seed file that cannot be read names the file."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_keys(Settings(issuer_seed_file=tmp_path / "missing"))


def test_account_seed_as_xkey_is_refused() -> None:
    """An account seed is not a curve seed."""
    seed = KeyPair.create(Prefix.ACCOUNT).export_seed()

    with pytest.raises(ConfigError, match="CALLOUT_XKEY_SEED"):
        load_keys(Settings(issuer_seed=seed, xkey_seed=seed))


def test_issuer_account_is_refused_in_config_mode() -> None:
    """Config mode rejects issuer_account (the server would reject every user)."""
    issuer = KeyPair.create(Prefix.ACCOUNT)

    with pytest.raises(ConfigError, match="operator mode"):
        load_keys(
            Settings(issuer_seed=issuer.export_seed(), issuer_account=issuer.public_key)
        )


def test_login_problems(tmp_path: Path) -> None:
    """Two logins, a user without password, and a missing seed file are reported."""
    settings = Settings(nats_user="auth", nats_creds=tmp_path / "x.creds")

    problems = login_problems(settings)

    assert any("set one login" in p for p in problems)
    assert any("without CALLOUT_NATS_PASSWORD" in p for p in problems)
    assert any("no such file" in p for p in problems)


def test_cleartext_urls_hide_credentials() -> None:
    """Non-loopback plain URLs are reported as host:port only, never with user:pass."""
    settings = Settings(
        nats_url="nats://u:secretpw@nats.example:4222,tls://x:1,nats://127.0.0.1:4222"
    )

    urls = cleartext_urls(settings)

    assert urls == ["nats://nats.example:4222"]
