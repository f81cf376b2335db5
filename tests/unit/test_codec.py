"""JWT codec: Go-identical encoding, and every check decode_request makes."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from service.protocol.claims import (
    EXPECTED_AUDIENCE,
    SERVER_XKEY_HEADER,
    AccountClaims,
    AccountKey,
    AuthRequest,
    ClientInfo,
    ClientTLS,
    ConnectOpts,
    ExternalAuthorization,
    OperatorClaims,
    Permission,
    ResponsePermission,
    ServerId,
    ServerInfo,
    TimeRange,
    UserClaims,
    UserNKey,
)
from service.protocol.jwt import (
    HEADER,
    MAX_TOKEN_SIZE,
    b64decode,
    b64encode,
    compute_jti,
    decode_jwt,
    go_json,
)
from service.protocol.nkeys import KeyPair, Prefix, crc16, verify
from service.protocol.request import decode_request
from service.protocol.response import (
    encode_response,
    encode_user_jwt,
    seal_response,
    user_nats_object,
)
from service.protocol.xkeys import CurveKeyPair
from service.setup.accounts import encode_account_jwt, encode_operator_jwt
from service.setup.creds import format_creds, parse_creds
from tests.factories import NOW, FakeServer, make_request, request_claims, sign_token

# docs/protocol.md sections 1.1 and 2.4
ISSUER_SEED = "SAANDLKMXL6CUS3CP52WIXBEDN6YJ545GDKC65U5JZPPV6WH6ESWUA6YAI"
ISSUER_PUBLIC = "ABJHLOVMPA4CI6R5KLNGOB4GSLNIY7IOUPAJC4YFNDLQVIOBYQGUWVLA"
USER_SEED = "SUAP277QP7U4JMFFPVZHLJYEQJ2UHOTYVEIZJYAWRJXQLP4FRSEHYZJJOU"
USER_PUBLIC = "UBO2MQV67TQTVIRV3XFTEZOACM4WLOCMCDMAWN5QVN5PI2N6JHTVDRON"
USER_JWT_JTI = "MVP3QQHQGA3PKZVVT5UDYZL4JRDQRPJJTTINUTAUGGZS6ZN2H2KQ"
USER_JWT_VECTOR = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ."
    "eyJhdWQiOiJBUFAiLCJleHAiOjE3MDAwMDM2MDAsImp0aSI6Ik1WUDNRUUhRR0EzUEtaVlZUNVVEWV"
    "pMNEpSRFFSUEpKVFRJTlVUQVVHR1pTNlpOMkgyS1EiLCJpYXQiOjE3MDAwMDAwMDAsImlzcyI6IkFC"
    "SkhMT1ZNUEE0Q0k2UjVLTE5HT0I0R1NMTklZN0lPVVBBSkM0WUZORExRVklPQllRR1VXVkxBIiwibm"
    "FtZSI6ImFsaWNlIiwic3ViIjoiVUJPMk1RVjY3VFFUVklSVjNYRlRFWk9BQ000V0xPQ01DRE1BV041"
    "UVZONVBJMk42SkhUVkRST04iLCJuYXRzIjp7InB1YiI6eyJhbGxvdyI6WyJhcHAuXHUwMDNlIl19LC"
    "JzdWIiOnsiYWxsb3ciOlsiX0lOQk9YLlx1MDAzZSIsImFwcC5cdTAwM2UiXX0sInN1YnMiOi0xLCJk"
    "YXRhIjotMSwicGF5bG9hZCI6LTEsInR5cGUiOiJ1c2VyIiwidmVyc2lvbiI6Mn19."
    "OOMjeFGjhUnwL1xLi_dwoCDOkEvBsAKrvFH700bUQOdvmVbw2xYam1X7z9E1O5uiC6ML0w_zQMW9k9D1"
    "pfjgDA"
)
USER_JWT_PAYLOAD = (
    b'{"aud":"APP","exp":1700003600,"jti":"' + USER_JWT_JTI.encode() + b'",'
    b'"iat":1700000000,"iss":"' + ISSUER_PUBLIC.encode() + b'","name":"alice",'
    b'"sub":"' + USER_PUBLIC.encode() + b'",'
    b'"nats":{"pub":{"allow":["app.\\u003e"]},'
    b'"sub":{"allow":["_INBOX.\\u003e","app.\\u003e"]},'
    b'"subs":-1,"data":-1,"payload":-1,"type":"user","version":2}}'
)

# docs/protocol.md section 2.5: request captured from nats-server v2.15.1
CAPTURED_REQUEST: dict[str, Any] = {
    "aud": "nats-authorization-request",
    "exp": 1795868223,
    "jti": "4CZLYE5CWROQHIEVPCI3L7E5C5YYZQ4XGIOXVZVLPISXSISFHHXQ",
    "iat": 1795868221,
    "iss": "NDICJFQ3LKHXLWH4MGQAEYMFAX7YMAGBM7VYT75R6A5L32WCMUQZQCLW",
    "sub": "AA2OYNKY6LWYP6L6YUVSMETDDTRGSZSSZQYSIYPPSS6DHQ67PSH6IP6N",
    "nats": {
        "server_id": {
            "name": "A",
            "host": "127.0.0.1",
            "id": "NDICJFQ3LKHXLWH4MGQAEYMFAX7YMAGBM7VYT75R6A5L32WCMUQZQCLW",
            "version": "2.15.1",
        },
        "user_nkey": "UDWKYBQPL47FDYBTLMA3DH2MD4GFXXYJX2BXJHHDBLPYQMM52Q5FTM5U",
        "client_info": {
            "host": "127.0.0.1",
            "id": 8,
            "user": "alice",
            "name": "probe",
            "kind": "Client",
            "type": "nats",
        },
        "connect_opts": {
            "user": "alice",
            "pass": "x",
            "name": "probe",
            "lang": "raw",
            "version": "0.0.1",
            "protocol": 1,
        },
        "type": "authorization_request",
        "version": 2,
    },
}

REASONS: dict[type[RequestError], str] = {
    MalformedRequest: "malformed_request",
    BadSignature: "bad_signature",
    UntrustedServer: "untrusted_server",
    ExpiredRequest: "expired_request",
    EncryptionMismatch: "encryption_mismatch",
    DecryptionFailed: "decryption_failed",
}


def _payload_of(token: str | bytes) -> bytes:
    """The raw JSON bytes of a JWT's payload segment."""
    raw = token.encode() if isinstance(token, str) else token
    return b64decode(raw.split(b".")[1])


