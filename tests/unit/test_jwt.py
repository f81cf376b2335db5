"""Go-identical JSON and JWT encoding, known-answer vectors, and decode_jwt."""

from __future__ import annotations

import base64
import json

import pytest

from service.errors import (
    MalformedRequest,
    UntrustedServer,
)
from service.protocol.claims import (
    Permission,
    UserClaims,
    UserNKey,
)
from service.protocol.jwt import (
    HEADER,
    b64decode,
    b64encode,
    compute_jti,
    decode_jwt,
    go_json,
)
from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.request import decode_request
from service.protocol.response import (
    encode_user_jwt,
)
from tests.factories import NOW
from tests.vectors import (
    CAPTURED_REQUEST,
    ISSUER_PUBLIC,
    ISSUER_SEED,
    USER_JWT_JTI,
    USER_JWT_PAYLOAD,
    USER_JWT_VECTOR,
    USER_PUBLIC,
    Env,
    payload_of,
)

# --- known-answer vectors ----------------------------------------------------------


def _vector_user_claims() -> UserClaims:
    return UserClaims(
        subject=UserNKey(USER_PUBLIC),
        audience="APP",
        name="alice",
        expires=1700003600,
        pub=Permission(allow=("app.>",)),
        sub=Permission(allow=("_INBOX.>", "app.>")),
    )


def test_user_jwt_vector_is_reproduced_byte_for_byte() -> None:
    """encode_user_jwt gives exactly the signed token of docs/protocol.md §2.4."""
    issuer = KeyPair.from_seed(ISSUER_SEED)

    token = encode_user_jwt(_vector_user_claims(), issuer, now=1700000000)

    assert USER_JWT_VECTOR == token


def test_user_jwt_vector_payload_is_go_json() -> None:
    """The vector's payload is the Go-ordered, HTML-escaped JSON of section 2.4."""
    assert USER_JWT_PAYLOAD == payload_of(USER_JWT_VECTOR)


def test_user_jwt_vector_verifies() -> None:
    """The vector's signature verifies against its issuer."""
    payload = decode_jwt(USER_JWT_VECTOR, Prefix.ACCOUNT)

    assert ISSUER_PUBLIC == payload["iss"]
    assert ["_INBOX.>", "app.>"] == payload["nats"]["sub"]["allow"]


def test_jti_of_the_user_jwt_vector() -> None:
    """compute_jti over the vector's ClaimsData (no jti) gives its jti."""
    data = {
        "aud": "APP",
        "exp": 1700003600,
        "iat": 1700000000,
        "iss": ISSUER_PUBLIC,
        "name": "alice",
        "sub": USER_PUBLIC,
    }

    assert USER_JWT_JTI == compute_jti(data)
    assert USER_JWT_JTI == json.loads(payload_of(USER_JWT_VECTOR))["jti"]


def test_jti_of_the_captured_server_request() -> None:
    """compute_jti reproduces the jti nats-server v2.15.1 put in a real request."""
    data = {k: CAPTURED_REQUEST[k] for k in ("aud", "exp", "iat", "iss", "sub")}

    assert CAPTURED_REQUEST["jti"] == compute_jti(data)


def test_jti_is_52_chars_of_unpadded_base32() -> None:
    """A jti is the base32 (no '=') of a 32-byte SHA-512/256 digest."""
    jti = compute_jti({"iat": 1, "iss": ISSUER_PUBLIC, "sub": "x"})

    assert 52 == len(jti)
    assert 32 == len(base64.b32decode(jti + "===="))


def test_header_constant_is_the_go_header() -> None:
    """HEADER is the base64url of Go's header JSON."""
    assert b'{"typ":"JWT","alg":"ed25519-nkey"}' == b64decode(HEADER.encode())


# --- go_json -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<", b'"\\u003c"'),
        (">", b'"\\u003e"'),
        ("&", b'"\\u0026"'),
        ("\u2028", b'"\\u2028"'),
        ("\u2029", b'"\\u2029"'),
        ("a<b>&c", b'"a\\u003cb\\u003e\\u0026c"'),
    ],
    ids=["lt", "gt", "amp", "u2028", "u2029", "mixed"],
)
def test_go_json_html_escapes_like_go(value: str, expected: bytes) -> None:
    """< > & U+2028 U+2029 are written as \\u escapes, as Go's json.Marshal does."""
    assert expected == go_json(value)


@pytest.mark.parametrize(
    "text", ["é", "ü", "€", "日本", "\U0001f600", "\u00a0", "\u2027", "\u202a"]
)
def test_go_json_keeps_other_non_ascii_as_raw_utf8(text: str) -> None:
    """Other non-ASCII characters are raw UTF-8, not \\u escapes."""
    assert b'"' + text.encode() + b'"' == go_json(text)


def test_go_json_is_compact_and_keeps_key_order() -> None:
    """No whitespace, insertion order, Go literals for bools and null."""
    value = {"b": [1, -1, True, False, None], "a": {"x": "y"}}

    assert b'{"b":[1,-1,true,false,null],"a":{"x":"y"}}' == go_json(value)


def test_go_json_escapes_quotes_backslashes_and_controls() -> None:
    """JSON's own escapes stay standard and the result parses back."""
    value = 'q"b\\n\nt\t\x01'

    assert b'"q\\"b\\\\n\\nt\\t\\u0001"' == go_json(value)
    assert value == json.loads(go_json(value))


# --- decode_jwt on its own ------------------------------------------------------------


def test_decode_jwt_refuses_an_issuer_of_another_kind() -> None:
    """decode_jwt with prefixes refuses other issuer kinds."""
    with pytest.raises(UntrustedServer, match="expected operator"):
        decode_jwt(USER_JWT_VECTOR, Prefix.OPERATOR)


def test_decode_jwt_accepts_str_and_bytes() -> None:
    """The same token as str and bytes decodes to the same payload."""
    assert decode_jwt(USER_JWT_VECTOR) == decode_jwt(USER_JWT_VECTOR.encode())


def test_a_header_other_than_gos_is_still_checked(env: Env) -> None:
    """Only Go's exact header skips the checks: same JSON, other spacing, is read."""
    spaced = b64encode(b'{"typ": "JWT", "alg": "ed25519-nkey"}')
    wrong = b64encode(b'{"typ": "JWT", "alg": "ed25519"}')

    request = decode_request(env.sign(env.claims(), header=spaced), now=NOW)

    assert env.server.id == request.server.id
    with pytest.raises(MalformedRequest, match="alg"):
        decode_request(env.sign(env.claims(), header=wrong), now=NOW)


def test_payload_json_not_starting_with_a_key_is_read_as_json_loads_does(
    env: Env,
) -> None:
    """Leading whitespace takes json.loads' path and still decodes."""
    signing_input = f"{HEADER}.{b64encode(b' ' + go_json(env.claims()))}".encode()
    signature = b64encode(env.server.key.sign(signing_input)).encode()

    request = decode_request(signing_input + b"." + signature, now=NOW)

    assert env.server.id == request.server.id
