"""
A pocket identity provider and certificate authority for the tests.

Signing keys (RSA, EC P-256, Ed25519) with their public JWKs, tokens minted
with PyJWT (and, for the attacks PyJWT refuses to make, by hand), a JWKS
HTTP server on loopback whose key sets can change under it, and a CA that
issues client certificates with `cryptography`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar, Self

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.types import (
        CertificateIssuerPrivateKeyTypes,
    )

ISSUER = "https://idp.test/realms/app"
AUDIENCE = "nats"

_ALGS = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}


@dataclass(frozen=True)
class SigningKey:
    """A private signing key, its `kid`, and its public JWK."""

    kid: str
    alg: str
    private: Any = field(repr=False)

    @classmethod
    def rsa(cls, kid: str) -> Self:
        return cls(kid, "RS256", rsa.generate_private_key(65537, 2048))

    @classmethod
    def ec(cls, kid: str) -> Self:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def ed25519(cls, kid: str) -> Self:
        return cls(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        public: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return public | {"kid": self.kid, "use": "sig"}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )


def jwks(*keys: SigningKey) -> dict[str, Any]:
    """A JWKS document with these keys' public halves."""
    return {"keys": [k.jwk() for k in keys]}


def claims(now: float | None = None, **extra: Any) -> dict[str, Any]:
    """Good claims for ISSUER/AUDIENCE, valid for 10 minutes, plus `extra`."""
    at = int(time.time() if now is None else now)
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": at,
        "nbf": at,
        "exp": at + 600,
    }
    return base | extra


def mint(key: SigningKey, payload: dict[str, Any], **header: Any) -> str:
    """A token signed by `key`, with its kid unless `header` says otherwise."""
    headers = {"kid": key.kid} | header
    return jwt.encode(payload, key.private, algorithm=key.alg, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"


def unsigned(payload: dict[str, Any], kid: str = "") -> str:
    """`alg: none` with an empty signature (RFC 7519 §6)."""
    header = {"alg": "none", "typ": "JWT"} | ({"kid": kid} if kid else {})
    return _compact(header, payload) + "."


def hs256(secret: bytes, payload: dict[str, Any], kid: str = "") -> str:
    """An HS256 token; with a public key as `secret`, the classic confusion."""
    header = {"alg": "HS256", "typ": "JWT"} | ({"kid": kid} if kid else {})
    signing_input = _compact(header, payload)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


class JwksServer:
    """Serves `/<name>.json` key sets on 127.0.0.1; sets can change any time."""

    def __init__(self) -> None:
        self.sets: dict[str, dict[str, Any]] = {}
        self.hits: dict[str, int] = {}
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            sets: ClassVar[dict[str, dict[str, Any]]] = outer.sets

            def do_GET(self) -> None:
                name = self.path.strip("/").removesuffix(".json")
                outer.hits[name] = outer.hits.get(name, 0) + 1
                time.sleep(outer.delay)
                document = outer.sets.get(name)
                body = json.dumps(document).encode()
                self.send_response(200 if document is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="jwks-server", daemon=True
        )
        self._thread.start()

    def url(self, name: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{name}.json"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class CA:
    """A throwaway certificate authority issuing TLS client/server certs."""

    def __init__(self, directory: Path, name: str = "Test CA") -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            _builder(subject, subject, self.key)
            .add_extension(
                x509.BasicConstraints(ca=True, path_length=None), critical=True
            )
            .sign(self.key, hashes.SHA256())
        )
        self.cert_file = self._write("ca.pem", self.cert)

    def _write(self, filename: str, cert: x509.Certificate) -> Path:
        path = self.directory / filename
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(
        self,
        filename: str,
        *,
        cn: str,
        dns: tuple[str, ...] = (),
        emails: tuple[str, ...] = (),
        uris: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        server: bool = False,
        signer: CertificateIssuerPrivateKeyTypes | None = None,
    ) -> tuple[Path, Path, x509.Certificate]:
        """Write `<filename>.pem` and `<filename>.key`; return both and the cert."""
        import ipaddress  # noqa: PLC0415 - only here

        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.RFC822Name(e) for e in emails]
        names += [x509.UniformResourceIdentifier(u) for u in uris]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        usage = (
            ExtendedKeyUsageOID.SERVER_AUTH
            if server
            else (ExtendedKeyUsageOID.CLIENT_AUTH)
        )
        builder = _builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]),
            self.cert.subject,
            key,
        ).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(names), critical=False
            )
        cert = builder.sign(signer or self.key, hashes.SHA256())
        key_path = self.directory / f"{filename}.key"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return self._write(f"{filename}.pem", cert), key_path, cert


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )


def pem(cert: x509.Certificate) -> str:
    """A certificate as the PEM text nats-server puts in `client_tls`."""
    return cert.public_bytes(serialization.Encoding.PEM).decode()
