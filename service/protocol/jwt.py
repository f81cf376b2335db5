"""
NATS JWTs: Go-compatible JSON, base64url, `jti`, signing and reading.

Output is byte-compatible with Go's nats-io/jwt v2: the same key order, the
same HTML escaping, and the same `jti` (docs/protocol.md §2). Reading checks
the header and signature and translates every third-party error (base64,
JSON, nacl) into a `RequestError` subclass, at the one place it can arise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from service.errors import (
    BadSignature,
    KeyFormatError,
    MalformedRequest,
    UntrustedServer,
)
from service.protocol.nkeys import (
    KeyPair,
    Prefix,
    b32encode,
    signer_prefix,
    verify,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_TOKEN_SIZE: Final = 1024 * 1024  # jwt.MaxTokenSize
HEADER: Final = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ"  # typ JWT, ed25519-nkey
)
_HEADER_BYTES = HEADER.encode("ascii")
JWT_PREFIX = b"eyJ"


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


def go_json_text(value: object) -> str:
    text = _ENCODER.encode(value)
    for char, escaped in _GO_ESCAPES:
        if char in text:
            text = text.replace(char, escaped)
    return text


def go_json(value: object) -> bytes:
    """Serialise like Go's json.Marshal: compact, raw UTF-8, HTML-escaped."""
    return go_json_text(value).encode()


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


def sign_jwt(
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
        before_jti.append(f'"aud":{go_json_text(aud)}')
    if exp:
        before_jti.append(f'"exp":{_json_int(exp)}')
    # nkey text is A-Z2-7 only: nothing in `iss` needs escaping.
    after_jti = [f'"iat":{_json_int(now)}', f'"iss":"{signer.public_key}"']
    if name:
        after_jti.append(f'"name":{go_json_text(name)}')
    after_jti.append(f'"sub":{go_json_text(sub)}')
    jti = _jti(("{" + ",".join(before_jti + after_jti) + "}").encode())
    members = ",".join([*before_jti, f'"jti":"{jti}"', *after_jti])
    payload = f'{{{members},"nats":{nats}}}'
    signing_input = f"{HEADER}.{b64encode(payload.encode())}"
    signature = signer.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64encode(signature)}"


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
