"""
Field types and validators shared by the policy models (model.py, and the
identity_providers / certificates sections in providers.py and certs.py).

Whole-document checks (known roles, declared accounts, duplicate names) are
field validators reading a `References` context, so each problem keeps its
own location and line. Messages are fixed texts that never quote a checked
secret, and `hide_input_in_errors` keeps even `str(ValidationError)` clean.
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
from service.policy.macros import Macros
from service.policy.subjects import (
    AccountName,
    PubSubject,
    SubSubject,
    rule,
    uses_claims,
)
from service.protocol.nkeys import Prefix, decode_public

CONFIG = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

BCRYPT_HINT = (
    "plaintext or malformed bcrypt hash; make one with `nats-auth-callout hash`"
)
# $2a$/$2b$/$2y$, a two-digit cost, then 22 chars of salt and 31 of hash.
_BCRYPT = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}")
_DURATION = re.compile(r"([0-9]{1,9})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def fail(kind: str, message: str) -> NoReturn:
    raise PydanticCustomError(kind, message)


def duration(value: object) -> int:
    seconds = -1
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
    else:
        fail("bad_duration", "bad duration: use seconds or 90s, 10m, 1h, 2d")
    if seconds <= 0:
        fail("bad_duration", "a duration must be more than zero")
    return seconds


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
        fail("bad_cidr", f"not a CIDR network: {exc}")
    return str(network)


@dataclass(frozen=True, slots=True)
class CalloutAccount:
    """
    The account nats-server publishes authorization requests in.

    Any user placed there could subscribe to `$SYS.REQ.USER.AUTH` and read
    every client's CONNECT, passwords included (in clear without xkey), so
    it is never a placement. Config mode knows it by name
    (`CALLOUT_AUTH_ACCOUNT`, as `auth_callout.account` in nats-server.conf),
    operator mode by public key (`CALLOUT_ISSUER_ACCOUNT`, else the issuer's
    own key). Empty fields: not known (nothing is refused for them).
    """

    name: str = ""
    public_key: str = ""
    setting: str = "CALLOUT_AUTH_ACCOUNT"

    def names_in(self, accounts: Mapping[object, object]) -> frozenset[str]:
        """The declared account names (unvalidated data) that are this account."""
        return frozenset(
            name
            for name, entry in accounts.items()
            if isinstance(name, str)
            and (
                (self.name and name == self.name)
                or (
                    self.public_key
                    and isinstance(entry, Mapping)
                    and entry.get("public_key") == self.public_key
                )
            )
        )


# The config-mode default of CALLOUT_AUTH_ACCOUNT: loading without saying
# which account is the callout's still refuses the usual one.
DEFAULT_CALLOUT = CalloutAccount(name="AUTH")
CALLOUT_PLACEMENT = (
    "{!r} is the callout account ({}): a user placed there can read every "
    "authorization request, client passwords included; it can never be a placement"
)


@dataclass
class References:
    """
    The document's declared names, and the identities seen so far (in order).

    `roles`/`accounts` are None when that section is there but not a mapping:
    its own error is enough, and references to it are not checked.
    `callout_names`: the declared accounts that are the callout account.
    """

    roles: frozenset[str] | None
    accounts: frozenset[str] | None
    claim_roles: frozenset[str] = frozenset()
    seen: dict[str, set[str]] = field(default_factory=dict)
    callout: CalloutAccount = DEFAULT_CALLOUT
    callout_names: frozenset[str] = frozenset()

    @classmethod
    def from_raw(
        cls, data: object, callout: CalloutAccount = DEFAULT_CALLOUT
    ) -> References:
        """Collect the declared role and account names from unvalidated data."""

        def keys(section: str) -> frozenset[str] | None:
            if not isinstance(data, Mapping):
                return None
            value = data.get(section, {})  # absent: nothing is declared
            if not isinstance(value, Mapping):
                return None
            return frozenset(k for k in value if isinstance(k, str))

        roles = data.get("roles") if isinstance(data, Mapping) else None
        claim_roles = frozenset(
            name
            for name, role in (roles.items() if isinstance(roles, Mapping) else ())
            if isinstance(name, str) and uses_claims(_strings(role))
        )
        accounts = data.get("accounts") if isinstance(data, Mapping) else None
        return cls(
            roles=keys("roles"),
            accounts=keys("accounts"),
            claim_roles=claim_roles,
            callout=callout,
            callout_names=callout.names_in(accounts)
            if isinstance(accounts, Mapping)
            else frozenset(),
        )


def _strings(value: object) -> list[str]:
    """Every string inside unvalidated YAML data (keys excluded)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return []


def refs(info: ValidationInfo) -> References | None:
    return info.context if isinstance(info.context, References) else None


def _declared(section: Literal["roles", "accounts"], message: str) -> AfterValidator:
    """A validator: the value must be a key of `section` (`message` has {!r})."""

    def check(value: str, info: ValidationInfo) -> str:
        names = getattr(refs(info), section, None)
        if names is not None and value not in names:
            fail(f"unknown_{section}", message.format(value))
        return value

    return AfterValidator(check)


