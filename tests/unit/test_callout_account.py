"""The callout account is never a placement: refused at load, with its line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from service.cli import main
from service.config import Keys, Settings
from service.errors import PolicyError
from service.policy import CalloutAccount, parse_policy
from service.policy.fields import DEFAULT_CALLOUT
from service.protocol.nkeys import KeyPair, Prefix
from service.signers import load

if TYPE_CHECKING:
    from pathlib import Path

NKEY = KeyPair.create(Prefix.USER).public_key
REFUSED = "is the callout account"

# Line 4 declares AUTH; each case appends lines 9 on.
HEAD = """\
version: 1
accounts:
  APP: {}
  AUTH: {}
defaults:
  account: APP
roles:
  r: {subscribe: {allow: ["x.>"]}}
"""
PLACEMENTS = {
    "defaults.account": HEAD.replace("  account: APP\n", "  account: AUTH\n"),
    "users[0].account": HEAD
    + f"users:\n  - name: u\n    nkey: {NKEY}\n    roles: [r]\n    account: AUTH\n",
    "anonymous.account": HEAD + "anonymous:\n  roles: [r]\n  account: AUTH\n",
    "certificates[0].account": HEAD
    + "certificates:\n  - name: c\n    match: {cn: device}\n    roles: [r]\n"
    + "    account: AUTH\n",
    "identity_providers[0].account": HEAD
    + "identity_providers:\n  - name: idp\n    issuer: https://idp.test\n"
    + "    audiences: [nats]\n    algorithms: [HS256]\n"
    + "    hs256_secret_file: secret.bin\n    roles: [r]\n    account: AUTH\n",
}


def _problems(text: str, callout: CalloutAccount = DEFAULT_CALLOUT) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, source="policy.yaml", callout=callout)
    return caught.value.problems


def _line(text: str, where: str) -> int:
    if where == "defaults.account":
        return 6
    return text.count("\n")  # the case's last line: its `account: AUTH`


@pytest.mark.parametrize("where", list(PLACEMENTS))
def test_every_placement_in_the_callout_account_is_refused(where: str) -> None:
    """Users, anonymous, certificates, providers, defaults: each refused at its line."""
    text = PLACEMENTS[where]

    found = _problems(text)

    assert f"policy.yaml:4: accounts.AUTH: 'AUTH' {REFUSED}" in "\n".join(found)
    assert any(
        p.startswith(f"policy.yaml:{_line(text, where)}: {where}: 'AUTH' {REFUSED}")
        for p in found
    ), found


def test_declaring_the_callout_account_alone_is_refused() -> None:
    """Even with no one placed there, `accounts:` may not list it (the whitelist)."""
    (problem,) = _problems(HEAD)

    assert problem.startswith(f"policy.yaml:4: accounts.AUTH: 'AUTH' {REFUSED}")
    assert "CALLOUT_AUTH_ACCOUNT" in problem


def test_the_configured_name_is_refused_and_auth_is_then_an_ordinary_name() -> None:
    """CALLOUT_AUTH_ACCOUNT=CALLOUT refuses CALLOUT; AUTH is then just an account."""
    renamed = HEAD.replace("  AUTH: {}", "  CALLOUT: {}")
    callout = CalloutAccount(name="CALLOUT")

    (problem,) = _problems(renamed, callout)
    policy = parse_policy(HEAD, callout=callout)

    assert problem.startswith(f"policy.yaml:4: accounts.CALLOUT: 'CALLOUT' {REFUSED}")
    assert "AUTH" in policy.accounts


def _operator_setup(tmp_path: Path, callout_key: str) -> Path:
    app = KeyPair.create(Prefix.ACCOUNT)
    (tmp_path / "app.nk").write_text(app.export_seed())
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\naccounts:\n"
        f"  APP: {{public_key: {app.public_key}, signing_key_file: app.nk}}\n"
        f"  CALLOUT: {{public_key: {callout_key}}}\n"
        "defaults: {account: APP}\n"
    )
    return policy


@pytest.mark.parametrize("issuer_is", ["account-key", "signing-key"])
def test_operator_mode_refuses_the_callout_account_by_public_key(
    tmp_path: Path, issuer_is: str
) -> None:
    """Operator mode: the issuer's account (or CALLOUT_ISSUER_ACCOUNT) is refused."""
    issuer = KeyPair.create(Prefix.ACCOUNT)
    account = KeyPair.create(Prefix.ACCOUNT)
    callout_key = (
        issuer.public_key if issuer_is == "account-key" else account.public_key
    )
    policy = _operator_setup(tmp_path, callout_key)
    settings = Settings(
        mode="operator",
        policy_file=policy,
        issuer_account=None if issuer_is == "account-key" else account.public_key,
    )

    with pytest.raises(PolicyError) as caught:
        load(settings, Keys(issuer=issuer, xkey=None))

    (problem,) = caught.value.problems
    assert problem.startswith(f"{policy}:4: accounts.CALLOUT: 'CALLOUT' {REFUSED}")


def test_check_reads_the_callout_account_from_the_settings(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`check` refuses the account CALLOUT_AUTH_ACCOUNT names, with file:line."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(HEAD.replace("  AUTH: {}", "  CALLOUT: {}"))
    monkeypatch.setenv("CALLOUT_AUTH_ACCOUNT", "CALLOUT")

    code = main(["check", str(policy)])

    assert code == 1
    assert capsys.readouterr().err.startswith(
        f"{policy}:4: accounts.CALLOUT: 'CALLOUT' {REFUSED}"
    )


def test_check_in_operator_mode_uses_the_issuer_seed_of_the_env_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check --env-file` in operator mode refuses the issuer seed's own account."""
    issuer = KeyPair.create(Prefix.ACCOUNT)
    (tmp_path / "issuer.nk").write_text(issuer.export_seed())
    policy = _operator_setup(tmp_path, issuer.public_key)
    env = tmp_path / "callout.env"
    env.write_text(
        f"CALLOUT_MODE=operator\nCALLOUT_ISSUER_SEED_FILE={tmp_path / 'issuer.nk'}\n"
    )

    code = main(["check", str(policy), "--env-file", str(env)])
    err = capsys.readouterr().err

    assert code == 1
    assert err.startswith(f"{policy}:4: accounts.CALLOUT: 'CALLOUT' {REFUSED}")
    assert issuer.export_seed() not in err
