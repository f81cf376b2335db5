"""
Policy test files: a YAML list of cases, each a login and what to expect.

```yaml
- name: john-doe keeps to his own subjects          # optional
  login: {user: john-doe, password: "env:JOHN_PW"}  # or token, nkey, cert,
                                                    # verified, provider + claims
  from: {host: 10.1.2.3, type: WEBSOCKET}            # optional
  expect:
    decision: allow
    account: APP
    can_publish: [users.john-doe.orders]
    cannot_subscribe: ["users.>"]
```

Secrets come from `env:NAME` or `file:PATH` (relative to the test file). An
inline value is allowed only when it is *not* the principal's secret (a
wrong password, to test a denial); the runner refuses a case whose inline
secret turns out to be the real one, so a test file can sit in a repository.
Problems are `file:line: where: message`, like the policy's, without
quoting any value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from service.errors import PolicyError
from service.policy.yamlerrors import line_of, message, where, yaml_problem
from service.protocol.enforcement import has_wildcard

if TYPE_CHECKING:
    from pathlib import Path

_CONFIG = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
ConnectionType = Literal["STANDARD", "WEBSOCKET", "MQTT", "LEAFNODE"]
Subject = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[^\s]+$")]
# a subscription may name a queue group after one space, as in the policy
SubscribeSubject = Annotated[
    str, Field(min_length=1, max_length=512, pattern=r"^[^\s]+( [^\s]+)?$")
]


class Login(BaseModel):
    """
    What the client sends. With `verified: true` the named user's own
    credential is taken as checked (a permissions case needs no secret).
    """

    model_config = _CONFIG

    user: str | None = Field(default=None, min_length=1, max_length=256)
    password: str | None = None
    token: str | None = None
    nkey: str | None = None
    cert: str | None = None
    verified: bool = False
    provider: str | None = None
    claims: dict[str, object] | None = None  # a provider's token, as verified

    @model_validator(mode="after")
    def _consistent(self) -> Login:
        if self.verified and (self.user is None or self.password or self.token):
            raise ValueError("verified: true takes a user and no password or token")
        if self.password is not None and self.user is None:
            raise ValueError("a password needs a user")
        if self.cert is not None and not self.cert.startswith("file:"):
            raise ValueError("cert is a PEM file: file:PATH")
        if (self.provider is None) != (self.claims is None):
            raise ValueError("provider and claims go together")
        if self.provider is not None and (self.user or self.password or self.token):
            raise ValueError("a provider login gives claims, not user/password/token")
        return self


class Source(BaseModel):
    """The connection's facts: the client's address and its transport."""

    model_config = _CONFIG

    host: str = "127.0.0.1"
    type: ConnectionType = "STANDARD"


class Expect(BaseModel):
    """What the decision must be; subject lists are checked on an allow."""

    model_config = _CONFIG

    decision: Literal["allow", "deny"]
    reason: str | None = None
    account: str | None = None
    user: str | None = None
    can_publish: tuple[Subject, ...] = ()
    cannot_publish: tuple[Subject, ...] = ()
    can_subscribe: tuple[SubscribeSubject, ...] = ()
    cannot_subscribe: tuple[SubscribeSubject, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Expect:
        if self.decision == "deny" and (
            self.account
            or self.can_publish
            or self.cannot_publish
            or self.can_subscribe
            or self.cannot_subscribe
        ):
            raise ValueError("a denial has no account or subjects to check")
        if self.decision == "allow" and self.reason is not None:
            raise ValueError("an allow has no reason")
        for subject in (*self.can_publish, *self.cannot_publish):
            if has_wildcard(subject):
                raise ValueError("publish subjects are literal (no * or >)")
        return self


class Case(BaseModel):
    """One login and its expected outcome."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, populate_by_name=True
    )

    name: str | None = Field(default=None, max_length=200)
    login: Login = Login()
    source: Source = Field(default=Source(), alias="from")
    expect: Expect


class CaseList(BaseModel):
    """A test file: a list of cases."""

    model_config = _CONFIG

    cases: tuple[Case, ...]


class SecretUnavailable(Exception):
    """A case's `env:`/`file:` secret cannot be read (the message names no value)."""


@dataclass(frozen=True, slots=True)
class LoadedCase:
    """A case with where it was written: `file:line` names it in reports."""

    case: Case
    source: str
    line: int
    base_dir: Path

    @property
    def title(self) -> str:
        return self.case.name or f"case at line {self.line}"


def load_cases(path: Path) -> list[LoadedCase]:
    """
    Read and validate a test file.

    Raises:
        PolicyError: Unreadable, not YAML, or not a list of valid cases;
            one `file:line: where: message` per problem.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([f"{path}: cannot read: {type(exc).__name__}"]) from None
    yaml = YAML(typ="rt")
    try:
        root = yaml.load(text)
    except YAMLError as exc:
        raise PolicyError([f"{path}:{yaml_problem(exc, text)}"]) from None
    if not isinstance(root, list):
        raise PolicyError([f"{path}:1: a test file is a list of cases"])
    try:
        parsed = CaseList.model_validate({"cases": root})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"][1:])
            problems.append(
                f"{path}:{line_of(root, loc)}: {where(loc)}: {message(err)}"
            )
        raise PolicyError(problems) from None
    return [
        LoadedCase(case, str(path), line_of(root, (index,)), path.parent)
        for index, case in enumerate(parsed.cases)
    ]


def resolve_secret(value: str, base_dir: Path) -> tuple[str, bool]:
    """
    The secret a case names, and whether it was written inline.

    Raises:
        SecretUnavailable: `env:NAME` unset or empty, `file:PATH` unreadable.
    """
    kind, _, rest = value.partition(":")
    if kind == "env":
        secret = os.environ.get(rest, "")
        if not secret:
            raise SecretUnavailable(f"environment variable {rest} is not set")
        return secret, False
    if kind == "file":
        try:
            lines = (base_dir / rest).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            message = f"secret file {rest}: cannot read ({type(exc).__name__})"
            raise SecretUnavailable(message) from None
        if not lines or not lines[0]:
            raise SecretUnavailable(f"secret file {rest} is empty")
        return lines[0], False
    return value, True
