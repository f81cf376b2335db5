"""Per-account signers: config mode signs with the issuer, operator mode per account."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from service.errors import ConfigError
from service.policy import parse_policy
from service.protocol.nkeys import KeyPair, Prefix
from service.signers import build_signers

if TYPE_CHECKING:
    from pathlib import Path

ISSUER = KeyPair.create(Prefix.ACCOUNT)
APP = KeyPair.create(Prefix.ACCOUNT)
APP_SK = KeyPair.create(Prefix.ACCOUNT)


def _policy(accounts: str) -> str:
    return f"version: 1\naccounts:\n{accounts}\ndefaults: {{account: APP}}\n"


def test_config_mode_signs_everything_with_the_issuer(tmp_path: Path) -> None:
    """Config mode: the issuer signs, `aud` is the account name, no issuer_account."""
    policy = parse_policy(_policy("  APP: {}\n  BILLING: {}"))

    signers = build_signers(policy, mode="config", issuer=ISSUER, base_dir=tmp_path)

    assert {n: (s.key, s.audience, s.issuer_account) for n, s in signers.items()} == {
        "APP": (ISSUER, "APP", ""),
        "BILLING": (ISSUER, "BILLING", ""),
    }


def test_config_mode_refuses_operator_keys(tmp_path: Path) -> None:
    """public_key in config mode is a mistake worth stopping for."""
    policy = parse_policy(_policy(f"  APP: {{public_key: {APP.public_key}}}"))

    with pytest.raises(ConfigError, match="operator mode"):
        build_signers(policy, mode="config", issuer=ISSUER, base_dir=tmp_path)


@pytest.mark.parametrize(
    ("key", "issuer_account"), [(APP, ""), (APP_SK, APP.public_key)]
)
def test_operator_mode_uses_the_account_key_or_a_signing_key(
    tmp_path: Path, key: KeyPair, issuer_account: str
) -> None:
    """A signing key sets issuer_account to the account; the account key does not."""
    (tmp_path / "app.nk").write_text(key.export_seed())
    policy = parse_policy(
        _policy(f"  APP: {{public_key: {APP.public_key}, signing_key_file: app.nk}}")
    )

    signer = build_signers(policy, mode="operator", issuer=ISSUER, base_dir=tmp_path)[
        "APP"
    ]

    assert signer.key.public_key == key.public_key
    assert signer.issuer_account == issuer_account
    assert signer.audience == ""


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        ("  APP: {}", "needs public_key"),
        ("  APP: {public_key: " + APP.public_key + "}", "needs signing_key_file"),
        (
            "  APP: {public_key: " + APP.public_key + ", signing_key_file: nope.nk}",
            "cannot read",
        ),
        (
            "  APP: {public_key: " + APP.public_key + ", signing_key_file: user.nk}",
            "expected an account seed",
        ),
    ],
)
def test_operator_mode_key_problems_are_clear(
    tmp_path: Path, accounts: str, message: str
) -> None:
    """Missing, unreadable or wrong-kind keys stop startup with the account named."""
    seed = KeyPair.create(Prefix.USER).export_seed()
    (tmp_path / "user.nk").write_text(seed)

    with pytest.raises(ConfigError, match=message) as info:
        build_signers(
            parse_policy(_policy(accounts)),
            mode="operator",
            issuer=ISSUER,
            base_dir=tmp_path,
        )

    assert "accounts.APP" in str(info.value)
    assert seed not in str(info.value)
