"""The sans-IO handler: decode -> evaluate -> issue; aborts carry no reply."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from service.dispatch.logincache import LoginCache
from service.errors import BadSignature
from service.handler import handle
from service.policy import parse_policy
from service.protocol.claims import SERVER_XKEY_HEADER
from service.protocol.jwt import decode_jwt
from service.protocol.nkeys import KeyPair, Prefix, verify
from service.protocol.request import decode_request, read_request
from service.protocol.xkeys import CurveKeyPair
from tests.builders import handler_context, hash_secret
from tests.factories import (
    NOW,
    FakeServer,
    john_doe_policy,
    make_request,
    request_claims,
    sign_token,
)

ISSUER = KeyPair.create(Prefix.ACCOUNT)
PASSWORD = "john-doe-password"
POLICY = parse_policy(john_doe_policy(hash_secret(PASSWORD)))
CTX = handler_context(POLICY, ISSUER)
SERVER = FakeServer()


def _decode_reply(reply: bytes) -> dict[str, object]:
    return decode_jwt(reply, Prefix.ACCOUNT)


def test_allow_issues_a_user_jwt_for_the_request() -> None:
    """An allowed request gets a response with a user JWT bound to user_nkey."""
    body, headers = make_request(
        SERVER,
        issuer_account=ISSUER.public_key,
        connect_opts={"user": "john-doe", "pass": PASSWORD},
    )
    request = decode_request(body, headers, now=NOW)

    outcome = handle(body, headers, ctx=CTX, now=NOW)
    assert outcome.reply is not None
    response = _decode_reply(outcome.reply)
    nats = response["nats"]
    assert isinstance(nats, dict)
    user = decode_jwt(nats["jwt"], Prefix.ACCOUNT)

    assert outcome.decision == "allow"
    assert (outcome.user, outcome.account) == ("john-doe", "APP")
    assert response["sub"] == request.user_nkey == user["sub"]
    assert response["aud"] == SERVER.id
    assert user["aud"] == "APP"
    assert user["exp"] == NOW + 3600
    assert user["nats"]["pub"] == {"allow": ["users.john-doe.>"]}
    assert outcome.expires == NOW + 2


def test_deny_is_a_signed_error_response() -> None:
    """A wrong password gets a signed response carrying the reason, not a JWT."""
    body, headers = make_request(
        SERVER,
        issuer_account=ISSUER.public_key,
        connect_opts={"user": "john-doe", "pass": "wrong"},
    )

    outcome = handle(body, headers, ctx=CTX, now=NOW)
    assert outcome.reply is not None
    nats = _decode_reply(outcome.reply)["nats"]

    assert outcome.decision == "deny"
    assert outcome.reason == "bad_password"
    assert nats == {
        "error": "bad_password",
        "type": "authorization_response",
        "version": 2,
    }


def test_invalid_request_is_aborted_without_reply() -> None:
    """A request signed by a key other than its server id is aborted."""
    claims = request_claims(SERVER, issuer_account=ISSUER.public_key)
    forged = sign_token(claims, KeyPair.create(Prefix.SERVER))

    outcome = handle(forged, None, ctx=CTX, now=NOW)

    assert outcome.decision == "abort"
    assert outcome.reply is None
    assert outcome.reason == "bad_signature"


def test_sealed_request_gets_a_sealed_response() -> None:
    """With xkeys on both sides, the response is sealed to the server's xkey."""
    service_xkey = CurveKeyPair.create()
    server = FakeServer(xkey=CurveKeyPair.create())
    ctx = handler_context(POLICY, ISSUER, xkey=service_xkey)
    body, headers = make_request(
        server,
        issuer_account=ISSUER.public_key,
        service_xkey=service_xkey.public_key,
        connect_opts={"user": "john-doe", "pass": PASSWORD},
    )

    outcome = handle(body, headers, ctx=ctx, now=NOW)
    assert outcome.reply is not None
    assert server.xkey is not None
    opened = server.xkey.open(outcome.reply, service_xkey.public_key)

    assert outcome.decision == "allow"
    assert opened.startswith(b"eyJ")
    assert _decode_reply(opened)["aud"] == server.id


