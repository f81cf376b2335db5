"""The user JWT and the authorization response, byte for byte."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.protocol.claims import (
    AuthRequest,
    ClientInfo,
    ConnectOpts,
    Permission,
    ResponsePermission,
    ServerId,
    ServerInfo,
    TimeRange,
    UserClaims,
    UserNKey,
)
from service.protocol.jwt import (
    b64decode,
    compute_jti,
    decode_jwt,
    go_json,
)
from service.protocol.nkeys import KeyPair, Prefix, verify
from service.protocol.request import decode_request
from service.protocol.response import (
    encode_response,
    encode_user_jwt,
    seal_response,
    user_nats_object,
)
from tests.factories import NOW
from tests.vectors import (
    ISSUER_PUBLIC,
    ISSUER_SEED,
    USER_JWT_VECTOR,
    USER_PUBLIC,
    Env,
    payload_of,
)

if TYPE_CHECKING:
    from service.protocol.xkeys import CurveKeyPair

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
    raw = payload_of(token)
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
    raw = payload_of(token)

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
    assert b'"error":"no \\u003caccess\\u003e"' in payload_of(token)


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
    assert expected == payload_of(token)


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
    assert expected == payload_of(token)


def test_response_signed_by_issuer_verifies_with_keys_verify(
    env: Env, auth_request: AuthRequest
) -> None:
    """The signature covers '<header>.<payload>' (v2 rule), checkable by verify()."""
    token = encode_response(auth_request, env.issuer, now=NOW, error="x").encode()
    signing_input, signature = token.rsplit(b".", 1)

    assert verify(ISSUER_PUBLIC, signing_input, b64decode(signature))
