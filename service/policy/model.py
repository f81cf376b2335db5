"""
The policy file's shape (docs/policy.md), as frozen pydantic v2 models.

Whole-document checks (known roles, declared accounts, duplicate identities)
are field validators reading a `References` context, so each problem keeps
its own location and line: validate with `validate_document()`. The shared
field types live in fields.py; the optional `identity_providers` and
`certificates` sections in providers.py and certs.py.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, BeforeValidator, Field, ValidationInfo, model_validator

from service.policy.certs import Certificate  # noqa: TC001 - pydantic needs it at runtime
from service.policy.fields import (
    BCRYPT_HINT,
    CONFIG,
    DEFAULT_CALLOUT,
    AccountKey,
    AccountRef,
    CalloutAccount,
    DeclaredAccount,
    Duration,
    Grantee,
    PublishRules,
    References,
    Responses,
    Role,
    Secret,
    SubscribeRules,
    UserKey,
    fail,
    refs,
    unique,
)
from service.policy.providers import IdentityProvider  # noqa: TC001 - as above
from service.policy.sessions import Sessions
from service.policy.subjects import Name  # noqa: TC001 - as above
from service.policy.throttle import Throttle

__all__ = [
    "BCRYPT_HINT",
    "DEFAULT_CALLOUT",
    "Account",
    "Anonymous",
    "CalloutAccount",
    "Defaults",
    "Grantee",
    "PolicyDocument",
    "PublishRules",
    "References",
    "Responses",
    "Role",
    "SubscribeRules",
    "User",
    "validate_document",
]


def _version(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value != 1:
        fail("bad_version", "unsupported policy version; this service reads version 1")
    return 1


class Account(BaseModel):
    """An account users may be placed in; the keys are for operator mode."""

    model_config = CONFIG
    public_key: AccountKey | None = None
    signing_key_file: Annotated[str, Field(min_length=1)] | None = None


class Defaults(BaseModel):
    """Where users go, and for how long, unless they say otherwise."""

    model_config = CONFIG
    account: AccountRef
    expires: Duration | None = None


class User(Grantee):
    """A named user with exactly one credential."""

    name: Annotated[Name, unique("name", "duplicate user name {!r}")]
    password: Secret | None = None
    # The message must not quote the value: it is a (hashed) secret.
    token: Annotated[Secret, unique("token", "duplicate token hash")] | None = None
    nkey: UserKey | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        given = ", ".join(k for k in ("password", "token", "nkey") if getattr(self, k))
        if given not in {"password", "token", "nkey"}:
            message = "a user needs exactly one of password, token, nkey (found: {})"
            fail("credentials", message.format(given or "none"))
        return self


class Anonymous(Grantee):
    """Clients that send no credentials; `{{user}}` is their connection's nkey."""


class PolicyDocument(BaseModel):
    """The whole policy file, version 1."""

    model_config = CONFIG
    version: Annotated[
        int, BeforeValidator(_version, json_schema_input_type=Literal[1])
    ]
    accounts: Annotated[
        dict[DeclaredAccount, Account],
        Field(min_length=1),
    ]
    defaults: Defaults
    roles: dict[Name, Role] = Field(default_factory=dict)
    users: tuple[User, ...] = ()
    anonymous: Anonymous | None = None
    identity_providers: tuple[IdentityProvider, ...] = ()
    certificates: tuple[Certificate, ...] = ()
    throttle: Throttle = Throttle()
    sessions: Sessions = Sessions()

    @model_validator(mode="after")
    def _references_checked(self, info: ValidationInfo) -> Self:
        # Without the context, unknown roles and duplicates would pass.
        if refs(info) is None:
            fail("no_context", "validate policies with validate_document()")
        return self


def validate_document(
    data: object, callout: CalloutAccount = DEFAULT_CALLOUT
) -> PolicyDocument:
    """
    Validate parsed YAML as a policy, with the whole-document checks.

    Args:
        callout: The callout account: never declared, never a placement.

    Raises:
        pydantic.ValidationError: One entry per problem, each with its `loc`.
    """
    context = References.from_raw(data, callout)
    return PolicyDocument.model_validate(data, context=context)
