"""
Policy file -> Policy: YAML with line numbers, every problem at once.

Problems are reported by yamlerrors.py as `file:line: where: message` with our
fixed texts, and neither pydantic's nor ruamel's exception is chained, so a
plaintext secret in the file cannot reach an error. The valid document is
compiled (grants rendered, lookup tables built, identity providers' key
files read) so `evaluate()` only looks things up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from service.errors import PolicyError, Problem, ProviderProblem
from service.policy.certs import CertificateIndex
from service.policy.fields import DEFAULT_CALLOUT, CalloutAccount
from service.policy.macros import trusts
from service.policy.merging import connection_cap, merge_rules
from service.policy.model import (
    Account,
    Grantee,
    PolicyDocument,
    Role,
    validate_document,
)
from service.policy.principal import Identity, Network, Principal, networks
from service.policy.providers import Provider, compile_provider
from service.policy.subjects import render
from service.policy.yamlerrors import (
    message,
    position_of,
    where,
    yaml_problem,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from service.policy.macros import Macros

__all__ = [
    "CalloutAccount",
    "Identity",
    "Network",
    "Policy",
    "Principal",
    "load_policy",
    "parse_policy",
]


@dataclass(frozen=True, slots=True)
class Policy:
    """
    A loaded, validated and compiled policy; immutable, swap it to reload.

    Attributes:
        version_hash: "sha256:" + hex digest of the file's bytes.
        users: Every user, in file order; `by_name` indexes them.
        source: Where it came from, as used in error messages.
        timing_hash: A decoy with the cost and salt of a policy password
            hash but a random checksum that no secret matches, checked for
            an unknown user so that a miss costs as much as a wrong password;
            "" when there are no password users.
        providers: The identity providers, in file order.
        certificates: The certificate entries; None when there are none.
        warnings: `file:line: where: warning` for what loads but hands out
            more than it seems (the account-trust macro levels); `check`
            prints them and `run` logs them.
    """

    document: PolicyDocument
    source: str
    version_hash: str
    users: tuple[Principal, ...]
    by_name: Mapping[str, Principal]
    nkeys: Mapping[str, Principal]
    token_users: tuple[Principal, ...]
    anonymous: Principal | None
    timing_hash: str
    providers: tuple[Provider, ...] = ()
    certificates: CertificateIndex | None = None
    warnings: tuple[str, ...] = ()

    @property
    def accounts(self) -> Mapping[str, Account]:
        """The declared accounts, by name."""
        return self.document.accounts

    @property
    def roles(self) -> Mapping[str, Role]:
        """The declared roles, by name."""
        return self.document.roles


def load_policy(path: Path, *, callout: CalloutAccount = DEFAULT_CALLOUT) -> Policy:
    """
    Read, validate and compile a policy file.

    Args:
        callout: The callout account, refused as a declared account and as
            every placement (default: config mode's `AUTH`).

    Raises:
        PolicyError: The file cannot be read or is not a valid policy; one
            `file:line: where: message` per problem.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PolicyError([f"{path}:{line}: not UTF-8 text"]) from None
    digest = hashlib.sha256(data).hexdigest()
    return _parse(
        text, source=str(path), digest=digest, base_dir=path.parent, callout=callout
    )


def parse_policy(
    text: str,
    *,
    source: str = "<policy>",
    base_dir: Path | None = None,
    callout: CalloutAccount = DEFAULT_CALLOUT,
) -> Policy:
    """
    Validate and compile policy YAML given as text.

    Args:
        text: The YAML document.
        source: The name used in error messages.
        base_dir: Where relative key file paths start (default: the
            working directory; `load_policy` uses the file's directory).
        callout: As for `load_policy`.

    Raises:
        PolicyError: One `source:line: where: message` per problem.
    """
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return _parse(
        text,
        source=source,
        digest=digest,
        base_dir=base_dir or Path(),
        callout=callout,
    )


def _parse(
    text: str, *, source: str, digest: str, base_dir: Path, callout: CalloutAccount
) -> Policy:
    try:
        with warnings.catch_warnings():
            # ruamel's warnings (a reused anchor, ...) print a snippet of the
            # document, which may hold a secret; the document is legal anyway.
            warnings.simplefilter("ignore")
            root: object = YAML(typ="rt").load(text)
    except YAMLError as exc:
        raise PolicyError([f"{source}:{yaml_problem(exc, text)}"]) from None
    except RecursionError:
        raise PolicyError([f"{source}:1: YAML nested too deeply"]) from None
    if root is None:
        raise PolicyError([f"{source}:1: the policy is empty"])
    try:
        document = validate_document(root, callout)
    except ValidationError as exc:
        found = sorted(
            (*position_of(root, err["loc"]), n, err)
            for n, err in enumerate(exc.errors(include_url=False, include_input=False))
        )
        problems = [
            Problem(source, line, column, err["type"], where(err["loc"]), message(err))
            for line, column, _, err in found
        ]
        raise PolicyError(problems) from None
    try:
        providers = tuple(
            compile_provider(
                spec,
                n,
                base_dir=base_dir,
                roles=document.roles,
                accounts=frozenset(document.accounts),
                default_account=document.defaults.account,
                default_expires=document.defaults.expires or 0,
            )
            for n, spec in enumerate(document.identity_providers)
        )
    except ProviderProblem as exc:
        line, column = position_of(root, exc.loc)
        problem = Problem(
            source, line, column, "provider_keys", where(exc.loc), exc.message
        )
        raise PolicyError([problem]) from None
    version_hash = f"sha256:{digest}"
    policy = _compile(
        document, source=source, version_hash=version_hash, providers=providers
    )
    warned = [
        f"{source}:{position_of(root, loc)[0]}: {where(loc)}: {text}"
        for loc, text in _trusts(document)
    ]
    return dataclasses.replace(policy, warnings=tuple(warned))


def _trusts(document: PolicyDocument) -> Iterator[tuple[tuple[int | str, ...], str]]:
    """Each account-trust macro level in the document, with its location."""
    entries: list[tuple[tuple[int | str, ...], Macros]] = [
        (("roles", name), role) for name, role in document.roles.items()
    ]
    entries += [(("users", n), user) for n, user in enumerate(document.users)]
    entries += [(("certificates", n), c) for n, c in enumerate(document.certificates)]
    if document.anonymous is not None:
        entries.append((("anonymous",), document.anonymous))
    for base, entry in entries:
        for loc, text in trusts(entry):
            yield (*base, *loc), text


def _compile(
    document: PolicyDocument,
    *,
    source: str,
    version_hash: str,
    providers: tuple[Provider, ...],
) -> Policy:
    users: dict[str, Principal] = {}
    for user in document.users:
        identity: Identity = (
            "password" if user.password else "token" if user.token else "nkey"
        )
        credential = user.password or user.token or user.nkey or ""
        users[user.name] = _principal(
            document, user, name=user.name, identity=identity, credential=credential
        )
    anonymous = None
    if document.anonymous is not None:
        anonymous = _principal(
            document, document.anonymous, name="anonymous", identity="anonymous"
        )
    by_kind = {
        kind: [p for p in users.values() if p.identity == kind]
        for kind in ("password", "token", "nkey")
    }
    certificates = CertificateIndex.build(
        (entry.match.key(), _principal(document, entry, name=entry.name))
        for entry in document.certificates
    )
    return Policy(
        document=document,
        source=source,
        version_hash=version_hash,
        users=tuple(users.values()),
        by_name=MappingProxyType(users),
        nkeys=MappingProxyType({p.credential: p for p in by_kind["nkey"]}),
        token_users=tuple(by_kind["token"]),
        anonymous=anonymous,
        timing_hash=_decoy(by_kind["password"][0].credential)
        if by_kind["password"]
        else "",
        providers=providers,
        certificates=certificates if certificates.entries else None,
    )


def _principal(
    document: PolicyDocument,
    grantee: Grantee,
    *,
    name: str,
    identity: Identity = "certificate",
    credential: str = "",
) -> Principal:
    rules = merge_rules([*(document.roles[r] for r in grantee.roles), grantee])
    account = grantee.account or document.defaults.account
    per_connection = identity == "anonymous" and rules.uses_user
    return Principal(
        name=name,
        identity=identity,
        credential=credential,
        account=account,
        expires=grantee.expires or document.defaults.expires or 0,
        rules=rules,
        grant=None if per_connection else render(rules, user=name, account=account),
        connection_types=grantee.connection_types,
        source_networks=grantee.source_networks,
        networks=networks(grantee.source_networks),
        max_connections=connection_cap(
            grantee.max_connections, (document.roles[r] for r in grantee.roles)
        ),
    )


_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _decoy(hashed: str) -> str:
    # Not a real user's hash: a real one would match that user's password, and
    # the verification cache would then make repeats fast - a password oracle
    # that needs no user name. bcrypt hashes with the salt (first 29 chars) and
    # compares the checksum, so a random checksum costs the same and never matches.
    return hashed[:29] + "".join(secrets.choice(_BCRYPT_ALPHABET) for _ in range(31))