def _resign(token: bytes, key: KeyPair) -> bytes:
    """The same header and payload, signed by `key` (claims unchanged)."""
    signing_input = token.rsplit(b".", 1)[0]
    return signing_input + b"." + b64encode(key.sign(signing_input)).encode()


def _assert_refused(
    expected: type[RequestError],
    payload: bytes,
    headers: dict[str, str] | None = None,
    *,
    now: float = NOW,
    xkey: CurveKeyPair | None = None,
    match: str | None = None,
) -> RequestError:
    """decode_request raises exactly `expected`, with its reason code."""
    with pytest.raises(RequestError, match=match) as info:
        decode_request(payload, headers, now=now, xkey=xkey)

    assert expected is type(info.value)
    assert REASONS[expected] == info.value.reason
    return info.value


# --- fixtures ----------------------------------------------------------------------


@dataclass
class Env:
    """A server and the configured auth_callout issuer; builds requests."""

    server: FakeServer
    issuer: KeyPair

    def claims(self, **kw: Any) -> dict[str, Any]:
        """A valid authorization_request payload (mutate it, then sign)."""
        return request_claims(self.server, issuer_account=self.issuer.public_key, **kw)

    def sign(self, claims: object, *, header: str = HEADER) -> bytes:
        """Sign any JSON value with the server key."""
        signing_input = f"{header}.{b64encode(go_json(claims))}".encode()
        return (
            signing_input
            + b"."
            + b64encode(self.server.key.sign(signing_input)).encode()
        )

    def token(self, **kw: Any) -> bytes:
        """A valid, signed, plain request JWT."""
        return sign_token(self.claims(**kw), self.server.key)

    def sealed(
        self, service_xkey: CurveKeyPair, **kw: Any
    ) -> tuple[bytes, dict[str, str] | None]:
        """A valid request sealed to `service_xkey`: body and headers."""
        return make_request(
            self.server,
            issuer_account=self.issuer.public_key,
            service_xkey=service_xkey.public_key,
            **kw,
        )


@pytest.fixture(name="env")
def _env() -> Env:
    """A fresh server (no xkey) and issuer account."""
    return Env(FakeServer(), KeyPair.from_seed(ISSUER_SEED))


@pytest.fixture(name="service_xkey")
def _service_xkey() -> CurveKeyPair:
    """The service's curve key."""
    return CurveKeyPair.create()


@pytest.fixture(name="xenv")
def _xenv() -> Env:
    """A fresh server with an ephemeral xkey, and the issuer account."""
    return Env(FakeServer(xkey=CurveKeyPair.create()), KeyPair.from_seed(ISSUER_SEED))


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
    """encode_user_jwt gives exactly the signed token of protocol.md 2.4."""
    issuer = KeyPair.from_seed(ISSUER_SEED)

    token = encode_user_jwt(_vector_user_claims(), issuer, now=1700000000)

    assert USER_JWT_VECTOR == token


def test_user_jwt_vector_payload_is_go_json() -> None:
    """The vector's payload is the Go-ordered, HTML-escaped JSON of section 2.4."""
    assert USER_JWT_PAYLOAD == _payload_of(USER_JWT_VECTOR)


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
    assert USER_JWT_JTI == json.loads(_payload_of(USER_JWT_VECTOR))["jti"]


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


# --- user JWT: full claim surface ------------------------------------------------


def test_user_jwt_with_every_field_writes_go_order_and_decodes_back() -> None:
    """Every UserClaims field is written in Go struct order and verifies on decode."""
    signer = KeyPair.create(Prefix.ACCOUNT)
    claims = UserClaims(
        subject=UserNKey(USER_PUBLIC),
        audience="APP",
        name="bob",
        expires=1700003600,
        pub=Permission(allow=("app.>",), deny=("app.secret",)),
        sub=Permission(allow=("_INBOX.>", "q.* workers"), deny=("app.admin.>",)),
        resp=ResponsePermission(max=5, ttl_seconds=60),
        src=("10.0.0.0/8", "192.168.1.0/24"),
        times=(TimeRange("08:00:00", "17:00:00"), TimeRange("20:00:00", "21:30:00")),
        times_location="Europe/Berlin",
        subs=10,
        data=1024,
        payload=512,
        bearer_token=True,
        proxy_required=True,
        allowed_connection_types=("STANDARD", "WEBSOCKET"),
        issuer_account=ISSUER_PUBLIC,
        tags=("Team:Blue", "ENV:prod"),
    )
    expected_nats = (
        b'{"pub":{"allow":["app.\\u003e"],"deny":["app.secret"]},'
        b'"sub":{"allow":["_INBOX.\\u003e","q.* workers"],'
        b'"deny":["app.admin.\\u003e"]},'
        b'"resp":{"max":5,"ttl":60000000000},'
        b'"src":["10.0.0.0/8","192.168.1.0/24"],'
        b'"times":[{"start":"08:00:00","end":"17:00:00"},'
        b'{"start":"20:00:00","end":"21:30:00"}],'
        b'"times_location":"Europe/Berlin",'
        b'"subs":10,"data":1024,"payload":512,'
        b'"bearer_token":true,"proxy_required":true,'
        b'"allowed_connection_types":["STANDARD","WEBSOCKET"],'
        b'"issuer_account":"' + ISSUER_PUBLIC.encode() + b'",'
        b'"tags":["team:blue","env:prod"],"type":"user","version":2}'
    )

    token = encode_user_jwt(claims, signer, now=1700000000)
    raw = _payload_of(token)
    payload = decode_jwt(token, Prefix.ACCOUNT)

    assert raw.endswith(b',"nats":' + expected_nats + b"}")
    assert json.loads(expected_nats) == payload["nats"]
    assert ["aud", "exp", "jti", "iat", "iss", "name", "sub", "nats"] == list(payload)
    assert "APP" == payload["aud"]
    assert "bob" == payload["name"]
    assert 1700003600 == payload["exp"]
    assert 1700000000 == payload["iat"]
    assert signer.public_key == payload["iss"]
    assert USER_PUBLIC == payload["sub"]


