"""
NATS JWTs <-> claims: decode and verify requests, encode and sign the rest.

Strategy: a request is checked in the order callout.go's decode() and the
server use, cheapest first, and every failure is a `RequestError` subclass.
Nothing else escapes `decode_request`: third-party errors (base64, JSON,
nacl) are translated here, at the one place they can arise.

Output is byte-compatible with Go's nats-io/jwt v2: the same key order, the
same HTML escaping, and the same `jti` (docs/protocol.md section 2).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from service.claims import (
    EXPECTED_AUDIENCE,
    SERVER_XKEY_HEADER,
    AccountClaims,
    AuthRequest,
    ClientInfo,
    ClientTLS,
    ConnectOpts,
    CurvePublicKey,
    OperatorClaims,
    Permission,
    ServerId,
    ServerInfo,
    UserClaims,
    UserNKey,
)
from service.errors import (
    BadSignature,
    DecryptionFailed,
    EncryptionMismatch,
    ExpiredRequest,
    KeyFormatError,
    MalformedRequest,
    RequestError,
    UntrustedServer,
)
from service.keys import (
    CurveKeyPair,
    KeyPair,
    Prefix,
    b32encode,
    check_curve_public,
    decode_public,
    signer_prefix,
    verify,
)
from service.keys import format_creds as format_creds  # noqa: PLC0414 (re-export)
from service.keys import parse_creds as parse_creds  # noqa: PLC0414

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_TOKEN_SIZE: Final = 1024 * 1024  # jwt.MaxTokenSize
HEADER: Final = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ"  # typ JWT, ed25519-nkey
)
_HEADER_BYTES = HEADER.encode("ascii")
_JWT_PREFIX = b"eyJ"
_RESP_TTL_NS = 1_000_000_000


# --- encoding -------------------------------------------------------------------

# Go's encoder HTML-escapes these; everything else non-ASCII stays raw UTF-8.
_GO_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)
_B64_TO_STD = bytes.maketrans(b"-_", b"+/")
# One encoder for every call: json.dumps with non-default options builds a new one.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# An empty SHA-512/256 to copy: cheaper than hashlib.new() finding it by name.
_SHA512_256 = hashlib.new("sha512_256")
_DECODER = json.JSONDecoder()  # what json.loads uses when given no options


def _go_json_text(value: object) -> str:
    text = _ENCODER.encode(value)
    for char, escaped in _GO_ESCAPES:
        if char in text:
            text = text.replace(char, escaped)
    return text


def go_json(value: object) -> bytes:
    """Serialise like Go's json.Marshal: compact, raw UTF-8, HTML-escaped."""
    return _go_json_text(value).encode()


def _json_int(value: int) -> str:
    # json writes an int as int.__repr__; anything else goes the general way.
    return str(value) if type(value) is int else _ENCODER.encode(value)


def b64encode(raw: bytes) -> str:
    """base64url without padding (Go RawURLEncoding)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64decode(segment: bytes) -> bytes:
    """
    Strict base64url without padding, as Go's RawURLEncoding reads it.

    Raises:
        MalformedRequest: Padding, the standard alphabet, or a bad length.
    """
    # '+', '/' and '=' would pass a2b_base64 after translation: refuse them first.
    if b"+" in segment or b"/" in segment or b"=" in segment or len(segment) % 4 == 1:
        raise MalformedRequest("segment is not unpadded base64url")
    try:
        return binascii.a2b_base64(
            segment.translate(_B64_TO_STD) + b"=" * (-len(segment) % 4),
            strict_mode=True,
        )
    except (binascii.Error, ValueError) as exc:
        raise MalformedRequest("segment is not unpadded base64url") from exc


def _jti(claims_data_json: bytes) -> str:
    sha = _SHA512_256.copy()
    sha.update(claims_data_json)
    return b32encode(sha.digest())


def compute_jti(claims_data: Mapping[str, object]) -> str:
    """
    The `jti` Go computes: base32 of SHA-512/256 over the ClaimsData JSON.

    `claims_data` holds the standard claims only, in Go order, without `jti`.
    """
    return _jti(go_json(claims_data))


def _sign(
    nats: str,
    signer: KeyPair,
    *,
    now: int,
    sub: str,
    aud: str = "",
    exp: int = 0,
    name: str = "",
) -> str:
    # Go field order: aud, exp, jti, iat, iss, name, nbf, sub; zero values omitted.
    # The ClaimsData JSON that jti hashes and the payload share all members but
    # jti and `nats` (JSON text): each is serialised once, joined as go_json would.
    before_jti = []
    if aud:
        before_jti.append(f'"aud":{_go_json_text(aud)}')
    if exp:
        before_jti.append(f'"exp":{_json_int(exp)}')
    # nkey text is A-Z2-7 only: nothing in `iss` needs escaping.
    after_jti = [f'"iat":{_json_int(now)}', f'"iss":"{signer.public_key}"']
    if name:
        after_jti.append(f'"name":{_go_json_text(name)}')
    after_jti.append(f'"sub":{_go_json_text(sub)}')
    jti = _jti(("{" + ",".join(before_jti + after_jti) + "}").encode())
    members = ",".join([*before_jti, f'"jti":"{jti}"', *after_jti])
    payload = f'{{{members},"nats":{nats}}}'
    signing_input = f"{HEADER}.{b64encode(payload.encode())}"
    signature = signer.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64encode(signature)}"


def _permission(perm: Permission) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if perm.allow:
        out["allow"] = list(perm.allow)
    if perm.deny:
        out["deny"] = list(perm.deny)
    return out


def user_nats_object(claims: UserClaims) -> dict[str, object]:
    """The `nats` object of a user JWT, in Go struct order."""
    nats: dict[str, object] = {
        "pub": _permission(claims.pub),
        "sub": _permission(claims.sub),
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
    return _sign(
        _go_json_text(user_nats_object(claims)),
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
    nats = (
        f'{{"jwt":{_go_json_text(jwt)}' if jwt else f'{{"error":{_go_json_text(error)}'
    )
    if issuer_account:
        nats += f',"issuer_account":{_go_json_text(issuer_account)}'
    nats += ',"type":"authorization_response","version":2}'
    return _sign(nats, signer, now=now, sub=request.user_nkey, aud=request.server.id)


def seal_response(token: str, request: AuthRequest, xkey: CurveKeyPair) -> bytes:
    """xkv1-seal an encoded response to the requesting server's xkey."""
    if request.server.xkey is None:
        raise ValueError("the request carries no server xkey to seal to")
    return xkey.seal(token.encode("ascii"), request.server.xkey)


