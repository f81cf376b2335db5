"""Property tests: decode_request only ever raises RequestError; codec round trips."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import RequestError
from service.protocol.claims import (
    CONNECTION_TYPES,
    SERVER_XKEY_HEADER,
    AuthRequest,
    Permission,
    ResponsePermission,
    TimeRange,
    UserClaims,
    UserNKey,
)
from service.protocol.jwt import HEADER, b64decode, b64encode, decode_jwt, go_json
from service.protocol.nkeys import KeyPair, Prefix, encode_public
from service.protocol.request import decode_request
from service.protocol.response import encode_user_jwt
from service.protocol.xkeys import CurveKeyPair
from tests.factories import NOW, FakeServer, make_request, request_claims

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROUND_TRIP = settings(max_examples=100, deadline=None)

ISSUER = KeyPair.create(Prefix.ACCOUNT)
SERVICE_XKEY = CurveKeyPair.create()
PLAIN_SERVER = FakeServer()
SEALED_SERVER = FakeServer(xkey=CurveKeyPair.create())
PLAIN_TOKEN, _ = make_request(PLAIN_SERVER, issuer_account=ISSUER.public_key)
SEALED_BODY, SEALED_HEADERS = make_request(
    SEALED_SERVER,
    issuer_account=ISSUER.public_key,
    service_xkey=SERVICE_XKEY.public_key,
)
assert SEALED_SERVER.xkey is not None
SEALED_XKEY = SEALED_SERVER.xkey


def _decode_or_request_error(
    payload: bytes,
    headers: dict[str, str] | None = None,
    xkey: CurveKeyPair | None = None,
) -> AuthRequest | RequestError:
    """decode_request's result, or the error; anything but RequestError fails."""
    try:
        return decode_request(payload, headers, now=NOW, xkey=xkey)
    except RequestError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - the property is about what escapes
        pytest.fail(f"decode_request raised {type(exc).__name__}: {exc}")


def _sign_raw(payload_json: bytes, key: KeyPair, header: str = HEADER) -> bytes:
    signing_input = f"{header}.{b64encode(payload_json)}".encode()
    return signing_input + b"." + b64encode(key.sign(signing_input)).encode()


def _segments(token: bytes) -> list[bytes]:
    """The decoded bytes of each segment of a JWT."""
    return [b64decode(part) for part in token.split(b".")]


# --- strategies --------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=16,
)

raw32 = st.binary(min_size=32, max_size=32)
signing_prefixes = st.sampled_from(
    [Prefix.OPERATOR, Prefix.ACCOUNT, Prefix.USER, Prefix.SERVER, Prefix.CLUSTER]
)
header_choices = st.sampled_from(
    [
        None,
        {SERVER_XKEY_HEADER: SEALED_XKEY.public_key},
        {SERVER_XKEY_HEADER: PLAIN_SERVER.id},
        {SERVER_XKEY_HEADER: ""},
        {"Other": "x"},
    ]
)
xkey_choices = st.sampled_from([None, SERVICE_XKEY])

# Places in a valid request where a random JSON value goes.
CLAIM_PATHS: list[tuple[str, ...]] = [
    ("aud",),
    ("exp",),
    ("iat",),
    ("nbf",),
    ("iss",),
    ("sub",),
    ("type",),
    ("nats",),
    ("nats", "type"),
    ("nats", "version"),
    ("nats", "server_id"),
    ("nats", "server_id", "id"),
    ("nats", "server_id", "name"),
    ("nats", "server_id", "tags"),
    ("nats", "server_id", "xkey"),
    ("nats", "user_nkey"),
    ("nats", "client_info"),
    ("nats", "client_info", "id"),
    ("nats", "client_info", "host"),
    ("nats", "client_info", "tags"),
    ("nats", "connect_opts"),
    ("nats", "connect_opts", "protocol"),
    ("nats", "connect_opts", "pass"),
    ("nats", "client_tls"),
    ("nats", "client_tls", "certs"),
    ("nats", "client_tls", "verified_chains"),
]

_token = st.from_regex(r"[A-Za-z0-9_$-]{1,8}", fullmatch=True)
subjects = st.builds(
    lambda tokens, tail: ".".join([*tokens, *tail]),
    st.lists(_token | st.just("*"), min_size=1, max_size=4),
    st.sampled_from([[], [">"]]),
)
subject_lists = st.lists(subjects, max_size=3).map(tuple)
permissions = st.builds(Permission, allow=subject_lists, deny=subject_lists)
clock = st.builds(
    lambda h, m, s: f"{h:02d}:{m:02d}:{s:02d}",
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
)
cidrs = st.builds(
    lambda a, b, n: f"10.{a}.{b}.0/{n}",
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(8, 32),
)
limits = st.integers(min_value=-1, max_value=2**53)