@pytest.mark.parametrize(
    ("ttl_seconds", "ttl_ns"),
    [(0, 0), (0.5, 500_000_000), (1, 1_000_000_000), (120, 120_000_000_000)],
)
def test_response_ttl_is_integer_nanoseconds(ttl_seconds: float, ttl_ns: int) -> None:
    """resp.ttl is a Go time.Duration: an integer count of nanoseconds."""
    claims = UserClaims(
        subject=UserNKey(USER_PUBLIC),
        resp=ResponsePermission(max=1, ttl_seconds=ttl_seconds),
    )

    token = encode_user_jwt(claims, KeyPair.from_seed(ISSUER_SEED), now=NOW)
    resp = decode_jwt(token)["nats"]["resp"]

    assert {"max": 1, "ttl": ttl_ns} == resp
    assert isinstance(resp["ttl"], int)


def test_minimal_user_jwt_writes_empty_pub_sub_and_unlimited_limits() -> None:
    """Go always writes pub/sub (even empty) and -1 limits; optional claims omitted."""
    token = encode_user_jwt(
        UserClaims(subject=UserNKey(USER_PUBLIC)),
        KeyPair.from_seed(ISSUER_SEED),
        now=NOW,
    )
    raw = _payload_of(token)

    assert raw.endswith(
        b'"nats":{"pub":{},"sub":{},"subs":-1,"data":-1,"payload":-1,'
        b'"type":"user","version":2}}'
    )
    assert ["jti", "iat", "iss", "sub", "nats"] == list(json.loads(raw))


# --- authorization_response --------------------------------------------------------


@pytest.fixture(name="auth_request")
def _auth_request(env: Env) -> AuthRequest:
    """A decoded plain request from `env`'s server."""
    return decode_request(env.token(user_nkey=USER_PUBLIC), now=NOW)


def test_response_with_jwt_names_user_and_server(
    env: Env, auth_request: AuthRequest
) -> None:
    """sub is the request's user_nkey, aud the server id, nats.jwt the user JWT."""
    token = encode_response(auth_request, env.issuer, now=NOW, jwt=USER_JWT_VECTOR)
    payload = decode_jwt(token, Prefix.ACCOUNT)

    assert USER_PUBLIC == payload["sub"]
    assert env.server.id == payload["aud"]
    assert ISSUER_PUBLIC == payload["iss"]
    assert NOW == payload["iat"]
    assert "exp" not in payload
    assert {
        "jwt": USER_JWT_VECTOR,
        "type": "authorization_response",
        "version": 2,
    } == payload["nats"]


def test_response_with_error_carries_only_the_error(
    env: Env, auth_request: AuthRequest
) -> None:
    """An error response has nats.error and no nats.jwt."""
    token = encode_response(auth_request, env.issuer, now=NOW, error="no <access>")
    payload = decode_jwt(token, Prefix.ACCOUNT)

    assert {
        "error": "no <access>",
        "type": "authorization_response",
        "version": 2,
    } == payload["nats"]
    assert b'"error":"no \\u003caccess\\u003e"' in _payload_of(token)


def test_response_with_issuer_account_writes_it_before_type(
    env: Env, auth_request: AuthRequest
) -> None:
    """issuer_account follows jwt/error and precedes type/version (Go order)."""
    signing_key = KeyPair.create(Prefix.ACCOUNT)

    token = encode_response(
        auth_request,
        signing_key,
        now=NOW,
        jwt=USER_JWT_VECTOR,
        issuer_account=ISSUER_PUBLIC,
    )
    payload = decode_jwt(token, Prefix.ACCOUNT)

    assert ["jwt", "issuer_account", "type", "version"] == list(payload["nats"])
    assert ISSUER_PUBLIC == payload["nats"]["issuer_account"]
    assert signing_key.public_key == payload["iss"]


@pytest.mark.parametrize(
    ("jwt", "error"),
    [("", ""), (USER_JWT_VECTOR, "denied")],
    ids=["neither", "both"],
)
def test_response_needs_exactly_one_of_jwt_and_error(
    env: Env, auth_request: AuthRequest, jwt: str, error: str
) -> None:
    """Both or neither of jwt and error is a ValueError."""
    with pytest.raises(ValueError, match="exactly one of jwt and error"):
        encode_response(auth_request, env.issuer, now=NOW, jwt=jwt, error=error)


def test_sealed_response_opens_on_the_server_side(
    xenv: Env, service_xkey: CurveKeyPair
) -> None:
    """seal_response seals to server_id.xkey; the server opens it with our xkey."""
    payload, headers = xenv.sealed(service_xkey)
    request = decode_request(payload, headers, now=NOW, xkey=service_xkey)
    token = encode_response(request, xenv.issuer, now=NOW, error="no")

    sealed = seal_response(token, request, service_xkey)

    assert xenv.server.xkey is not None
    assert b"xkv1" == sealed[:4]
    assert token.encode() == xenv.server.xkey.open(sealed, service_xkey.public_key)


def test_seal_response_needs_a_server_xkey(
    auth_request: AuthRequest, service_xkey: CurveKeyPair
) -> None:
    """A plain request has no server xkey to seal to: ValueError."""
    with pytest.raises(ValueError, match="no server xkey"):
        seal_response("token", auth_request, service_xkey)


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


# --- creds files ---------------------------------------------------------------------

NSC_CREDS = f"""-----BEGIN NATS USER JWT-----
{USER_JWT_VECTOR}
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
{USER_SEED}
------END USER NKEY SEED------

*************************************************************
"""


def test_format_creds_writes_the_nsc_layout() -> None:
    """format_creds produces exactly what nsc writes."""
    assert NSC_CREDS == format_creds(USER_JWT_VECTOR, KeyPair.from_seed(USER_SEED))


def test_parse_creds_reads_an_nsc_creds_file() -> None:
    """parse_creds returns the JWT and the user key pair of an nsc creds file."""
    jwt, user = parse_creds(NSC_CREDS)

    assert USER_JWT_VECTOR == jwt
    assert USER_PUBLIC == user.public_key


def test_creds_round_trip() -> None:
    """parse_creds(format_creds(jwt, key)) gives back the same JWT and key."""
    user = KeyPair.create(Prefix.USER)

    jwt, parsed = parse_creds(format_creds(USER_JWT_VECTOR, user))

    assert USER_JWT_VECTOR == jwt
    assert user.public_key == parsed.public_key
    assert user.export_seed() == parsed.export_seed()


def test_parse_creds_reads_crlf_line_endings() -> None:
    """A creds file with Windows line endings parses like nats.go's regex does."""
    jwt, user = parse_creds(NSC_CREDS.replace("\n", "\r\n"))

    assert USER_JWT_VECTOR == jwt
    assert USER_PUBLIC == user.public_key


