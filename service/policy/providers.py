"""
`identity_providers:` - issuers whose signed JWTs (OIDC access tokens, Kubernetes
service account tokens, ...) are accepted as bearer credentials.

The model checks the shape; `compile_provider()` reads the key material (a
JWKS file or an HS256 secret file, relative to the policy file) and gets the
JWKS store, so that a missing or bad file fails the load, not a request.
Verification itself is tokens.py.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal, Self, get_args

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from service.errors import JwksError, ProviderProblem
from service.policy.fields import (
    CONFIG,
    DURATION_TEXT,
    AccountRef,
    Cidr,
    ConnectionType,
    Duration,
    MaxConnections,
    RoleRef,
    duration,
    fail,
    unique,
)
from service.policy.principal import networks
from service.policy.subjects import Name, rule

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from service.policy.fields import Role
    from service.policy.jwks import KeyStore
    from service.policy.principal import Network

AsymmetricAlgorithm = Literal[
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
]
Algorithm = Literal[AsymmetricAlgorithm, "HS256"]
ASYMMETRIC: tuple[str, ...] = get_args(AsymmetricAlgorithm)
MIN_HS256_SECRET = 32  # RFC 7518 §3.2: at least the hash size
MAX_WAIT = 1.5  # seconds; nats-server's whole budget is 2 s
_WAIT = re.compile(r"([0-9]{1,4})ms|([0-9]+(?:\.[0-9]+)?)s?")
_CLAIM_PATH = re.compile(r"[^\s\x00-\x1f\x7f]{1,256}")


def _claim_path_problem(value: str) -> str | None:
    if _CLAIM_PATH.fullmatch(value) is None:
        return "a claim name: 1-256 characters, no whitespace"
    return None


def _url_problem(value: str) -> str | None:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "jwks_url must be an http:// or https:// URL"
    if parts.username or parts.password:
        # It is logged; and a key set is public anyway.
        return "jwks_url must not carry credentials"
    return None


def _leeway(value: object) -> int:
    if value in ("0", "0s") or (type(value) is int and value == 0):
        return 0  # no skew allowed; `duration` wants more than zero
    return duration(value)


def _wait(value: object) -> float:
    seconds = -1.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _WAIT.fullmatch(value)):
        seconds = int(match[1]) / 1000 if match[1] else float(match[2])
    if not 0 < seconds <= MAX_WAIT:
        fail("bad_wait", f"a wait of more than 0 and at most {MAX_WAIT}s, e.g. 500ms")
    return seconds


def _sent_as(value: object) -> object:
    return (value,) if isinstance(value, str) else value


ClaimPath = Annotated[str, rule("bad_claim", _claim_path_problem)]
Text = Annotated[str, Field(min_length=1, max_length=1024)]
SentAs = Literal["token", "password"]


class IdentityProvider(BaseModel):
    """One issuer of bearer JWTs and how its claims map onto the policy."""

    model_config = CONFIG
    name: Annotated[Name, unique("name", "duplicate name {!r}")]
    issuer: Annotated[
        Text, unique("issuer", "another identity provider has issuer {!r}")
    ]
    audiences: Annotated[tuple[Text, ...], Field(min_length=1)]
    algorithms: Annotated[tuple[Algorithm, ...], Field(min_length=1)]
    jwks_url: Annotated[Text, rule("bad_url", _url_problem)] | None = None
    jwks_file: Text | None = None
    hs256_secret_file: Text | None = None
    leeway: Annotated[
        int,
        BeforeValidator(_leeway, json_schema_input_type=int | DURATION_TEXT),
        Field(le=300),
    ] = 30
    unknown_kid_wait: Annotated[
        float, BeforeValidator(_wait, json_schema_input_type=float | str)
    ] = 0.5
    user_claim: ClaimPath = "sub"
    roles_claim: ClaimPath | None = None
    role_map: dict[Text, RoleRef] = Field(default_factory=dict)
    roles: tuple[RoleRef, ...] = ()
    account_claim: ClaimPath | None = None
    account: AccountRef | None = None
    expires: Duration | None = None
    sent_as: Annotated[
        tuple[SentAs, ...],
        BeforeValidator(_sent_as, json_schema_input_type=SentAs | list[SentAs]),
        Field(min_length=1),
    ] = ("token",)
    connection_types: tuple[ConnectionType, ...] = ()
    source_networks: tuple[Cidr, ...] = ()
    # per user of this provider (`<provider>:<user>`), not for all of them
    max_connections: MaxConnections = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        hs256 = "HS256" in self.algorithms
        if hs256 != (self.hs256_secret_file is not None):
            fail("hs256", "HS256 needs hs256_secret_file, and the file needs HS256")
        sources = (self.jwks_url is not None) + (self.jwks_file is not None)
        if any(a in ASYMMETRIC for a in self.algorithms) != (sources == 1):
            fail("jwks", "give exactly one of jwks_url, jwks_file (for RS/PS/ES/EdDSA)")
        if (self.roles_claim is None) != (not self.role_map):
            fail("role_map", "roles_claim and role_map go together")
        if not self.roles and not self.role_map:
            fail("no_roles", "give roles, or roles_claim with role_map")
        if len(set(self.sent_as)) != len(self.sent_as):
            fail("sent_as", "sent_as lists token and/or password, each once")
        return self


@dataclass(frozen=True, slots=True)
class Provider:
    """An identity provider, compiled for verification."""

    name: str
    issuer: str
    audiences: frozenset[str]
    algorithms: frozenset[str]
    keys: KeyStore | None
    secret: bytes = field(repr=False)
    leeway: int
    wait: float
    user_claim: str
    roles_claim: str | None
    role_map: Mapping[str, str]
    roles: tuple[str, ...]
    role_specs: Mapping[str, Role]
    account_claim: str | None
    account: str
    accounts: frozenset[str]
    expires: int
    as_token: bool
    as_password: bool
    connection_types: tuple[str, ...]
    source_networks: tuple[str, ...]
    networks: tuple[Network, ...]
    max_connections: int | None = None  # own; else the mapped roles' lowest


def compile_provider(
    spec: IdentityProvider,
    index: int,
    *,
    base_dir: Path,
    roles: Mapping[str, Role],
    accounts: frozenset[str],
    default_account: str,
    default_expires: int,
) -> Provider:
    """
    Read the provider's key material and build its runtime form.

    `jwks` (HTTP fetches, a refresh thread) is imported here, at load time,
    so that importing the sans-IO core (`service.handler`) pulls in no IO.

    Raises:
        ProviderProblem: A key file is unreadable or unusable.
    """
    from service.policy.jwks import file_store, url_store  # noqa: PLC0415

    loc: tuple[int | str, ...] = ("identity_providers", index)
    secret = b""
    if spec.hs256_secret_file is not None:
        path = base_dir / spec.hs256_secret_file
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            message = f"cannot read {path}: {exc.strerror or exc}"
            raise ProviderProblem((*loc, "hs256_secret_file"), message) from None
        if len(secret) < MIN_HS256_SECRET:
            # Never quote it: it is the shared secret.
            message = f"the HS256 secret needs at least {MIN_HS256_SECRET} bytes"
            raise ProviderProblem((*loc, "hs256_secret_file"), message)
    keys = None
    if spec.jwks_url is not None:
        keys = url_store(spec.jwks_url)
    elif spec.jwks_file is not None:
        path = base_dir / spec.jwks_file
        try:
            keys = file_store(path)
        except OSError as exc:
            message = f"cannot read {path}: {exc.strerror or exc}"
            raise ProviderProblem((*loc, "jwks_file"), message) from None
        except JwksError as exc:
            raise ProviderProblem((*loc, "jwks_file"), f"{path}: {exc}") from None
    return Provider(
        name=spec.name,
        issuer=spec.issuer,
        audiences=frozenset(spec.audiences),
        algorithms=frozenset(spec.algorithms),
        keys=keys,
        secret=secret,
        leeway=spec.leeway,
        wait=spec.unknown_kid_wait,
        user_claim=spec.user_claim,
        roles_claim=spec.roles_claim,
        role_map=dict(spec.role_map),
        roles=spec.roles,
        role_specs=roles,
        account_claim=spec.account_claim,
        account=spec.account or default_account,
        accounts=accounts,
        expires=spec.expires or default_expires,
        as_token="token" in spec.sent_as,
        as_password="password" in spec.sent_as,
        connection_types=spec.connection_types,
        source_networks=spec.source_networks,
        networks=networks(spec.source_networks),
        max_connections=spec.max_connections,
    )