def test_expired_request_is_aborted() -> None:
    """A request past its exp (the server's deadline) gets no reply."""
    body, headers = make_request(
        SERVER,
        issuer_account=ISSUER.public_key,
        connect_opts={"user": "john-doe", "pass": PASSWORD},
    )

    outcome = handle(body, headers, ctx=CTX, now=NOW + 3)

    assert (outcome.decision, outcome.reason) == ("abort", "expired_request")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    connect_opts=st.dictionaries(
        st.sampled_from(["user", "pass", "auth_token", "nkey", "sig", "jwt", "name"]),
        json_values,
        max_size=5,
    ),
    client_info=st.dictionaries(
        st.sampled_from(["host", "type", "kind", "nonce", "user"]),
        json_values,
        max_size=4,
    ),
)
def test_hostile_request_fields_never_crash_and_never_allow(
    connect_opts: dict[str, object], client_info: dict[str, object]
) -> None:
    """Arbitrary signed request fields give deny or abort, never allow or a crash."""
    assume(connect_opts.get("pass") != PASSWORD)
    claims = request_claims(
        SERVER,
        issuer_account=ISSUER.public_key,
        connect_opts=connect_opts,
        client_info=client_info,
    )
    body = sign_token(claims, SERVER.key)

    outcome = handle(body, None, ctx=CTX, now=NOW)

    assert outcome.decision in {"deny", "abort"}


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=400), header=st.none() | st.text(max_size=60))
def test_random_bytes_are_aborted(payload: bytes, header: str | None) -> None:
    """Random bytes (with or without an xkey header) are always aborted."""
    headers = None if header is None else {SERVER_XKEY_HEADER: header}

    outcome = handle(payload, headers, ctx=CTX, now=NOW)

    assert outcome.decision == "abort"
    assert outcome.reply is None


class _Deferred(Exception):
    """What the fast lane's secret check raises on a cache miss (like Cold)."""


def _defer(hashed: str, secret: str) -> bool:
    raise _Deferred


def _genuine(password: str) -> bytes:
    body, _ = make_request(
        SERVER,
        issuer_account=ISSUER.public_key,
        connect_opts={"user": "john-doe", "pass": password},
    )
    return body


def _forged(password: str) -> bytes:
    claims = request_claims(
        SERVER,
        issuer_account=ISSUER.public_key,
        connect_opts={"user": "john-doe", "pass": password},
    )
    return sign_token(claims, KeyPair.create(Prefix.SERVER))


def test_late_verification_aborts_a_forged_request_of_a_cached_identity() -> None:
    """Verified after the decision, a forged request still gets no reply."""
    cache = LoginCache()
    ctx = handler_context(POLICY, ISSUER, check_secret=cache)
    body = _genuine(PASSWORD)
    assert handle(body, None, ctx=ctx, now=NOW).decision == "allow"  # now cached

    outcome = handle(_forged(PASSWORD), None, ctx=ctx, now=NOW, verify_late=True)

    assert (outcome.decision, outcome.reply) == ("abort", None)
    assert outcome.reason == "bad_signature"


def test_late_verification_defers_without_checking_the_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A decision that needs bcrypt leaves before the Ed25519 check; the
    verify-first attempt refuses a forged request before any secret check."""
    checked: list[str] = []
    real_verify = verify

    def counting(key: str, data: bytes, signature: bytes) -> bool:
        checked.append(key)
        return real_verify(key, data, signature)

    monkeypatch.setattr("service.protocol.jwt.verify", counting)
    ctx = handler_context(POLICY, ISSUER, check_secret=_defer)
    body = _genuine(PASSWORD)

    with pytest.raises(_Deferred):
        handle(body, None, ctx=ctx, now=NOW, verify_late=True)
    assert checked == []
    outcome = handle(_forged(PASSWORD), None, ctx=ctx, now=NOW)  # no _Deferred
    assert outcome.reason == "bad_signature"
    assert checked == [SERVER.id]


def test_read_request_reports_a_forgery_first_like_decode_request() -> None:
    """Forged and expired: both entry points say bad_signature, not expired."""
    forged = _forged(PASSWORD)
    later = NOW + 3600

    with pytest.raises(BadSignature):
        decode_request(forged, None, now=later)
    with pytest.raises(BadSignature):
        read_request(forged, None, now=later)
    request, signed = read_request(forged, None, now=NOW)
    assert request.connect_opts.user == "john-doe"
    with pytest.raises(BadSignature):
        signed.verify()