user_claims = st.builds(
    UserClaims,
    subject=raw32.map(lambda raw: UserNKey(encode_public(Prefix.USER, raw))),
    audience=st.text(max_size=12),
    name=st.text(max_size=12),
    expires=st.integers(min_value=0, max_value=2**53),
    pub=permissions,
    sub=permissions,
    resp=st.none()
    | st.builds(
        ResponsePermission,
        max=st.integers(min_value=-1, max_value=1000),
        ttl_seconds=st.integers(min_value=0, max_value=10**6).map(float),
    ),
    src=st.lists(cidrs, max_size=3).map(tuple),
    times=st.lists(st.builds(TimeRange, clock, clock), max_size=2).map(tuple),
    times_location=st.sampled_from(["", "UTC", "Europe/Berlin"]),
    subs=limits,
    data=limits,
    payload=limits,
    bearer_token=st.booleans(),
    proxy_required=st.booleans(),
    allowed_connection_types=st.lists(
        st.sampled_from(sorted(CONNECTION_TYPES)), max_size=3
    ).map(tuple),
    issuer_account=st.sampled_from(["", ISSUER.public_key]),
    tags=st.lists(st.text(min_size=1, max_size=8), max_size=3).map(tuple),
)


def _user_claims_from_payload(payload: dict[str, Any]) -> UserClaims:
    """Rebuild UserClaims from a decoded user JWT payload (the test's own reader)."""
    nats = payload["nats"]
    resp = nats.get("resp")
    return UserClaims(
        subject=UserNKey(payload["sub"]),
        audience=payload.get("aud", ""),
        name=payload.get("name", ""),
        expires=payload.get("exp", 0),
        pub=Permission(
            allow=tuple(nats["pub"].get("allow", ())),
            deny=tuple(nats["pub"].get("deny", ())),
        ),
        sub=Permission(
            allow=tuple(nats["sub"].get("allow", ())),
            deny=tuple(nats["sub"].get("deny", ())),
        ),
        resp=None
        if resp is None
        else ResponsePermission(
            max=resp["max"], ttl_seconds=resp["ttl"] / 1_000_000_000
        ),
        src=tuple(nats.get("src", ())),
        times=tuple(TimeRange(t["start"], t["end"]) for t in nats.get("times", ())),
        times_location=nats.get("times_location", ""),
        subs=nats["subs"],
        data=nats["data"],
        payload=nats["payload"],
        bearer_token=nats.get("bearer_token", False),
        proxy_required=nats.get("proxy_required", False),
        allowed_connection_types=tuple(nats.get("allowed_connection_types", ())),
        issuer_account=nats.get("issuer_account", ""),
        tags=tuple(nats.get("tags", ())),
    )


# --- decode_request never raises anything but RequestError -------------------------


@FUZZ
@given(data=st.binary(max_size=2048), headers=header_choices, xkey=xkey_choices)
def test_random_bytes_raise_only_request_errors(
    data: bytes, headers: dict[str, str] | None, xkey: CurveKeyPair | None
) -> None:
    """Arbitrary bytes are refused with a RequestError subclass."""
    result = _decode_or_request_error(data, headers, xkey)

    assert isinstance(result, RequestError)


@FUZZ
@given(
    prefix=st.sampled_from([b"eyJ", b"xkv1", PLAIN_TOKEN[:40]]),
    data=st.binary(max_size=512),
    headers=header_choices,
    xkey=xkey_choices,
)
def test_random_bytes_behind_a_plausible_prefix_raise_only_request_errors(
    prefix: bytes,
    data: bytes,
    headers: dict[str, str] | None,
    xkey: CurveKeyPair | None,
) -> None:
    """Bytes that start like a JWT or an xkv1 message are refused cleanly."""
    result = _decode_or_request_error(prefix + data, headers, xkey)

    assert isinstance(result, RequestError)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(PLAIN_TOKEN) - 1))
def test_truncated_tokens_raise_only_request_errors(cut: int) -> None:
    """Every proper prefix of a valid token is refused with a RequestError."""
    result = _decode_or_request_error(PLAIN_TOKEN[:cut])

    assert isinstance(result, RequestError)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(SEALED_BODY) - 1))
def test_truncated_sealed_requests_raise_only_request_errors(cut: int) -> None:
    """Every proper prefix of a sealed request is refused with a RequestError."""
    result = _decode_or_request_error(SEALED_BODY[:cut], SEALED_HEADERS, SERVICE_XKEY)

    assert isinstance(result, RequestError)


@FUZZ
@given(raw=raw32, prefix=signing_prefixes, claim_iss=st.booleans())
def test_resigned_tokens_raise_only_request_errors(
    raw: bytes,
    prefix: Prefix,
    claim_iss: bool,  # noqa: FBT001
) -> None:
    """A token re-signed by any other key, iss kept or switched, is refused."""
    key = KeyPair(prefix, raw)
    claims = request_claims(PLAIN_SERVER, issuer_account=ISSUER.public_key)
    if claim_iss:
        claims["iss"] = key.public_key
    token = _sign_raw(go_json(claims), key)

    result = _decode_or_request_error(token)

    assert isinstance(result, RequestError)


