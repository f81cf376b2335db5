"""Secrets past bcrypt's 72 bytes: refused by the service, whatever bcrypt does."""

from __future__ import annotations

import bcrypt
import pytest

from service.policy import Deny, evaluate, parse_policy
from service.policy.passwords import MAX_SECRET_BYTES, bcrypt_check, too_long
from service.protocol.claims import (
    AuthRequest,
    ClientInfo,
    ConnectOpts,
    ServerId,
    ServerInfo,
    UserNKey,
)

NOW = 1_800_000_000
PASSWORD = "p" * MAX_SECRET_BYTES  # exactly at the limit: legal
TOKEN = "t" * MAX_SECRET_BYTES
REAL_CHECKPW = bcrypt.checkpw


def _hash(secret: str) -> str:
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(4)).decode()


POLICY = parse_policy(f"""\
version: 1
accounts: {{APP: {{}}}}
defaults: {{account: APP}}
roles:
  r: {{subscribe: {{allow: ["x.>"]}}}}
users:
  - name: long
    password: "{_hash(PASSWORD)}"
    roles: [r]
  - name: bot
    token: "{_hash(TOKEN)}"
    roles: [r]
""")


def _request(**opts: str) -> AuthRequest:
    return AuthRequest(
        server=ServerInfo(id=ServerId("NSERVER")),
        user_nkey=UserNKey("UCONN"),
        client_info=ClientInfo(host="127.0.0.1", type="nats"),
        connect_opts=ConnectOpts(**opts),  # type: ignore[arg-type]
    )


@pytest.fixture(name="truncating_bcrypt")
def _truncating_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make bcrypt behave like bcrypt 4.x: it reads only the first 72 bytes."""

    def checkpw(password: bytes, hashed: bytes) -> bool:
        return REAL_CHECKPW(password[:MAX_SECRET_BYTES], hashed)

    monkeypatch.setattr(bcrypt, "checkpw", checkpw)


@pytest.mark.usefixtures("truncating_bcrypt")
def test_check_refuses_a_long_secret_even_if_bcrypt_truncates() -> None:
    """A 72-byte password plus a suffix never matches, even on a truncating bcrypt."""
    hashed = _hash(PASSWORD)

    assert bcrypt_check(hashed, PASSWORD)
    assert not bcrypt_check(hashed, PASSWORD + "x")
    assert not bcrypt_check(hashed, PASSWORD + "anything at all")


def test_limit_counts_utf8_bytes_not_characters() -> None:
    """36 two-byte characters fit (72 bytes); 37 do not (74 bytes, 37 characters)."""
    assert not too_long("é" * 36)
    assert too_long("é" * 37)
    assert not too_long("p" * 72)
    assert too_long("p" * 73)
    assert too_long("\ud800")  # not encodable: no hash can match it


@pytest.mark.usefixtures("truncating_bcrypt")
@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        (
            {"user": "long", "password": PASSWORD + "x"},
            Deny("secret_too_long", user="long"),
        ),
        ({"user": "nobody", "password": "n" * 73}, Deny("secret_too_long")),
        ({"auth_token": TOKEN + "x"}, Deny("secret_too_long")),
    ],
)
def test_long_password_or_token_is_denied_with_its_own_reason(
    opts: dict[str, str], expected: Deny
) -> None:
    """Over 72 bytes is `secret_too_long`, for passwords and bcrypt tokens alike."""
    assert expected == evaluate(POLICY, _request(**opts), NOW)


def test_long_secret_is_denied_before_any_bcrypt_check() -> None:
    """No bcrypt runs for an overlong secret, whether the user name exists or not."""
    calls: list[str] = []

    def check(hashed: str, secret: str) -> bool:
        calls.append(hashed)
        return True

    for opts in (
        {"user": "long", "password": "p" * 100},
        {"user": "nobody", "password": "p" * 100},
        {"auth_token": "t" * 100},
    ):
        decision = evaluate(POLICY, _request(**opts), NOW, check_secret=check)
        assert isinstance(decision, Deny)
        assert decision.reason == "secret_too_long"

    assert calls == []


def test_secrets_at_the_limit_still_log_in() -> None:
    """Exactly 72 bytes is accepted for a password and a token."""
    by_password = evaluate(POLICY, _request(user="long", password=PASSWORD), NOW)
    by_token = evaluate(POLICY, _request(auth_token=TOKEN), NOW)

    assert not isinstance(by_password, Deny)
    assert not isinstance(by_token, Deny)
    assert (by_password.user, by_token.user) == ("long", "bot")
