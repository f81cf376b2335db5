"""decode_request: every field mapped, and one test per check it makes."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest

from service.errors import (
    BadSignature,
    DecryptionFailed,
    EncryptionMismatch,
    ExpiredRequest,
    MalformedRequest,
    UntrustedServer,
)
from service.protocol.claims import (
    EXPECTED_AUDIENCE,
    SERVER_XKEY_HEADER,
    ClientTLS,
)
from service.protocol.jwt import (
    HEADER,
    MAX_TOKEN_SIZE,
    b64decode,
    b64encode,
    go_json,
)
from service.protocol.nkeys import KeyPair, Prefix, crc16
from service.protocol.request import decode_request
from service.protocol.xkeys import CurveKeyPair
from tests.factories import NOW, request_claims, sign_token
from tests.vectors import (
    CAPTURED_REQUEST,
    ISSUER_PUBLIC,
    USER_PUBLIC,
    USER_SEED,
    Env,
    assert_refused,
    resign,
)

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
    assert_refused(
        MalformedRequest, b"eyJ" + b"A" * (MAX_TOKEN_SIZE + 62), match="too large"
    )


def test_refuses_a_token_over_the_jwt_size_limit(env: Env) -> None:
    """A plain token over jwt.MaxTokenSize is MalformedRequest (decode_jwt)."""
    token = env.token()
    padded = token + b"A" * (MAX_TOKEN_SIZE + 1 - len(token))

    assert_refused(MalformedRequest, padded, match="exceeds")


@pytest.mark.parametrize("segments", [1, 2, 4])
def test_refuses_a_token_without_three_segments(env: Env, segments: int) -> None:
    """A JWT is exactly three dot-separated segments."""
    parts = env.token().split(b".")
    payload = b".".join((parts * 2)[:segments])

    assert_refused(MalformedRequest, payload, match="3 dot-separated segments")


@pytest.mark.parametrize("padding", [b"=", b"=="])
def test_refuses_a_padded_signature(env: Env, padding: bytes) -> None:
    """base64 '=' padding is refused (Go RawURLEncoding)."""
    assert_refused(MalformedRequest, env.token() + padding, match="base64url")


def test_refuses_a_padded_payload_segment(env: Env) -> None:
    """'=' padding in the payload segment is refused too, even if re-signed."""
    header, payload, _ = env.token().split(b".")
    signing_input = header + b"." + payload + b"=="
    token = (
        signing_input + b"." + b64encode(env.server.key.sign(signing_input)).encode()
    )

    assert_refused(MalformedRequest, token, match="base64url")


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

    assert_refused(
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

    assert_refused(MalformedRequest, token, match=match)


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

    assert_refused(MalformedRequest, token, match=match)


def test_refuses_a_v1_claim_with_top_level_type(env: Env) -> None:
    """A top-level "type" makes it a v1 claim: MalformedRequest."""
    claims = env.claims() | {"type": "authorization_request"}

    assert_refused(MalformedRequest, env.sign(claims), match="not a v2")


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

    assert_refused(MalformedRequest, env.sign(claims), match="not a v2")


@pytest.mark.parametrize("nats", [None, "x", [1]], ids=["missing", "string", "list"])
def test_refuses_a_missing_or_non_object_nats(env: Env, nats: object) -> None:
    """The nats claim must be an object."""
    claims = env.claims()
    if nats is None:
        del claims["nats"]
    else:
        claims["nats"] = nats

    assert_refused(MalformedRequest, env.sign(claims), match="not a v2")


def test_refuses_a_missing_issuer(env: Env) -> None:
    """No iss: UntrustedServer."""
    claims = env.claims()
    del claims["iss"]

    assert_refused(UntrustedServer, env.sign(claims), match="issuer is missing")


def test_refuses_an_issuer_that_is_not_a_server_key(env: Env) -> None:
    """A request signed by an account key (iss A…) is UntrustedServer."""
    account = KeyPair.create(Prefix.ACCOUNT)
    claims = env.claims()
    claims["iss"] = account.public_key
    claims["nats"]["server_id"]["id"] = account.public_key

    assert_refused(
        UntrustedServer, sign_token(claims, account), match="expected server"
    )


@pytest.mark.parametrize("issuer", [42, "", "NOTAKEY"], ids=["int", "empty", "junk"])
def test_refuses_an_issuer_that_is_not_a_key(env: Env, issuer: object) -> None:
    """iss that is no nkey text at all is UntrustedServer."""
    claims = env.claims() | {"iss": issuer}

    assert_refused(UntrustedServer, env.sign(claims))


def test_refuses_a_signature_by_another_server(env: Env) -> None:
    """Re-signed by a different server key, iss unchanged: BadSignature."""
    token = resign(env.token(), KeyPair.create(Prefix.SERVER))

    error = assert_refused(BadSignature, token, match="does not verify")

    assert error.server_id is None


def test_refuses_a_payload_changed_after_signing(env: Env) -> None:
    """Changing the payload but keeping the signature is BadSignature."""
    header, _, signature = env.token().split(b".")
    other = env.claims() | {"sub": KeyPair.create(Prefix.ACCOUNT).public_key}
    token = header + b"." + b64encode(go_json(other)).encode() + b"." + signature

    assert_refused(BadSignature, token)


def test_refuses_a_truncated_signature(env: Env) -> None:
    """A signature that decodes to fewer than 64 bytes is BadSignature."""
    assert_refused(BadSignature, env.token()[:-4])


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

    assert_refused(
        MalformedRequest, env.sign(claims), match="not an authorization_request"
    )


def test_refuses_a_server_id_other_than_the_issuer(env: Env) -> None:
    """server_id.id must equal iss: UntrustedServer, reporting the issuer."""
    claims = env.claims()
    claims["nats"]["server_id"]["id"] = KeyPair.create(Prefix.SERVER).public_key

    error = assert_refused(UntrustedServer, env.sign(claims), match="is not server id")

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

    assert_refused(MalformedRequest, env.sign(claims), match="server_id")


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

    error = assert_refused(UntrustedServer, env.sign(claims), match="audience")

    assert env.server.id == error.server_id
    assert EXPECTED_AUDIENCE != audience


@pytest.mark.parametrize("late", [1, 1.5, 3600])
def test_refuses_an_expired_request(env: Env, late: float) -> None:
    """A whole second past exp is ExpiredRequest (Go compares whole seconds)."""
    error = assert_refused(
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

    assert_refused(ExpiredRequest, env.sign(claims), match="not valid before")


@pytest.mark.parametrize(
    ("claim", "value"),
    [("exp", "soon"), ("exp", 1.5), ("exp", True), ("nbf", "0"), ("iat", None)],
)
def test_refuses_a_time_claim_that_is_not_an_integer(
    env: Env, claim: str, value: object
) -> None:
    """exp, nbf and iat must be integers (Go int64)."""
    claims = env.claims() | {claim: value}

    assert_refused(MalformedRequest, env.sign(claims), match=f"{claim} is not")


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

    assert_refused(MalformedRequest, env.sign(claims), match="user_nkey")


def test_refuses_a_user_nkey_that_is_not_a_string(env: Env) -> None:
    """user_nkey 7 is MalformedRequest."""
    claims = env.claims()
    claims["nats"]["user_nkey"] = 7

    assert_refused(MalformedRequest, env.sign(claims), match="user_nkey is not")


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

    assert_refused(MalformedRequest, env.sign(claims), match=f"{section}.{field}")


@pytest.mark.parametrize(
    "section", ["client_info", "connect_opts", "client_tls"], ids=str
)
def test_refuses_a_section_that_is_not_an_object(env: Env, section: str) -> None:
    """client_info, connect_opts and client_tls must be objects."""
    claims = env.claims()
    claims["nats"][section] = ["not", "an", "object"]

    assert_refused(MalformedRequest, env.sign(claims), match=section)


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
    assert_refused(MalformedRequest, env.token(client_tls=tls), match=match)


@pytest.mark.parametrize(
    "chains",
    [0, False, "", {}],
    ids=["zero", "false", "empty-str", "dict"],
)
def test_refuses_falsy_verified_chains_of_the_wrong_type(
    env: Env, chains: object
) -> None:
    """verified_chains 0/false/""/{} is refused like a truthy non-list (Go does too)."""
    assert_refused(MalformedRequest, env.token(client_tls={"verified_chains": chains}))


def _padded_key(prefix: Prefix) -> str:
    """A 56-char key text with a valid CRC whose base32 ends in '=' padding."""
    body = bytes([prefix]) + b"\x01" * 28
    return base64.b32encode(body + crc16(body).to_bytes(2, "little")).decode()


def test_refuses_a_padded_issuer_with_a_request_error(env: Env) -> None:
    """A padded iss key is refused with a RequestError, never another exception."""
    padded = _padded_key(Prefix.SERVER)
    claims = env.claims() | {"iss": padded}
    claims["nats"]["server_id"]["id"] = padded

    assert_refused(UntrustedServer, env.sign(claims))


def test_refuses_a_padded_user_nkey(env: Env) -> None:
    """A padded user_nkey (not a 32-byte key) is MalformedRequest."""
    assert_refused(
        MalformedRequest,
        env.token(user_nkey=_padded_key(Prefix.USER)),
        match="user_nkey",
    )


# --- decode_request: encryption checks ----------------------------------------------


def test_refuses_a_plain_request_when_an_xkey_is_configured(
    env: Env, service_xkey: CurveKeyPair
) -> None:
    """xkey configured but the body is a plain JWT: EncryptionMismatch."""
    assert_refused(
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

    assert_refused(EncryptionMismatch, payload, headers, match="no xkey")


def test_refuses_a_sealed_body_without_header_when_no_xkey_is_configured(
    xenv: Env, service_xkey: CurveKeyPair
) -> None:
    """An 'xkv1' body without the header, no xkey configured: EncryptionMismatch."""
    payload, _ = xenv.sealed(service_xkey)

    assert_refused(EncryptionMismatch, payload, None, match="no xkey")


def test_refuses_a_sealed_request_without_the_xkey_header(
    xenv: Env, service_xkey: CurveKeyPair
) -> None:
    """Sealed, xkey configured, but no Nats-Server-Xkey header: EncryptionMismatch."""
    payload, _ = xenv.sealed(service_xkey)

    assert_refused(
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

    assert_refused(
        DecryptionFailed, payload, headers, xkey=service_xkey, match="does not open"
    )


def test_refuses_a_header_xkey_that_is_not_a_curve_key(
    xenv: Env, service_xkey: CurveKeyPair
) -> None:
    """A Nats-Server-Xkey header that is not an X key: DecryptionFailed."""
    payload, _ = xenv.sealed(service_xkey)

    assert_refused(
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

    assert_refused(DecryptionFailed, tampered, headers, xkey=service_xkey)


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

    error = assert_refused(
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

    assert_refused(
        UntrustedServer,
        sealed,
        {SERVER_XKEY_HEADER: xenv.server.xkey.public_key},
        xkey=service_xkey,
    )
