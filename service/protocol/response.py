"""
Encode what the service sends back: the user JWT and the signed response.

Byte-compatible with Go's nats-io/jwt v2 (docs/protocol.md §2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.protocol.jwt import go_json_text, sign_jwt

if TYPE_CHECKING:
    from service.protocol.claims import AuthRequest, Permission, UserClaims
    from service.protocol.nkeys import KeyPair
    from service.protocol.xkeys import CurveKeyPair

_RESP_TTL_NS = 1_000_000_000


def permission_json(perm: Permission) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if perm.allow:
        out["allow"] = list(perm.allow)
    if perm.deny:
        out["deny"] = list(perm.deny)
    return out


def user_nats_object(claims: UserClaims) -> dict[str, object]:
    """The `nats` object of a user JWT, in Go struct order."""
    nats: dict[str, object] = {
        "pub": permission_json(claims.pub),
        "sub": permission_json(claims.sub),
    }
    if claims.resp is not None:
        nats["resp"] = {
            "max": claims.resp.max,
            "ttl": round(claims.resp.ttl_seconds * _RESP_TTL_NS),
        }
    if claims.src:
        nats["src"] = list(claims.src)
    if claims.times:
        nats["times"] = [{"start": t.start, "end": t.end} for t in claims.times]
    if claims.times_location:
        nats["times_location"] = claims.times_location
    nats["subs"] = claims.subs
    nats["data"] = claims.data
    nats["payload"] = claims.payload
    if claims.bearer_token:
        nats["bearer_token"] = True
    if claims.proxy_required:
        nats["proxy_required"] = True
    if claims.allowed_connection_types:
        nats["allowed_connection_types"] = list(claims.allowed_connection_types)
    if claims.issuer_account:
        nats["issuer_account"] = claims.issuer_account
    if claims.tags:
        nats["tags"] = [t.lower() for t in claims.tags]
    nats["type"] = "user"
    nats["version"] = 2
    return nats


def encode_user_jwt(claims: UserClaims, signer: KeyPair, *, now: int) -> str:
    """
    Encode and sign a user JWT.

    Args:
        claims: What to grant; `claims.subject` must be the request's user_nkey.
        signer: Config mode: the issuer account key. Operator mode: the
            target account key or a signing key (then set `issuer_account`).
        now: Unix seconds for `iat`.
    """
    return sign_jwt(
        go_json_text(user_nats_object(claims)),
        signer,
        now=now,
        sub=claims.subject,
        aud=claims.audience,
        exp=claims.expires,
        name=claims.name,
    )


def encode_response(
    request: AuthRequest,
    signer: KeyPair,
    *,
    now: int,
    jwt: str = "",
    error: str = "",
    issuer_account: str = "",
) -> str:
    """
    Encode and sign an `authorization_response` for `request`.

    Exactly one of `jwt` (the user JWT) and `error` (a reason the server
    logs) must be given.
    """
    if bool(jwt) == bool(error):
        raise ValueError("exactly one of jwt and error must be set")
    # Written directly, as go_json would: two of these per request.
    nats = f'{{"jwt":{go_json_text(jwt)}' if jwt else f'{{"error":{go_json_text(error)}'
    if issuer_account:
        nats += f',"issuer_account":{go_json_text(issuer_account)}'
    nats += ',"type":"authorization_response","version":2}'
    return sign_jwt(nats, signer, now=now, sub=request.user_nkey, aud=request.server.id)


def seal_response(token: str, request: AuthRequest, xkey: CurveKeyPair) -> bytes:
    """xkv1-seal an encoded response to the requesting server's xkey."""
    if request.server.xkey is None:
        raise ValueError("the request carries no server xkey to seal to")
    return xkey.seal(token.encode("ascii"), request.server.xkey)