def test_parse_creds_without_blocks_is_a_key_format_error() -> None:
    """Text without JWT and seed blocks is refused."""
    with pytest.raises(KeyFormatError, match="JWT block and a seed block"):
        parse_creds("just some text\n")


def test_parse_creds_with_an_account_seed_is_refused() -> None:
    """A creds file must hold a user seed; the message does not echo the seed."""
    text = NSC_CREDS.replace(USER_SEED, ISSUER_SEED)

    with pytest.raises(KeyFormatError, match="user") as info:
        parse_creds(text)

    assert ISSUER_SEED not in str(info.value)


# --- decode_request: happy paths ---------------------------------------------------

SECRET_PASSWORD = "pa55-w0rd-Zq9"
SECRET_TOKEN = "tok-3f9a1c"
SECRET_JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzZWNyZXQi.c2ln"
SECRET_SIG = "c2lnbmF0dXJlLW9mLW5vbmNl"
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_plain_request_decodes_with_every_field_mapped(env: Env) -> None:
    """A plain request maps server_id, client_info, connect_opts and client_tls."""
    user_nkey = KeyPair.create(Prefix.USER).public_key
    payload = env.token(
        user_nkey=user_nkey,
        connect_opts={
            "jwt": SECRET_JWT,
            "nkey": USER_PUBLIC,
            "sig": SECRET_SIG,
            "auth_token": SECRET_TOKEN,
            "user": "alice",
            "pass": SECRET_PASSWORD,
            "name": "probe",
        },
        client_info={
            "user": "alice",
            "name": "probe",
            "tags": ["a", "b"],
            "name_tag": "sentinel",
            "mqtt_id": "m1",
            "nonce": "n1",
        },
        client_tls={
            "version": "1.3",
            "cipher": "TLS_AES_128_GCM_SHA256",
            "verified_chains": [[CERT, CERT], [CERT]],
        },
    )

    request = decode_request(payload, None, now=NOW)

    assert env.server.id == request.server.id
    assert "test" == request.server.name
    assert "127.0.0.1" == request.server.host
    assert "2.15.1" == request.server.version
    assert request.server.xkey is None
    assert user_nkey == request.user_nkey
    assert ISSUER_PUBLIC == request.account
    assert NOW == request.issued_at
    assert NOW + 2 == request.expires
    assert not request.sealed
    assert "127.0.0.1" == request.client_info.host
    assert 7 == request.client_info.id
    assert "alice" == request.client_info.user
    assert ("a", "b") == request.client_info.tags
    assert "sentinel" == request.client_info.name_tag
    assert ("Client", "nats") == (request.client_info.kind, request.client_info.type)
    assert ("m1", "n1") == (request.client_info.mqtt_id, request.client_info.nonce)
    opts = request.connect_opts
    assert SECRET_PASSWORD == opts.password
    assert SECRET_TOKEN == opts.auth_token
    assert SECRET_JWT == opts.jwt
    assert SECRET_SIG == opts.sig
    assert USER_PUBLIC == opts.nkey
    assert ("alice", "probe") == (opts.user, opts.name)
    assert ("python3", "2.16.0", 1) == (opts.lang, opts.version, opts.protocol)
    assert (
        ClientTLS(
            version="1.3",
            cipher="TLS_AES_128_GCM_SHA256",
            certs=(),
            verified_chains=((CERT, CERT), (CERT,)),
        )
        == request.client_tls
    )


def test_request_without_tls_has_no_client_tls(env: Env) -> None:
    """client_tls is None when the server sent none."""
    assert decode_request(env.token(), now=NOW).client_tls is None


def test_request_with_unverified_certs_keeps_them(env: Env) -> None:
    """client_tls.certs (no verified chains) are kept as a tuple of PEM strings."""
    payload = env.token(client_tls={"version": "1.2", "certs": [CERT]})

    tls = decode_request(payload, now=NOW).client_tls

    assert ClientTLS(version="1.2", certs=(CERT,)) == tls


def test_captured_request_shape_decodes(env: Env) -> None:
    """The section 2.5 capture, re-signed by a test server, decodes field by field."""
    claims = json.loads(json.dumps(CAPTURED_REQUEST))
    claims["iss"] = claims["nats"]["server_id"]["id"] = env.server.id

    request = decode_request(env.sign(claims), now=1795868222)

    assert "UDWKYBQPL47FDYBTLMA3DH2MD4GFXXYJX2BXJHHDBLPYQMM52Q5FTM5U" == (
        request.user_nkey
    )
    assert "x" == request.connect_opts.password
    assert "raw" == request.connect_opts.lang
    assert 8 == request.client_info.id
    assert CAPTURED_REQUEST["sub"] == request.account


def test_sealed_request_decodes(xenv: Env, service_xkey: CurveKeyPair) -> None:
    """A sealed request opens with our xkey and records the server's xkey."""
    payload, headers = xenv.sealed(service_xkey, connect_opts={"pass": SECRET_PASSWORD})
    assert xenv.server.xkey is not None
    assert headers is not None

    request = decode_request(payload, headers, now=NOW, xkey=service_xkey)

    assert request.sealed
    assert xenv.server.xkey.public_key == request.server.xkey
    assert xenv.server.xkey.public_key == headers[SERVER_XKEY_HEADER]
    assert SECRET_PASSWORD == request.connect_opts.password


def test_header_typ_is_compared_case_insensitively(env: Env) -> None:
    """typ "jwt" is accepted like "JWT" (jwt header.go)."""
    header = b64encode(b'{"typ":"jwt","alg":"ED25519-NKEY"}')

    request = decode_request(env.sign(env.claims(), header=header), now=NOW)

    assert env.server.id == request.server.id


def test_request_is_still_valid_at_exactly_exp(env: Env) -> None:
    """now == exp is not expired (the server fails only now > exp)."""
    request = decode_request(env.token(), now=NOW + 2)

    assert NOW + 2 == request.expires


def test_request_without_exp_never_expires(env: Env) -> None:
    """exp absent (or 0) means no deadline."""
    claims = env.claims()
    del claims["exp"]

    assert 0 == decode_request(env.sign(claims), now=NOW + 10**9).expires