@FUZZ
@given(
    segment=st.integers(min_value=0, max_value=2),
    padding=st.text(alphabet="=", min_size=1, max_size=3),
)
def test_repadded_tokens_raise_only_request_errors(segment: int, padding: str) -> None:
    """Adding '=' padding to any segment is refused, signature valid or not."""
    parts = PLAIN_TOKEN.split(b".")
    parts[segment] += padding.encode()
    token = b".".join(parts)
    if segment < 2:  # keep the signature valid over the padded input
        token = token.rsplit(b".", 1)[0]
        token += b"." + b64encode(PLAIN_SERVER.key.sign(token)).encode()

    result = _decode_or_request_error(token)

    assert isinstance(result, RequestError)


@FUZZ
@given(
    index=st.integers(min_value=0, max_value=len(PLAIN_TOKEN) - 1),
    xor=st.integers(min_value=1, max_value=255),
)
def test_mutated_tokens_raise_only_request_errors(index: int, xor: int) -> None:
    """
    Changing any one byte of a valid token is refused with a RequestError.

    The one exception is a change to the unused low bits of a segment's last
    base64 character: the decoded bytes are the same token (Go ignores those
    bits too), so it must still decode.
    """
    mutated = bytearray(PLAIN_TOKEN)
    mutated[index] ^= xor

    result = _decode_or_request_error(bytes(mutated))

    if isinstance(result, AuthRequest):
        assert _segments(PLAIN_TOKEN) == _segments(bytes(mutated))
    else:
        assert isinstance(result, RequestError)


@FUZZ
@given(
    index=st.integers(min_value=0, max_value=len(SEALED_BODY) - 1),
    xor=st.integers(min_value=1, max_value=255),
)
def test_mutated_sealed_requests_raise_only_request_errors(
    index: int, xor: int
) -> None:
    """Changing any one byte of a sealed request is refused with a RequestError."""
    mutated = bytearray(SEALED_BODY)
    mutated[index] ^= xor

    result = _decode_or_request_error(bytes(mutated), SEALED_HEADERS, SERVICE_XKEY)

    assert isinstance(result, RequestError)


@FUZZ
@given(value=json_values)
def test_signed_random_json_raises_only_request_errors(value: object) -> None:
    """Any JSON value, validly signed by a server key, is refused cleanly."""
    result = _decode_or_request_error(_sign_raw(go_json(value), PLAIN_SERVER.key))

    assert isinstance(result, RequestError)


@FUZZ
@given(
    path=st.sampled_from(CLAIM_PATHS),
    value=json_values,
    delete=st.booleans(),
    sealed=st.booleans(),
)
def test_signed_requests_with_a_random_field_decode_or_raise_request_errors(
    path: tuple[str, ...],
    value: object,
    delete: bool,  # noqa: FBT001
    sealed: bool,  # noqa: FBT001
) -> None:
    """A valid request with one field replaced or removed decodes or is refused."""
    server = SEALED_SERVER if sealed else PLAIN_SERVER
    claims = request_claims(server, issuer_account=ISSUER.public_key)
    parent: Any = claims
    for key in path[:-1]:
        parent = parent.setdefault(key, {})
    if delete:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    token = _sign_raw(go_json(claims), server.key)
    if sealed:
        payload = SEALED_XKEY.seal(token, SERVICE_XKEY.public_key)
        result = _decode_or_request_error(payload, SEALED_HEADERS, SERVICE_XKEY)
    else:
        result = _decode_or_request_error(token)

    assert isinstance(result, (AuthRequest, RequestError))


# --- encode/decode round trips ------------------------------------------------------


@ROUND_TRIP
@given(claims=user_claims)
def test_user_claims_round_trip_through_encode_and_decode(claims: UserClaims) -> None:
    """decode_jwt(encode_user_jwt(claims)) gives back every field (tags lowered)."""
    token = encode_user_jwt(claims, ISSUER, now=NOW)

    payload = decode_jwt(token, Prefix.ACCOUNT)

    assert ISSUER.public_key == payload["iss"]
    assert NOW == payload["iat"]
    assert replace(claims, tags=tuple(t.lower() for t in claims.tags)) == (
        _user_claims_from_payload(payload)
    )


@ROUND_TRIP
@given(value=json_values)
def test_go_json_parses_back_to_the_same_value(value: object) -> None:
    """json.loads(go_json(v)) == v, with no raw < > & U+2028 U+2029 in the output."""
    encoded = go_json(value)

    assert value == json.loads(encoded)
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw.encode() not in encoded


@ROUND_TRIP
@given(text=st.text())
def test_go_json_of_text_is_plain_json_with_five_escapes(text: str) -> None:
    """go_json equals json.dumps(ensure_ascii=False) plus Go's five HTML escapes."""
    expected = (
        json.dumps(text, ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )

    assert expected.encode() == go_json(text)
