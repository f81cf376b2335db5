"""Known-answer vectors and request builders shared by the protocol tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from service.errors import (
    BadSignature,
    DecryptionFailed,
    EncryptionMismatch,
    ExpiredRequest,
    MalformedRequest,
    RequestError,
    UntrustedServer,
)
from service.protocol.jwt import (
    HEADER,
    b64decode,
    b64encode,
    go_json,
)
from service.protocol.request import decode_request
from tests.factories import NOW, FakeServer, make_request, request_claims, sign_token

if TYPE_CHECKING:
    from service.protocol.nkeys import KeyPair
    from service.protocol.xkeys import CurveKeyPair

# docs/protocol.md §1.1 and §2.4
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

# docs/protocol.md §2.5: request captured from nats-server v2.15.1
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


def payload_of(token: str | bytes) -> bytes:
    """The raw JSON bytes of a JWT's payload segment."""
    raw = token.encode() if isinstance(token, str) else token
    return b64decode(raw.split(b".")[1])


def resign(token: bytes, key: KeyPair) -> bytes:
    """The same header and payload, signed by `key` (claims unchanged)."""
    signing_input = token.rsplit(b".", 1)[0]
    return signing_input + b"." + b64encode(key.sign(signing_input)).encode()


def assert_refused(
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