def test_request_is_valid_at_exactly_nbf(env: Env) -> None:
    """now == nbf is valid."""
    claims = env.claims() | {"nbf": NOW}

    assert env.server.id == decode_request(env.sign(claims), now=NOW).server.id


def test_auth_request_repr_hides_the_clients_secrets(env: Env) -> None:
    """repr()/str() of an AuthRequest never show password, token, jwt or sig."""
    payload = env.token(
        connect_opts={
            "pass": SECRET_PASSWORD,
            "auth_token": SECRET_TOKEN,
            "jwt": SECRET_JWT,
            "sig": SECRET_SIG,
            "user": "alice",
        }
    )
    request = decode_request(payload, now=NOW)

    for text in (repr(request), str(request), repr(request.connect_opts)):
        assert "alice" in text
        for secret in (SECRET_PASSWORD, SECRET_TOKEN, SECRET_JWT, SECRET_SIG):
            assert secret not in text


# --- decode_request: one test per check, in decode order ---------------------------


def test_refuses_a_payload_over_the_size_limit() -> None:
    """A body larger than 1 MiB (+ xkv1 overhead) is MalformedRequest."""
    _assert_refused(
        MalformedRequest, b"eyJ" + b"A" * (MAX_TOKEN_SIZE + 62), match="too large"
    )


def test_refuses_a_token_over_the_jwt_size_limit(env: Env) -> None:
    """A plain token over jwt.MaxTokenSize is MalformedRequest (decode_jwt)."""
    token = env.token()
    padded = token + b"A" * (MAX_TOKEN_SIZE + 1 - len(token))

    _assert_refused(MalformedRequest, padded, match="exceeds")


@pytest.mark.parametrize("segments", [1, 2, 4])
def test_refuses_a_token_without_three_segments(env: Env, segments: int) -> None:
    """A JWT is exactly three dot-separated segments."""
    parts = env.token().split(b".")
    payload = b".".join((parts * 2)[:segments])

    _assert_refused(MalformedRequest, payload, match="3 dot-separated segments")


@pytest.mark.parametrize("padding", [b"=", b"=="])
def test_refuses_a_padded_signature(env: Env, padding: bytes) -> None:
    """base64 '=' padding is refused (Go RawURLEncoding)."""
    _assert_refused(MalformedRequest, env.token() + padding, match="base64url")


def test_refuses_a_padded_payload_segment(env: Env) -> None:
    """'=' padding in the payload segment is refused too, even if re-signed."""
    header, payload, _ = env.token().split(b".")
    signing_input = header + b"." + payload + b"=="
    token = (
        signing_input + b"." + b64encode(env.server.key.sign(signing_input)).encode()
    )

    _assert_refused(MalformedRequest, token, match="base64url")


def test_refuses_the_standard_base64_alphabet(env: Env) -> None:
    """The same signature written with '+' and '/' instead of '-' and '_' is refused."""
    for _ in range(100):
        token = env.token()
        signature = token.rsplit(b".", 1)[1]
        if b"-" in signature or b"_" in signature:
            break
    else:  # pragma: no cover - (62/64)**86 chance
        pytest.fail("no signature with '-' or '_' in 100 tries")
    standard = signature.replace(b"-", b"+").replace(b"_", b"/")
    assert base64.b64decode(standard + b"==") == b64decode(signature)

    _assert_refused(
        MalformedRequest, token[: -len(signature)] + standard, match="base64url"
    )


@pytest.mark.parametrize(
    ("header_json", "match"),
    [
        (b"not json", "header is not JSON"),
        (b'["JWT","ed25519-nkey"]', "header is not a JSON object"),
        (b'{"typ":"JWS","alg":"ed25519-nkey"}', "typ is not JWT"),
        (b'{"alg":"ed25519-nkey"}', "typ is not JWT"),
        (b'{"typ":"JWT","alg":"ed25519"}', "alg is not ed25519-nkey"),
        (b'{"typ":"JWT","alg":"HS256"}', "alg is not ed25519-nkey"),
        (b'{"typ":"JWT"}', "alg is not ed25519-nkey"),
    ],
    ids=[
        "not-json",
        "not-object",
        "typ-jws",
        "typ-missing",
        "alg-v1",
        "alg-hs256",
        "alg-missing",
    ],
)
def test_refuses_a_bad_header(env: Env, header_json: bytes, match: str) -> None:
    """The header must be a JSON object with typ JWT and alg ed25519-nkey."""
    token = env.sign(env.claims(), header=b64encode(header_json))

    _assert_refused(MalformedRequest, token, match=match)