def _not_callout(value: str, info: ValidationInfo) -> str:
    """Refuse the callout account: as a declared account and as every placement."""
    found = refs(info)
    if found is not None and value in found.callout_names:
        fail("callout_account", CALLOUT_PLACEMENT.format(value, found.callout.setting))
    return value


def unique(what: str, message: str) -> AfterValidator:
    """A validator: no two entries may have the same `what` (names: users,
    certificates and identity providers share one namespace)."""

    def check(value: str, info: ValidationInfo) -> str:
        if (found := refs(info)) is not None:
            seen = found.seen.setdefault(what, set())
            if value in seen:
                fail("duplicate", message.format(value))
            seen.add(value)
        return value

    return AfterValidator(check)


# For the published JSON Schema (docs/policy.schema.json): what a person may
# write, where a validator turns text into a value or checks a pattern.
DURATION_TEXT = Annotated[str, Field(pattern=r"^[0-9]{1,9}[smhd]$")]
Duration = Annotated[
    int, BeforeValidator(duration, json_schema_input_type=int | DURATION_TEXT)
]
AccountRef = Annotated[
    str,
    _declared("accounts", "account {!r} is not declared under accounts"),
    AfterValidator(_not_callout),
]
# A key of `accounts:` (the whitelist of placements).
DeclaredAccount = Annotated[AccountName, AfterValidator(_not_callout)]
Secret = Annotated[
    str,
    rule("bad_secret", _secret_problem),
    Field(json_schema_extra={"pattern": f"^{_BCRYPT.pattern}$"}),
]
AccountKey = Annotated[str, rule("bad_nkey", _key_problem(Prefix.ACCOUNT))]
UserKey = Annotated[
    str,
    rule("bad_nkey", _key_problem(Prefix.USER)),
    unique("nkey", "duplicate nkey {!r}"),
]
RoleRef = Annotated[
    str, _declared("roles", "unknown role {!r}; declare it under roles")
]


def _no_claims(value: str, info: ValidationInfo) -> str:
    found = refs(info)
    if found is not None and value in found.claim_roles:
        fail("claim_role", CLAIMS_ONLY_FOR_PROVIDERS.format(value))
    return value


CLAIMS_ONLY_FOR_PROVIDERS = (
    "role {!r} uses {{{{claim.…}}}} templates; only identity_providers can give it"
)
# Users, certificates and anonymous have no token claims to fill in.
GranteeRoleRef = Annotated[RoleRef, AfterValidator(_no_claims)]
Cidr = Annotated[str, AfterValidator(_cidr)]
ConnectionType = Literal[
    "STANDARD", "WEBSOCKET", "LEAFNODE", "LEAFNODE_WS", "MQTT", "MQTT_WS"
]
# Concurrent connections of one principal, cluster-wide (docs/operations.md
# "Connection caps"); None: no cap of its own.
MaxConnections = Annotated[int, Field(strict=True, ge=1, le=1_000_000)] | None


class PublishRules(BaseModel):
    """Publish allow/deny lists (no queue groups)."""

    model_config = CONFIG
    allow: tuple[PubSubject, ...] = ()
    deny: tuple[PubSubject, ...] = ()


class SubscribeRules(BaseModel):
    """Subscribe allow/deny lists; entries may be `"subject queue"`."""

    model_config = CONFIG
    allow: tuple[SubSubject, ...] = ()
    deny: tuple[SubSubject, ...] = ()


class Responses(BaseModel):
    """`allow_responses`: how many replies, for how long (None: server's 2m)."""

    model_config = CONFIG
    max: Annotated[int, Field(strict=True, ge=1)] = 1
    expires: Duration | None = None


class Role(Macros):
    """A named bundle of permissions (macros included)."""

    model_config = CONFIG
    publish: PublishRules = PublishRules()
    subscribe: SubscribeRules = SubscribeRules()
    responses: Responses | None = None
    max_connections: MaxConnections = None


class Grantee(Macros):
    """
    What users and anonymous clients share (macros included).

    Permissions are the union of the roles' lists (in `roles` order) and the
    own lists. `responses` is the own one, else the first role's that has one.
    Empty `connection_types`/`source_networks` mean "any". `max_connections`
    is the own one, else the lowest of the roles' (merging.connection_cap).
    """

    model_config = CONFIG
    roles: tuple[GranteeRoleRef, ...] = ()
    account: AccountRef | None = None
    expires: Duration | None = None
    publish: PublishRules = PublishRules()
    subscribe: SubscribeRules = SubscribeRules()
    responses: Responses | None = None
    connection_types: tuple[ConnectionType, ...] = ()
    source_networks: tuple[Cidr, ...] = ()
    max_connections: MaxConnections = None

    @model_validator(mode="after")
    def _no_claim_templates(self) -> Self:
        own = (*self.publish.allow, *self.publish.deny)
        if uses_claims((*own, *self.subscribe.allow, *self.subscribe.deny)):
            fail("claim_template", "{{claim.…}} templates are only for roles")
        return self
