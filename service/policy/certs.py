"""
`certificates:` - TLS client certificates as identities.

Only the leaf of the first chain nats-server *verified*
(`client_tls.verified_chains[0][0]`) is ever read: `client_tls.certs` is what
the client presented, unverified, and is sent exactly when there is no
verified chain (docs/protocol.md §2.5), so it proves nothing. The leaf is matched
by subject CN, a SAN (DNS name, email, URI such as a SPIFFE ID) or the
SHA-256 fingerprint of its DER; the first entry in file order wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, BeforeValidator, Field, ValidationInfo, model_validator

from service.policy.fields import CONFIG, Grantee, fail, refs, unique
from service.policy.subjects import Name  # noqa: TC001 - pydantic needs it at runtime

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from service.policy.principal import Principal

KINDS = ("cn", "san_dns", "san_email", "san_uri", "sha256")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def fingerprint(value: object) -> str:
    """A SHA-256 fingerprint as lower-case hex, from `AB:CD:…` or plain hex."""
    text = value.replace(":", "").lower() if isinstance(value, str) else ""
    if _HEX64.fullmatch(text) is None:
        fail("bad_fingerprint", "a SHA-256 fingerprint: 64 hex digits, ':' allowed")
    return text


def normalize(kind: str, value: str) -> str:
    """The form both sides are compared in: DNS names are case-insensitive."""
    return value.lower().rstrip(".") if kind == "san_dns" else value


Text = Annotated[str, Field(min_length=1, max_length=1024)]


class CertificateMatch(BaseModel):
    """Exactly one property of the verified leaf certificate."""

    model_config = CONFIG
    cn: Text | None = None
    san_dns: Text | None = None
    san_email: Text | None = None
    san_uri: Text | None = None
    sha256: (
        Annotated[str, BeforeValidator(fingerprint, json_schema_input_type=str)] | None
    ) = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if sum(getattr(self, k) is not None for k in KINDS) != 1:
            fail("match", f"match exactly one of: {', '.join(KINDS)}")
        return self

    def key(self) -> tuple[str, str]:
        """(kind, normalized value)."""
        kind = next(k for k in KINDS if getattr(self, k) is not None)
        return kind, normalize(kind, getattr(self, kind))


class Certificate(Grantee):
    """A client certificate entry: its match, then roles etc. as for users."""

    name: Annotated[Name, unique("name", "duplicate name {!r}")]
    match: CertificateMatch

    @model_validator(mode="after")
    def _unique_match(self, info: ValidationInfo) -> Self:
        if (found := refs(info)) is not None:
            seen = found.seen.setdefault("certificate", set())
            kind, value = self.match.key()
            if f"{kind}={value}" in seen:
                fail("duplicate", f"another certificate entry matches {kind} {value!r}")
            seen.add(f"{kind}={value}")
        return self


@dataclass(frozen=True, slots=True)
class Leaf:
    """What a verified leaf certificate can be matched by."""

    subject: str
    values: tuple[tuple[str, str], ...]
    not_after: int


def read_leaf(pem: str) -> Leaf | None:
    """The matchable properties of a PEM certificate; None when unreadable."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        values = [
            ("cn", str(a.value))
            for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            pass
        else:
            for kind, general in (
                ("san_dns", x509.DNSName),
                ("san_email", x509.RFC822Name),
                ("san_uri", x509.UniformResourceIdentifier),
            ):
                values += [(kind, v) for v in san.value.get_values_for_type(general)]
        values.append(("sha256", cert.fingerprint(hashes.SHA256()).hex()))
        subject = cert.subject.rfc4514_string()
        not_after = int(cert.not_valid_after_utc.timestamp())
    except (ValueError, TypeError, UnicodeError):
        # cryptography raises ValueError for bad PEM/DER and bad extensions.
        return None
    return Leaf(
        subject=subject,
        values=tuple((k, normalize(k, v)) for k, v in values),
        not_after=not_after,
    )


@dataclass(frozen=True, slots=True)
class CertificateIndex:
    """The compiled entries: (kind, value) -> (file position, principal)."""

    entries: Mapping[tuple[str, str], tuple[int, Principal]]

    @classmethod
    def build(cls, items: Iterable[tuple[tuple[str, str], Principal]]) -> Self:
        """From (match key, principal) pairs in file order."""
        return cls({key: (n, p) for n, (key, p) in enumerate(items)})

    def find(self, leaf: Leaf) -> Principal | None:
        """The first entry in file order that matches any of the leaf's values."""
        hits = [self.entries[v] for v in leaf.values if v in self.entries]
        return min(hits, key=lambda hit: hit[0])[1] if hits else None
