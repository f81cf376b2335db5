"""
Decode and verify an `authorization_request`.

Strategy: a request is checked in the order callout.go's decode() and the
server use, cheapest first, and every failure is a `RequestError` subclass.
Nothing else escapes `decode_request`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from service.errors import (
    DecryptionFailed,
    EncryptionMismatch,
    ExpiredRequest,
    KeyFormatError,
    MalformedRequest,
    RequestError,
    UntrustedServer,
)
from service.protocol.claims import (
    EXPECTED_AUDIENCE,
    SERVER_XKEY_HEADER,
    AuthRequest,
    ClientInfo,
    ClientTLS,
    ConnectOpts,
    CurvePublicKey,
    ServerId,
    ServerInfo,
    UserNKey,
)
from service.protocol.jwt import JWT_PREFIX, MAX_TOKEN_SIZE, Signed, read_jwt
from service.protocol.nkeys import (
    Prefix,
    decode_public,
)
from service.protocol.xkeys import CurveKeyPair, check_curve_public

if TYPE_CHECKING:
    from collections.abc import Mapping


def unseal(
    payload: bytes, headers: Mapping[str, str] | None, xkey: CurveKeyPair | None
) -> tuple[bytes, str | None]:
    """
    Open an xkv1-sealed request, or check that a plain one is expected.

    Returns:
        The JWT bytes and the server xkey from the header (None when plain).

    Raises:
        EncryptionMismatch: Sealed without our xkey, or plain with it.
        DecryptionFailed: It does not open.
    """
    header_xkey = (headers or {}).get(SERVER_XKEY_HEADER)
    looks_sealed = header_xkey is not None or not payload.startswith(JWT_PREFIX)
    if xkey is None:
        if looks_sealed and (header_xkey is not None or payload.startswith(b"xkv1")):
            raise EncryptionMismatch("request is encrypted but no xkey is configured")
        return payload, None
    if not looks_sealed:
        raise EncryptionMismatch(
            "an xkey is configured but the request is not encrypted"
        )
    if header_xkey is None:
        raise EncryptionMismatch(
            f"encrypted request without a {SERVER_XKEY_HEADER} header"
        )
    try:
        return xkey.open(payload, header_xkey), header_xkey
    except KeyFormatError as exc:
        raise DecryptionFailed(
            f"{SERVER_XKEY_HEADER} header is not a curve key"
        ) from exc


def decode_request(
    payload: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    now: float,
    xkey: CurveKeyPair | None = None,
) -> AuthRequest:
    """
    Decode and verify an `authorization_request` as the server sent it.

    Args:
        payload: The message body (a JWT, or xkv1-sealed JWT).
        headers: The message headers (None when there are none).
        now: Unix time, for the expiry check.
        xkey: The service's curve key when encryption is configured; then
            requests must be sealed.

    Raises:
        RequestError: Any subclass; the request must not be answered.
    """
    request, signed = read_request(payload, headers, now=now, xkey=xkey)
    signed.verify()
    return request


def read_request(
    payload: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    now: float,
    xkey: CurveKeyPair | None = None,
) -> tuple[AuthRequest, Signed]:
    """
    `decode_request` but for the signature check, which the caller must make
    (`Signed.verify`) before it answers or trusts anything in the request.

    Every other check is made here. When one fails the signature is checked
    first, so a request gets the same reason code either way (a forged
    request is `bad_signature`, whatever else is wrong with it).

    Raises:
        RequestError: Any subclass but BadSignature, unless something else
            is wrong with the request too.
    """
    if len(payload) > MAX_TOKEN_SIZE + 64:
        raise MalformedRequest(f"request of {len(payload)} bytes is too large")
    token, header_xkey = unseal(payload, headers, xkey)
    claims, signed = read_jwt(token, Prefix.SERVER)
    try:
        request = _request(claims, header_xkey, now)
    except RequestError:
        signed.verify()
        raise
    return request, signed


def _request(
    claims: dict[str, Any], header_xkey: str | None, now: float
) -> AuthRequest:
    nats = claims["nats"]
    if nats.get("type") != "authorization_request":
        raise MalformedRequest("not an authorization_request")
    issuer = claims["iss"]
    server = _server_info(nats.get("server_id"))
    if server.id != issuer:
        raise UntrustedServer(
            f"issuer {issuer!r} is not server id {server.id!r}", server_id=issuer
        )
    if claims.get("aud") != EXPECTED_AUDIENCE:
        raise UntrustedServer(
            f"audience is not {EXPECTED_AUDIENCE!r}", server_id=server.id
        )
    if header_xkey is not None and server.xkey != header_xkey:
        raise UntrustedServer(
            f"{SERVER_XKEY_HEADER} header does not match the signed server xkey",
            server_id=server.id,
        )
    # Go's jwt Validate compares whole seconds (time.Now().Unix() > exp), and
    # the server writes exp = trunc(send time + timeout): a float comparison
    # would refuse requests the server is still waiting for.
    whole_now = math.floor(now)
    expires = _int(claims.get("exp", 0), "exp")
    if expires and whole_now > expires:
        raise ExpiredRequest(f"request expired at {expires}", server_id=server.id)
    not_before = _int(claims.get("nbf", 0), "nbf")
    if not_before and whole_now < not_before:
        raise ExpiredRequest(
            f"request not valid before {not_before}", server_id=server.id
        )
    user_nkey = _str(nats.get("user_nkey", ""), "user_nkey")
    try:
        decode_public(user_nkey, Prefix.USER)
    except KeyFormatError as exc:
        raise MalformedRequest(f"user_nkey: {exc}", server_id=server.id) from None
    tls = nats.get("client_tls")
    return AuthRequest(
        server=server,
        user_nkey=UserNKey(user_nkey),
        client_info=_client_info(nats.get("client_info", {})),
        connect_opts=_connect_opts(nats.get("connect_opts", {})),
        client_tls=None if tls is None else _client_tls(tls),
        account=_str(claims.get("sub", ""), "sub"),
        issued_at=_int(claims.get("iat", 0), "iat"),
        expires=expires,
        sealed=header_xkey is not None,
    )


def _str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise MalformedRequest(f"{name} is not a string")
    return value


def _int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedRequest(f"{name} is not an integer")
    return value


def _strs(value: object, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedRequest(f"{name} is not a list of strings")
    return tuple(value)


def _object(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedRequest(f"{name} is not an object")
    return value


def _server_info(value: object) -> ServerInfo:
    obj = _object(value, "server_id")
    xkey = obj.get("xkey")
    if xkey is not None:
        xkey = _str(xkey, "server_id.xkey")
        try:
            check_curve_public(xkey)
        except KeyFormatError as exc:
            raise MalformedRequest(f"server_id.xkey: {exc}") from None
    return ServerInfo(
        id=ServerId(_str(obj.get("id", ""), "server_id.id")),
        name=_str(obj.get("name", ""), "server_id.name"),
        host=_str(obj.get("host", ""), "server_id.host"),
        version=_str(obj.get("version", ""), "server_id.version"),
        cluster=_str(obj.get("cluster", ""), "server_id.cluster"),
        tags=_strs(obj.get("tags"), "server_id.tags"),
        xkey=None if xkey is None else CurvePublicKey(xkey),
    )


def _client_info(value: object) -> ClientInfo:
    obj = _object(value, "client_info")
    return ClientInfo(
        host=_str(obj.get("host", ""), "client_info.host"),
        id=_int(obj.get("id", 0), "client_info.id"),
        user=_str(obj.get("user", ""), "client_info.user"),
        name=_str(obj.get("name", ""), "client_info.name"),
        tags=_strs(obj.get("tags"), "client_info.tags"),
        name_tag=_str(obj.get("name_tag", ""), "client_info.name_tag"),
        kind=_str(obj.get("kind", ""), "client_info.kind"),
        type=_str(obj.get("type", ""), "client_info.type"),
        mqtt_id=_str(obj.get("mqtt_id", ""), "client_info.mqtt_id"),
        nonce=_str(obj.get("nonce", ""), "client_info.nonce"),
    )


def _connect_opts(value: object) -> ConnectOpts:
    obj = _object(value, "connect_opts")
    # Names only in messages: these fields hold the client's secrets.
    return ConnectOpts(
        jwt=_str(obj.get("jwt", ""), "connect_opts.jwt"),
        nkey=_str(obj.get("nkey", ""), "connect_opts.nkey"),
        sig=_str(obj.get("sig", ""), "connect_opts.sig"),
        auth_token=_str(obj.get("auth_token", ""), "connect_opts.auth_token"),
        user=_str(obj.get("user", ""), "connect_opts.user"),
        password=_str(obj.get("pass", ""), "connect_opts.pass"),
        name=_str(obj.get("name", ""), "connect_opts.name"),
        lang=_str(obj.get("lang", ""), "connect_opts.lang"),
        version=_str(obj.get("version", ""), "connect_opts.version"),
        protocol=_int(obj.get("protocol", 0), "connect_opts.protocol"),
    )


def _client_tls(value: object) -> ClientTLS:
    obj = _object(value, "client_tls")
    chains = obj.get("verified_chains")
    if chains is None:
        chains = []
    if not isinstance(chains, list):
        raise MalformedRequest("client_tls.verified_chains is not a list")
    return ClientTLS(
        version=_str(obj.get("version", ""), "client_tls.version"),
        cipher=_str(obj.get("cipher", ""), "client_tls.cipher"),
        certs=_strs(obj.get("certs"), "client_tls.certs"),
        verified_chains=tuple(_strs(c, "client_tls.verified_chains") for c in chains),
    )
