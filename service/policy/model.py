"""
The policy file's shape (docs/design.md §5), as frozen pydantic v2 models.

Whole-document checks (known roles, declared accounts, duplicate identities)
are field validators reading a `References` context, so each problem keeps
its own location and line: validate with `validate_document()`. Messages are
fixed texts that never quote a checked secret, and `hide_input_in_errors`
keeps even `str(ValidationError)` clean.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal, NoReturn, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from service.errors import KeyFormatError
from service.keys import Prefix, decode_public
from service.policy.subjects import AccountName, Name, PubSubject, SubSubject, rule

_CONFIG = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

BCRYPT_HINT = (
    "plaintext or malformed bcrypt hash; make one with `nats-auth-callout hash`"
)
# $2a$/$2b$/$2y$, a two-digit cost, then 22 chars of salt and 31 of hash.
_BCRYPT = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}")
_DURATION = re.compile(r"([0-9]{1,9})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _fail(kind: str, message: str) -> NoReturn:
    raise PydanticCustomError(kind, message)


def _duration(value: object) -> int:
    seconds = -1
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
    else:
        _fail("bad_duration", "bad duration: use seconds or 90s, 10m, 1h, 2d")
    if seconds <= 0:
        _fail("bad_duration", "a duration must be more than zero")
    return seconds


def _version(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value != 1:
        _fail("bad_version", "unsupported policy version; this service reads version 1")
    return 1


def _secret_problem(value: str) -> str | None:
    match = _BCRYPT.fullmatch(value)
    if match is None or not 4 <= int(match[1]) <= 31:  # noqa: PLR2004 (bcrypt's cost range)
        return BCRYPT_HINT
    return None


def _key_problem(prefix: Prefix) -> Callable[[str], str | None]:
    def problem(value: str) -> str | None:
        if value.startswith("S"):
            # Never echo it: a seed is a private key.
            return "this looks like a seed; put only the public key here"
        try:
            decode_public(value, prefix)
        except KeyFormatError as exc:
            return f"not a valid {prefix.name.lower()} public nkey: {exc}"
        return None

    return problem


def _cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        _fail("bad_cidr", f"not a CIDR network: {exc}")
    return str(network)


@dataclass
class References:
    """
    The document's declared names, and the identities seen so far (in order).

    `roles`/`accounts` are None when that section is there but not a mapping:
    its own error is enough, and references to it are not checked.
    """

    roles: frozenset[str] | None
    accounts: frozenset[str] | None
    seen: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, data: object) -> References:
        """Collect the declared role and account names from unvalidated data."""

        def keys(section: str) -> frozenset[str] | None:
            if not isinstance(data, Mapping):
                return None
            value = data.get(section, {})  # absent: nothing is declared
            if not isinstance(value, Mapping):
                return None
            return frozenset(k for k in value if isinstance(k, str))

        return cls(roles=keys("roles"), accounts=keys("accounts"))


def _refs(info: ValidationInfo) -> References | None:
    return info.context if isinstance(info.context, References) else None


def _declared(section: Literal["roles", "accounts"], message: str) -> AfterValidator:
    """A validator: the value must be a key of `section` (`message` has {!r})."""

    def check(value: str, info: ValidationInfo) -> str:
        refs = _refs(info)
        names = getattr(refs, section, None)
        if names is not None and value not in names:
            _fail(f"unknown_{section}", message.format(value))
        return value

    return AfterValidator(check)


def _unique(what: str, message: str) -> AfterValidator:
    """A validator: no two users may have the same `what`."""

    def check(value: str, info: ValidationInfo) -> str:
        if (refs := _refs(info)) is not None:
            seen = refs.seen.setdefault(what, set())
            if value in seen:
                _fail("duplicate", message.format(value))
            seen.add(value)
        return value

    return AfterValidator(check)


Duration = Annotated[int, BeforeValidator(_duration)]
AccountRef = Annotated[
    str, _declared("accounts", "account {!r} is not declared under accounts")
]
Secret = Annotated[str, rule("bad_secret", _secret_problem)]
AccountKey = Annotated[str, rule("bad_nkey", _key_problem(Prefix.ACCOUNT))]
UserKey = Annotated[
    str,
    rule("bad_nkey", _key_problem(Prefix.USER)),
    _unique("nkey", "duplicate nkey {!r}"),
]
RoleRef = Annotated[
    str, _declared("roles", "unknown role {!r}; declare it under roles")
]
Cidr = Annotated[str, AfterValidator(_cidr)]
ConnectionType = Literal[
    "STANDARD", "WEBSOCKET", "LEAFNODE", "LEAFNODE_WS", "MQTT", "MQTT_WS"
]


class Account(BaseModel):
    """An account users may be placed in; the keys are for operator mode."""

    model_config = _CONFIG
    public_key: AccountKey | None = None
    signing_key_file: Annotated[str, Field(min_length=1)] | None = None


class Defaults(BaseModel):
    """Where users go, and for how long, unless they say otherwise."""

    model_config = _CONFIG
    account: AccountRef
    expires: Duration | None = None


class PublishRules(BaseModel):
    """Publish allow/deny lists (no queue groups)."""

    model_config = _CONFIG
    allow: tuple[PubSubject, ...] = ()
    deny: tuple[PubSubject, ...] = ()


class SubscribeRules(BaseModel):
    """Subscribe allow/deny lists; entries may be `"subject queue"`."""

    model_config = _CONFIG
    allow: tuple[SubSubject, ...] = ()
    deny: tuple[SubSubject, ...] = ()


class Responses(BaseModel):
    """`allow_responses`: how many replies, for how long (None: server's 2m)."""

    model_config = _CONFIG
    max: Annotated[int, Field(strict=True, ge=1)] = 1
    expires: Duration | None = None


class Role(BaseModel):
    """A named bundle of permissions."""

    model_config = _CONFIG
    publish: PublishRules = PublishRules()
    subscribe: SubscribeRules = SubscribeRules()
    responses: Responses | None = None


class Grantee(BaseModel):
    """
    What users and anonymous clients share.

    Permissions are the union of the roles' lists (in `roles` order) and the
    own lists. `responses` is the own one, else the first role's that has one.
    Empty `connection_types`/`source_networks` mean "any".
    """

    model_config = _CONFIG
    roles: tuple[RoleRef, ...] = ()
    account: AccountRef | None = None
    expires: Duration | None = None
    publish: PublishRules = PublishRules()
    subscribe: SubscribeRules = SubscribeRules()
    responses: Responses | None = None
    connection_types: tuple[ConnectionType, ...] = ()
    source_networks: tuple[Cidr, ...] = ()


class User(Grantee):
    """A named user with exactly one credential."""

    name: Annotated[Name, _unique("name", "duplicate user name {!r}")]
    password: Secret | None = None
    # The message must not quote the value: it is a (hashed) secret.
    token: Annotated[Secret, _unique("token", "duplicate token hash")] | None = None
    nkey: UserKey | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        given = ", ".join(k for k in ("password", "token", "nkey") if getattr(self, k))
        if given not in {"password", "token", "nkey"}:
            message = "a user needs exactly one of password, token, nkey (found: {})"
            _fail("credentials", message.format(given or "none"))
        return self


class Anonymous(Grantee):
    """Clients that send no credentials; `{{user}}` is their connection's nkey."""


class PolicyDocument(BaseModel):
    """The whole policy file, version 1."""

    model_config = _CONFIG
    version: Annotated[int, BeforeValidator(_version)]
    accounts: Annotated[
        dict[AccountName, Account],
        Field(min_length=1),
    ]
    defaults: Defaults
    roles: dict[Name, Role] = Field(default_factory=dict)
    users: tuple[User, ...] = ()
    anonymous: Anonymous | None = None

    @model_validator(mode="after")
    def _references_checked(self, info: ValidationInfo) -> Self:
        # Without the context, unknown roles and duplicates would pass.
        if _refs(info) is None:
            _fail("no_context", "validate policies with validate_document()")
        return self


def validate_document(data: object) -> PolicyDocument:
    """
    Validate parsed YAML as a policy, with the whole-document checks.

    Raises:
        pydantic.ValidationError: One entry per problem, each with its `loc`.
    """
    return PolicyDocument.model_validate(data, context=References.from_raw(data))
