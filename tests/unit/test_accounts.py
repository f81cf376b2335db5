"""Operator and account JWTs for `init`, `dev` and the tests."""

from __future__ import annotations

from service.protocol.claims import (
    AccountClaims,
    AccountKey,
    ExternalAuthorization,
    OperatorClaims,
    Permission,
)
from service.protocol.jwt import (
    decode_jwt,
)
from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.xkeys import CurveKeyPair
from service.setup.accounts import encode_account_jwt, encode_operator_jwt
from tests.factories import NOW

# --- operator and account JWTs -------------------------------------------------------


def test_operator_jwt_is_self_signed_and_verifies() -> None:
    """An operator JWT verifies against the operator key and lists its settings."""
    operator = KeyPair.create(Prefix.OPERATOR)
    signing = KeyPair.create(Prefix.OPERATOR)
    system = KeyPair.create(Prefix.ACCOUNT)
    claims = OperatorClaims(
        subject=operator.public_key,
        name="OP",
        signing_keys=(signing.public_key,),
        system_account=system.public_key,
    )

    payload = decode_jwt(
        encode_operator_jwt(claims, operator, now=NOW), Prefix.OPERATOR
    )

    assert operator.public_key == payload["iss"] == payload["sub"]
    assert "OP" == payload["name"]
    assert {
        "signing_keys": [signing.public_key],
        "system_account": system.public_key,
        "type": "operator",
        "version": 2,
    } == payload["nats"]


def test_account_jwt_has_unlimited_limits_and_the_authorization_section() -> None:
    """An account JWT verifies, writes limits as -1, and carries auth callout."""
    operator = KeyPair.create(Prefix.OPERATOR)
    account = KeyPair.create(Prefix.ACCOUNT)
    signing = KeyPair.create(Prefix.ACCOUNT)
    auth_user = KeyPair.create(Prefix.USER)
    xkey = CurveKeyPair.create()
    claims = AccountClaims(
        subject=AccountKey(account.public_key),
        name="AUTH",
        signing_keys=(signing.public_key,),
        authorization=ExternalAuthorization(
            auth_users=(auth_user.public_key,),
            allowed_accounts=("*",),
            xkey=xkey.public_key,
        ),
        default_permissions=(Permission(allow=("a.>",)), Permission(deny=("b",))),
    )

    payload = decode_jwt(encode_account_jwt(claims, operator, now=NOW), Prefix.OPERATOR)
    nats = payload["nats"]

    assert operator.public_key == payload["iss"]
    assert account.public_key == payload["sub"]
    assert "AUTH" == payload["name"]
    assert {
        "subs": -1,
        "data": -1,
        "payload": -1,
        "imports": -1,
        "exports": -1,
        "wildcards": True,
        "conn": -1,
        "leaf": -1,
    } == nats["limits"]
    assert [signing.public_key] == nats["signing_keys"]
    assert {"pub": {"allow": ["a.>"]}, "sub": {"deny": ["b"]}} == nats[
        "default_permissions"
    ]
    assert {
        "auth_users": [auth_user.public_key],
        "allowed_accounts": ["*"],
        "xkey": xkey.public_key,
    } == nats["authorization"]
    assert ("account", 2) == (nats["type"], nats["version"])


def test_account_jwt_with_jetstream_has_unlimited_storage() -> None:
    """jetstream=True adds -1 memory/disk/stream/consumer limits."""
    operator = KeyPair.create(Prefix.OPERATOR)
    claims = AccountClaims(
        subject=AccountKey(KeyPair.create(Prefix.ACCOUNT).public_key), jetstream=True
    )

    limits = decode_jwt(encode_account_jwt(claims, operator, now=NOW))["nats"]["limits"]

    assert -1 == limits["mem_storage"] == limits["disk_storage"]
    assert -1 == limits["streams"] == limits["consumer"]


def test_account_jwt_without_callout_has_no_authorization_section() -> None:
    """authorization is written only when configured."""
    operator = KeyPair.create(Prefix.OPERATOR)
    claims = AccountClaims(
        subject=AccountKey(KeyPair.create(Prefix.ACCOUNT).public_key)
    )

    nats = decode_jwt(encode_account_jwt(claims, operator, now=NOW))["nats"]

    assert "authorization" not in nats
    assert "signing_keys" not in nats
    assert "mem_storage" not in nats["limits"]