@pytest.mark.parametrize(
    ("payload_json", "match"),
    [
        (b'{"aud":', "payload is not JSON"),
        (b"\xff\xfe{}", "payload is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "payload is not JSON"),
        (b'"a string"', "payload is not a JSON object"),
    ],
    ids=["truncated", "not-utf8", "deeply-nested", "not-object"],
)
def test_refuses_a_payload_that_is_not_a_json_object(
    env: Env, payload_json: bytes, match: str
) -> None:
    """The payload segment must decode to a JSON object."""
    signing_input = f"{HEADER}.{b64encode(payload_json)}".encode()
    token = (
        signing_input + b"." + b64encode(env.server.key.sign(signing_input)).encode()
    )

    _assert_refused(MalformedRequest, token, match=match)


def test_refuses_a_v1_claim_with_top_level_type(env: Env) -> None:
    """A top-level "type" makes it a v1 claim: MalformedRequest."""
    claims = env.claims() | {"type": "authorization_request"}

    _assert_refused(MalformedRequest, env.sign(claims), match="not a v2")


@pytest.mark.parametrize(
    "version", [None, 1, 3, "2", 0], ids=["missing", "1", "3", "string", "0"]
)
def test_refuses_a_nats_version_other_than_2(env: Env, version: object) -> None:
    """nats.version must be present and exactly 2."""
    claims = env.claims()
    if version is None:
        del claims["nats"]["version"]
    else:
        claims["nats"]["version"] = version

    _assert_refused(MalformedRequest, env.sign(claims), match="not a v2")


@pytest.mark.parametrize("nats", [None, "x", [1]], ids=["missing", "string", "list"])
def test_refuses_a_missing_or_non_object_nats(env: Env, nats: object) -> None:
    """The nats claim must be an object."""
    claims = env.claims()
    if nats is None:
        del claims["nats"]
    else:
        claims["nats"] = nats

    _assert_refused(MalformedRequest, env.sign(claims), match="not a v2")


def test_refuses_a_missing_issuer(env: Env) -> None:
    """No iss: UntrustedServer."""
    claims = env.claims()
    del claims["iss"]

    _assert_refused(UntrustedServer, env.sign(claims), match="issuer is missing")


def test_refuses_an_issuer_that_is_not_a_server_key(env: Env) -> None:
    """A request signed by an account key (iss A…) is UntrustedServer."""
    account = KeyPair.create(Prefix.ACCOUNT)
    claims = env.claims()
    claims["iss"] = account.public_key
    claims["nats"]["server_id"]["id"] = account.public_key

    _assert_refused(
        UntrustedServer, sign_token(claims, account), match="expected server"
    )


@pytest.mark.parametrize("issuer", [42, "", "NOTAKEY"], ids=["int", "empty", "junk"])
def test_refuses_an_issuer_that_is_not_a_key(env: Env, issuer: object) -> None:
    """iss that is no nkey text at all is UntrustedServer."""
    claims = env.claims() | {"iss": issuer}

    _assert_refused(UntrustedServer, env.sign(claims))


def test_refuses_a_signature_by_another_server(env: Env) -> None:
    """Re-signed by a different server key, iss unchanged: BadSignature."""
    token = _resign(env.token(), KeyPair.create(Prefix.SERVER))

    error = _assert_refused(BadSignature, token, match="does not verify")

    assert error.server_id is None


def test_refuses_a_payload_changed_after_signing(env: Env) -> None:
    """Changing the payload but keeping the signature is BadSignature."""
    header, _, signature = env.token().split(b".")
    other = env.claims() | {"sub": KeyPair.create(Prefix.ACCOUNT).public_key}
    token = header + b"." + b64encode(go_json(other)).encode() + b"." + signature

    _assert_refused(BadSignature, token)


def test_refuses_a_truncated_signature(env: Env) -> None:
    """A signature that decodes to fewer than 64 bytes is BadSignature."""
    _assert_refused(BadSignature, env.token()[:-4])


@pytest.mark.parametrize(
    "kind",
    [None, "authorization_response", "user", 7],
    ids=["missing", "response", "user", "int"],
)
def test_refuses_a_claim_that_is_not_an_authorization_request(
    env: Env, kind: object
) -> None:
    """nats.type must be authorization_request."""
    claims = env.claims()
    if kind is None:
        del claims["nats"]["type"]
    else:
        claims["nats"]["type"] = kind

    _assert_refused(
        MalformedRequest, env.sign(claims), match="not an authorization_request"
    )


def test_refuses_a_server_id_other_than_the_issuer(env: Env) -> None:
    """server_id.id must equal iss: UntrustedServer, reporting the issuer."""
    claims = env.claims()
    claims["nats"]["server_id"]["id"] = KeyPair.create(Prefix.SERVER).public_key

    error = _assert_refused(UntrustedServer, env.sign(claims), match="is not server id")

    assert env.server.id == error.server_id


@pytest.mark.parametrize(
    "server_id", [None, "N...", []], ids=["missing", "string", "list"]
)
def test_refuses_a_missing_or_non_object_server_id(env: Env, server_id: object) -> None:
    """server_id must be an object."""
    claims = env.claims()
    if server_id is None:
        del claims["nats"]["server_id"]
    else:
        claims["nats"]["server_id"] = server_id

    _assert_refused(MalformedRequest, env.sign(claims), match="server_id")


@pytest.mark.parametrize(
    "audience",
    [None, "APP", "nats-authorization-response", ["nats-authorization-request"]],
    ids=["missing", "account", "response", "list"],
)
def test_refuses_a_wrong_audience(env: Env, audience: object) -> None:
    """aud must be "nats-authorization-request": UntrustedServer."""
    claims = env.claims()
    if audience is None:
        del claims["aud"]
    else:
        claims["aud"] = audience

    error = _assert_refused(UntrustedServer, env.sign(claims), match="audience")

    assert env.server.id == error.server_id
    assert EXPECTED_AUDIENCE != audience


@pytest.mark.parametrize("late", [1, 1.5, 3600])
def test_refuses_an_expired_request(env: Env, late: float) -> None:
    """A whole second past exp is ExpiredRequest (Go compares whole seconds)."""
    error = _assert_refused(
        ExpiredRequest, env.token(), now=NOW + 2 + late, match="expired at"
    )

    assert env.server.id == error.server_id


@pytest.mark.parametrize("late", [0.001, 0.999])
def test_accepts_a_request_within_its_exp_second(env: Env, late: float) -> None:
    """The server writes exp = trunc(send + timeout); the exp second is still valid."""
    request = decode_request(env.token(), now=NOW + 2 + late)

    assert NOW + 2 == request.expires


def test_refuses_a_request_not_yet_valid(env: Env) -> None:
    """nbf in the future is ExpiredRequest (not yet valid)."""
    claims = env.claims() | {"nbf": NOW + 1}

    _assert_refused(ExpiredRequest, env.sign(claims), match="not valid before")


@pytest.mark.parametrize(
    ("claim", "value"),
    [("exp", "soon"), ("exp", 1.5), ("exp", True), ("nbf", "0"), ("iat", None)],
)
def test_refuses_a_time_claim_that_is_not_an_integer(
    env: Env, claim: str, value: object
) -> None:
    """exp, nbf and iat must be integers (Go int64)."""
    claims = env.claims() | {claim: value}

    _assert_refused(MalformedRequest, env.sign(claims), match=f"{claim} is not")


@pytest.mark.parametrize(
    "user_nkey",
    [
        None,
        "",
        ISSUER_PUBLIC,
        "NAB2CB576PHBBPQ5ODORRZ2LYCMWPZGWGCN2KDK7DXOIMZASKUY3RSWB",
        USER_SEED,
        USER_PUBLIC[:-1] + ("A" if USER_PUBLIC[-1] != "A" else "B"),
    ],
    ids=["missing", "empty", "account", "server", "seed", "bad-checksum"],
)
def test_refuses_a_user_nkey_that_is_not_a_user_key(
    env: Env, user_nkey: str | None
) -> None:
    """user_nkey must be a valid U… public key."""
    claims = env.claims()
    if user_nkey is None:
        del claims["nats"]["user_nkey"]
    else:
        claims["nats"]["user_nkey"] = user_nkey

    _assert_refused(MalformedRequest, env.sign(claims), match="user_nkey")


def test_refuses_a_user_nkey_that_is_not_a_string(env: Env) -> None:
    """user_nkey 7 is MalformedRequest."""
    claims = env.claims()
    claims["nats"]["user_nkey"] = 7

    _assert_refused(MalformedRequest, env.sign(claims), match="user_nkey is not")


WRONG_TYPES: dict[str, tuple[str, str, object]] = {
    "client_info.host-int": ("client_info", "host", 127),
    "client_info.id-string": ("client_info", "id", "8"),
    "client_info.id-bool": ("client_info", "id", True),
    "client_info.tags-string": ("client_info", "tags", "a,b"),
    "connect_opts.protocol-string": ("connect_opts", "protocol", "1"),
    "connect_opts.pass-int": ("connect_opts", "pass", 1234),
    "connect_opts.jwt-object": ("connect_opts", "jwt", {}),
    "server_id.tags-string": ("server_id", "tags", "a"),
    "server_id.tags-ints": ("server_id", "tags", [1, 2]),
    "server_id.name-int": ("server_id", "name", 1),
    "server_id.xkey-not-curve": ("server_id", "xkey", ISSUER_PUBLIC),
    "server_id.xkey-int": ("server_id", "xkey", 1),
}


@pytest.mark.parametrize(
    ("section", "field", "value"), WRONG_TYPES.values(), ids=WRONG_TYPES.keys()
)
def test_refuses_a_field_of_the_wrong_type(
    env: Env, section: str, field: str, value: object
) -> None:
    """A field of the wrong JSON type is MalformedRequest naming the field."""
    claims = env.claims()
    claims["nats"][section][field] = value

    _assert_refused(MalformedRequest, env.sign(claims), match=f"{section}.{field}")


@pytest.mark.parametrize(
    "section", ["client_info", "connect_opts", "client_tls"], ids=str
)
def test_refuses_a_section_that_is_not_an_object(env: Env, section: str) -> None:
    """client_info, connect_opts and client_tls must be objects."""
    claims = env.claims()
    claims["nats"][section] = ["not", "an", "object"]

    _assert_refused(MalformedRequest, env.sign(claims), match=section)


@pytest.mark.parametrize(
    ("tls", "match"),
    [
        ({"verified_chains": "PEM"}, "verified_chains is not a list"),
        ({"verified_chains": [CERT]}, "verified_chains is not a list of strings"),
        ({"verified_chains": [[CERT], [1]]}, "verified_chains is not a list of"),
        ({"certs": CERT}, "certs is not a list of strings"),
        ({"version": 1.3}, "client_tls.version"),
    ],
    ids=["chains-string", "chains-flat", "chain-of-int", "certs-string", "version"],
)
def test_refuses_client_tls_of_the_wrong_shape(
    env: Env, tls: dict[str, object], match: str
) -> None:
    """verified_chains is a list of lists of PEM strings; certs a list of strings."""
    _assert_refused(MalformedRequest, env.token(client_tls=tls), match=match)


@pytest.mark.parametrize(
    "chains",
    [0, False, "", {}],
    ids=["zero", "false", "empty-str", "dict"],
)
def test_refuses_falsy_verified_chains_of_the_wrong_type(
    env: Env, chains: object
) -> None:
    """verified_chains 0/false/""/{} is refused like a truthy non-list (Go does too)."""
    _assert_refused(MalformedRequest, env.token(client_tls={"verified_chains": chains}))


def _padded_key(prefix: Prefix) -> str:
    """A 56-char key text with a valid CRC whose base32 ends in '=' padding."""
    body = bytes([prefix]) + b"\x01" * 28
    return base64.b32encode(body + crc16(body).to_bytes(2, "little")).decode()


def test_refuses_a_padded_issuer_with_a_request_error(env: Env) -> None:
    """A padded iss key is refused with a RequestError, never another exception."""
    padded = _padded_key(Prefix.SERVER)
    claims = env.claims() | {"iss": padded}
    claims["nats"]["server_id"]["id"] = padded

    _assert_refused(UntrustedServer, env.sign(claims))


def test_refuses_a_padded_user_nkey(env: Env) -> None:
    """A padded user_nkey (not a 32-byte key) is MalformedRequest."""
    _assert_refused(
        MalformedRequest,
        env.token(user_nkey=_padded_key(Prefix.USER)),
        match="user_nkey",
    )


# --- decode_request: encryption checks ----------------------------------------------


def test_refuses_a_plain_request_when_an_xkey_is_configured(
    env: Env, service_xkey: CurveKeyPair
) -> None:
    """xkey configured but the body is a plain JWT: EncryptionMismatch."""
    _assert_refused(
        EncryptionMismatch,
        env.token(),
        xkey=service_xkey,
        match="not encrypted",
    )


def test_refuses_a_sealed_request_when_no_xkey_is_configured(
    xenv: Env, service_xkey: CurveKeyPair
) -> None:
    """A sealed request with its header but no xkey configured: EncryptionMismatch."""
    payload, headers = xenv.sealed(service_xkey)

    _assert_refused(EncryptionMismatch, payload, headers, match="no xkey")


def test_refuses_a_sealed_body_without_header_when_no_xkey_is_configured(
    xenv: Env, service_xkey: CurveKeyPair
) -> None:
    """An 'xkv1' body without the header, no xkey configured: EncryptionMismatch."""
    payload, _ = xenv.sealed(service_xkey)

    _assert_refused(EncryptionMismatch, payload, None, match="no xkey")


def test_refuses_a_sealed_request_without_the_xkey_header(
    xenv: Env, service_xkey: CurveKeyPair
) -> None:
    """Sealed, xkey configured, but no Nats-Server-Xkey header: EncryptionMismatch."""
    payload, _ = xenv.sealed(service_xkey)

    _assert_refused(
        EncryptionMismatch,
        payload,
        {"Other": "x"},
        xkey=service_xkey,
        match=SERVER_XKEY_HEADER,
    )


def test_refuses_a_request_sealed_to_another_service_xkey(
    xenv: Env, service_xkey: CurveKeyPair
) -> None:
    """Sealed to a different service xkey: DecryptionFailed."""
    payload, headers = xenv.sealed(CurveKeyPair.create())

    _assert_refused(
        DecryptionFailed, payload, headers, xkey=service_xkey, match="does not open"
    )


def test_refuses_a_header_xkey_that_is_not_a_curve_key(
    xenv: Env, service_xkey: CurveKeyPair
) -> None:
    """A Nats-Server-Xkey header that is not an X key: DecryptionFailed."""
    payload, _ = xenv.sealed(service_xkey)

    _assert_refused(
        DecryptionFailed,
        payload,
        {SERVER_XKEY_HEADER: xenv.server.id},
        xkey=service_xkey,
        match="not a curve key",
    )


def test_refuses_a_tampered_sealed_request(
    xenv: Env, service_xkey: CurveKeyPair
) -> None:
    """A bit flipped in the sealed body: DecryptionFailed."""
    payload, headers = xenv.sealed(service_xkey)
    tampered = payload[:-1] + bytes([payload[-1] ^ 1])

    _assert_refused(DecryptionFailed, tampered, headers, xkey=service_xkey)


def test_refuses_a_header_xkey_that_differs_from_the_signed_one(
    xenv: Env, service_xkey: CurveKeyPair
) -> None:
    """Sealed with A, header A, but the signed server_id.xkey is B: UntrustedServer."""
    assert xenv.server.xkey is not None
    signed_as = replace(xenv.server, xkey=CurveKeyPair.create())  # claims say B
    token = sign_token(
        request_claims(signed_as, issuer_account=xenv.issuer.public_key),
        xenv.server.key,
    )
    sealed = xenv.server.xkey.seal(token, service_xkey.public_key)  # sealed with A

    error = _assert_refused(
        UntrustedServer,
        sealed,
        {SERVER_XKEY_HEADER: xenv.server.xkey.public_key},
        xkey=service_xkey,
        match="does not match the signed server xkey",
    )

    assert xenv.server.id == error.server_id


def test_refuses_a_sealed_request_whose_claims_have_no_xkey(
    xenv: Env, service_xkey: CurveKeyPair
) -> None:
    """Sealed and signed, but server_id carries no xkey: UntrustedServer."""
    assert xenv.server.xkey is not None
    token = sign_token(
        request_claims(
            replace(xenv.server, xkey=None), issuer_account=xenv.issuer.public_key
        ),
        xenv.server.key,
    )
    sealed = xenv.server.xkey.seal(token, service_xkey.public_key)

    _assert_refused(
        UntrustedServer,
        sealed,
        {SERVER_XKEY_HEADER: xenv.server.xkey.public_key},
        xkey=service_xkey,
    )


# --- decode_jwt on its own ------------------------------------------------------------


def test_decode_jwt_refuses_an_issuer_of_another_kind() -> None:
    """decode_jwt with prefixes refuses other issuer kinds."""
    with pytest.raises(UntrustedServer, match="expected operator"):
        decode_jwt(USER_JWT_VECTOR, Prefix.OPERATOR)


def test_decode_jwt_accepts_str_and_bytes() -> None:
    """The same token as str and bytes decodes to the same payload."""
    assert decode_jwt(USER_JWT_VECTOR) == decode_jwt(USER_JWT_VECTOR.encode())


def test_response_signed_by_issuer_verifies_with_keys_verify(
    env: Env, auth_request: AuthRequest
) -> None:
    """The signature covers '<header>.<payload>' (v2 rule), checkable by verify()."""
    token = encode_response(auth_request, env.issuer, now=NOW, error="x").encode()
    signing_input, signature = token.rsplit(b".", 1)

    assert verify(ISSUER_PUBLIC, signing_input, b64decode(signature))


# --- the string-built payload equals the dict-built one ----------------------------

# Free text as Go would have to escape it: HTML characters, U+2028/9, quotes,
# controls and raw non-ASCII.
TEXT = st.text(alphabet=st.sampled_from('ab <>&"\\\n\x01é\u2028\u2029日'), max_size=12)


def _dict_payload(
    nats: dict[str, object], *, sub: str, aud: str = "", exp: int = 0, name: str = ""
) -> bytes:
    """The payload as go_json of the Go-ordered claims dict (the reference).

    Signed by ISSUER_SEED at NOW.
    """
    data: dict[str, object] = {"aud": aud, "exp": exp, "iat": NOW, "iss": ISSUER_PUBLIC}
    data |= {"name": name, "sub": sub}
    data = {k: v for k, v in data.items() if v or k == "sub"}  # omitempty
    head = {k: data[k] for k in ("aud", "exp") if k in data}
    rest = {k: v for k, v in data.items() if k not in head}
    return go_json(head | {"jti": compute_jti(data)} | rest | {"nats": nats})


@settings(max_examples=200, deadline=None)
@given(sub=TEXT, aud=TEXT, name=TEXT, exp=st.sampled_from([0, 1, 1700003600]))
def test_user_jwt_payload_is_go_json_of_the_claims(
    sub: str, aud: str, name: str, exp: int
) -> None:
    """encode_user_jwt's payload (and so its jti) is go_json of the claims dict."""
    issuer = KeyPair.from_seed(ISSUER_SEED)
    claims = UserClaims(
        subject=UserNKey(sub), audience=aud, name=name, expires=exp, tags=("T",)
    )

    token = encode_user_jwt(claims, issuer, now=NOW)

    nats = user_nats_object(claims)
    expected = _dict_payload(nats, sub=sub, aud=aud, exp=exp, name=name)
    assert expected == _payload_of(token)


@settings(max_examples=200, deadline=None)
@given(reason=TEXT, account=TEXT, with_jwt=st.booleans())
def test_response_payload_is_go_json_of_the_claims(
    reason: str,
    account: str,
    with_jwt: bool,  # noqa: FBT001
) -> None:
    """encode_response writes nats by hand: the bytes go_json of a dict gives."""
    issuer = KeyPair.from_seed(ISSUER_SEED)
    request = AuthRequest(
        server=ServerInfo(id=ServerId("N<&>")),
        user_nkey=UserNKey(USER_PUBLIC),
        client_info=ClientInfo(),
        connect_opts=ConnectOpts(),
    )
    value = "j" + reason if with_jwt else "e" + reason
    kind = "jwt" if with_jwt else "error"

    token = encode_response(
        request, issuer, now=NOW, issuer_account=account, **{kind: value}
    )

    nats: dict[str, object] = {kind: value}
    nats |= {"issuer_account": account} if account else {}
    nats |= {"type": "authorization_response", "version": 2}
    expected = _dict_payload(nats, sub=USER_PUBLIC, aud="N<&>")
    assert expected == _payload_of(token)


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
