"""
Who signs the user JWT for each account the policy may place users in, and
loading a policy together with its signers (`load`, at startup and reload).

Config mode: the issuer key signs everything, and the user JWT's `aud` is the
account's name (docs/protocol.md §7.4). Operator mode: the target account's
own key or one of its signing keys signs, with `issuer_account` set when it is
a signing key (docs/protocol.md §6.2); `aud` is ignored by the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.errors import ConfigError, KeyFormatError
from service.policy import CalloutAccount, load_policy
from service.protocol.nkeys import KeyPair, Prefix

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from service.config import Keys, Settings
    from service.policy import Policy


@dataclass(frozen=True, slots=True)
class AccountSigner:
    """
    How to sign a user JWT for one account.

    Attributes:
        key: The signing key (account key or one of its signing keys).
        issuer_account: The account's public key when `key` is a signing
            key (operator mode only), else "".
        audience: Config mode: the account's name. Operator mode: "".
    """

    key: KeyPair
    issuer_account: str = ""
    audience: str = ""


def build_signers(
    policy: Policy,
    *,
    mode: str,
    issuer: KeyPair,
    base_dir: Path,
) -> dict[str, AccountSigner]:
    """
    One signer per policy account.

    Args:
        issuer: The key that signs responses (config mode: every JWT).
        base_dir: Relative `signing_key_file` paths are resolved against it
            (the policy file's directory).

    Raises:
        ConfigError: Operator-mode keys missing, unreadable or mismatched, or
            operator-mode keys given in config mode.
    """
    if mode == "config":
        for name, account in policy.accounts.items():
            if account.public_key or account.signing_key_file:
                raise ConfigError(
                    f"policy accounts.{name}: public_key/signing_key_file are for "
                    "operator mode (CALLOUT_MODE=operator)"
                )
        return {name: AccountSigner(issuer, audience=name) for name in policy.accounts}
    signers = {}
    for name, account in policy.accounts.items():
        if account.public_key is None:
            raise ConfigError(f"policy accounts.{name}: operator mode needs public_key")
        if account.signing_key_file is not None:
            key = _load_seed(base_dir / account.signing_key_file, name)
        else:
            raise ConfigError(
                f"policy accounts.{name}: operator mode needs signing_key_file "
                "(the account's seed or one of its signing keys)"
            )
        signers[name] = AccountSigner(
            key,
            issuer_account=""
            if key.public_key == account.public_key
            else account.public_key,
        )
    return signers


def _load_seed(path: Path, account: str) -> KeyPair:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"policy accounts.{account}.signing_key_file {path}: "
            f"cannot read: {exc.strerror}"
        ) from None
    try:
        return KeyPair.from_seed(text, Prefix.ACCOUNT)
    except KeyFormatError as exc:
        raise ConfigError(
            f"policy accounts.{account}.signing_key_file {path}: {exc}"
        ) from None


@dataclass(frozen=True, slots=True)
class Loaded:
    """A policy and the signers for its accounts, ready to install together."""

    policy: Policy
    signers: Mapping[str, AccountSigner]


def callout_account(settings: Settings, issuer: KeyPair | None) -> CalloutAccount:
    """
    The account the policy must never place anyone in (see CalloutAccount).

    Args:
        issuer: The issuer key, when loaded: in operator mode without
            `CALLOUT_ISSUER_ACCOUNT` the callout account is the issuer's own.
            (A signing key as issuer without that setting cannot be traced
            to its account: nothing is refused then.)
    """
    if settings.mode == "config":
        return CalloutAccount(name=settings.auth_account)
    if settings.issuer_account:
        return CalloutAccount(
            public_key=settings.issuer_account, setting="CALLOUT_ISSUER_ACCOUNT"
        )
    if issuer is not None:
        return CalloutAccount(
            public_key=issuer.public_key, setting="the key of CALLOUT_ISSUER_SEED"
        )
    return CalloutAccount()


def load(settings: Settings, keys: Keys) -> Loaded:
    """
    Read the policy file and build its signers (blocking; run it on a thread).

    The one sequence for both startup (`service.cli`) and every reload.

    Raises:
        PolicyError: The policy is invalid (problems carry file and line).
        ConfigError: Operator-mode signing keys are missing or wrong.
    """
    policy = load_policy(
        settings.policy_file, callout=callout_account(settings, keys.issuer)
    )
    signers = build_signers(
        policy,
        mode=settings.mode,
        issuer=keys.issuer,
        base_dir=settings.policy_file.parent,
    )
    return Loaded(policy, signers)