def encode_operator_jwt(claims: OperatorClaims, signer: KeyPair, *, now: int) -> str:
    """Encode an operator JWT (signed by the operator key itself or a signing key)."""
    nats: dict[str, object] = {}
    if claims.signing_keys:
        nats["signing_keys"] = list(claims.signing_keys)
    if claims.system_account:
        nats["system_account"] = claims.system_account
    nats["type"] = "operator"
    nats["version"] = 2
    nats_json = _go_json_text(nats)
    return _sign(nats_json, signer, now=now, sub=claims.subject, name=claims.name)


def encode_account_jwt(claims: AccountClaims, signer: KeyPair, *, now: int) -> str:
    """
    Encode an account JWT signed by the operator (or its signing key).

    Limits are written as -1 (unlimited): omitted limits mean 0, and `conn: 0`
    refuses every connection (docs/protocol.md section 9.21).
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
    nats["default_permissions"] = {"pub": _permission(pub), "sub": _permission(sub)}
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
    nats_json = _go_json_text(nats)
    return _sign(nats_json, signer, now=now, sub=claims.subject, name=claims.name)


# --- decoding -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signed:
    """What a JWT's signature covers: checked by `verify`, maybe later."""

    issuer: str
    signing_input: bytes
    signature: bytes

    def verify(self) -> None:
        """
        Raises:
            BadSignature: The signature does not verify against `issuer`.
        """
        if not verify(self.issuer, self.signing_input, self.signature):
            raise BadSignature(
                f"signature does not verify against issuer {self.issuer!r}"
            )


def decode_jwt(token: str | bytes, *prefixes: Prefix) -> dict[str, Any]:
    """
    Verify a v2 NATS JWT's header and signature and return its payload.

    Expiry is not checked here; callers that care compare `exp` themselves.

    Args:
        token: The encoded JWT.
        prefixes: Issuer kinds to accept (any when empty).

    Raises:
        MalformedRequest: Not a JWT, bad encoding, wrong header, not v2.
        BadSignature: The signature does not verify against `iss`.
        UntrustedServer: `iss` is not a key of an accepted kind.
    """
    payload, signed = read_jwt(token, *prefixes)
    signed.verify()
    return payload


def read_jwt(token: str | bytes, *prefixes: Prefix) -> tuple[dict[str, Any], Signed]:
    """`decode_jwt` but for the signature, returned to verify (`Signed.verify`)."""
    raw = token.encode("ascii", "replace") if isinstance(token, str) else token
    if len(raw) > MAX_TOKEN_SIZE:
        raise MalformedRequest(f"token of {len(raw)} bytes exceeds {MAX_TOKEN_SIZE}")
    parts = raw.split(b".")
    if len(parts) != 3:  # noqa: PLR2004
        raise MalformedRequest(f"expected 3 dot-separated segments, got {len(parts)}")
    if parts[0] != _HEADER_BYTES:  # Go's own header passes these checks: skip them
        _check_header(parts[0])
    payload = _json_object(b64decode(parts[1]), "payload")
    signature = b64decode(parts[2])
    nats = payload.get("nats")
    if "type" in payload or not isinstance(nats, dict) or nats.get("version") != 2:  # noqa: PLR2004
        raise MalformedRequest("not a v2 NATS JWT")
    issuer = payload.get("iss")
    if not isinstance(issuer, str):
        raise UntrustedServer("issuer is missing")
    try:
        kind = signer_prefix(issuer)
    except KeyFormatError as exc:
        raise UntrustedServer(f"issuer is not a valid key: {exc}") from None
    if prefixes and kind not in prefixes:
        wanted = ", ".join(p.name.lower() for p in prefixes)
        raise UntrustedServer(f"issuer is a {kind.name.lower()} key, expected {wanted}")
    signing_input = raw[: len(parts[0]) + len(parts[1]) + 1]
    return payload, Signed(issuer, signing_input, signature)


def _check_header(segment: bytes) -> None:
    header = _json_object(b64decode(segment), "header")
    typ, alg = header.get("typ"), header.get("alg")
    if not isinstance(typ, str) or typ.upper() != "JWT":
        raise MalformedRequest("header typ is not JWT")
    if not isinstance(alg, str) or alg.lower() != "ed25519-nkey":
        raise MalformedRequest("header alg is not ed25519-nkey")


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        # json.loads(bytes) first guesses the encoding; text starting '{"' is UTF-8.
        if raw.startswith(b'{"'):
            value = _DECODER.decode(raw.decode("utf-8", "surrogatepass"))
        else:
            value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedRequest(f"{what} is not JSON") from exc
    if not isinstance(value, dict):
        raise MalformedRequest(f"{what} is not a JSON object")
    return value


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
    looks_sealed = header_xkey is not None or not payload.startswith(_JWT_PREFIX)
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
