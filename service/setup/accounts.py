"""
Operator and account JWTs, for `init`, `dev` and the tests (never `run`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.protocol.jwt import go_json_text, sign_jwt
from service.protocol.response import permission_json

if TYPE_CHECKING:
    from service.protocol.claims import AccountClaims, OperatorClaims
    from service.protocol.nkeys import KeyPair


def encode_operator_jwt(claims: OperatorClaims, signer: KeyPair, *, now: int) -> str:
    """Encode an operator JWT (signed by the operator key itself or a signing key)."""
    nats: dict[str, object] = {}
    if claims.signing_keys:
        nats["signing_keys"] = list(claims.signing_keys)
    if claims.system_account:
        nats["system_account"] = claims.system_account
    nats["type"] = "operator"
    nats["version"] = 2
    nats_json = go_json_text(nats)
    return sign_jwt(nats_json, signer, now=now, sub=claims.subject, name=claims.name)


def encode_account_jwt(claims: AccountClaims, signer: KeyPair, *, now: int) -> str:
    """
    Encode an account JWT signed by the operator (or its signing key).

    Limits are written as -1 (unlimited): omitted limits mean 0, and `conn: 0`
    refuses every connection (docs/protocol.md §7.21).
    """
    limits: dict[str, object] = {
        "subs": -1,
        "data": -1,
        "payload": -1,
        "imports": -1,
        "exports": -1,
        "wildcards": True,
        "conn": -1,
        "leaf": -1,
    }
    if claims.jetstream:
        limits |= {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    nats: dict[str, object] = {"limits": limits}
    if claims.signing_keys:
        nats["signing_keys"] = list(claims.signing_keys)
    pub, sub = claims.default_permissions
    nats["default_permissions"] = {
        "pub": permission_json(pub),
        "sub": permission_json(sub),
    }
    auth = claims.authorization
    if auth is not None:
        section: dict[str, object] = {}
        if auth.auth_users:
            section["auth_users"] = list(auth.auth_users)
        if auth.allowed_accounts:
            section["allowed_accounts"] = list(auth.allowed_accounts)
        if auth.xkey:
            section["xkey"] = auth.xkey
        nats["authorization"] = section
    nats["type"] = "account"
    nats["version"] = 2
    nats_json = go_json_text(nats)
    return sign_jwt(nats_json, signer, now=now, sub=claims.subject, name=claims.name)
