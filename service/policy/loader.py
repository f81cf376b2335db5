"""
Policy file -> Policy: YAML with line numbers, every problem at once.

ruamel's round-trip loader keeps the line of every key and list item;
`_line()` walks each pydantic error's `loc` through the YAML nodes to it.
Messages are our fixed texts: pydantic's `input` is not read, ruamel's
snippets are not used, and neither exception is chained, so a plaintext
secret in the file cannot reach an error. The valid document is compiled
(grants rendered, lookup tables built) so `evaluate()` only looks things up.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import secrets
import warnings
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, cast

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from service.errors import PolicyError
from service.policy.model import (
    Account,
    Grantee,
    PolicyDocument,
    Role,
    validate_document,
)
from service.policy.subjects import Grant, Rules, merge_rules, render

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from pydantic_core import ErrorDetails

Identity = Literal["password", "token", "nkey", "anonymous"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_DUPLICATE_KEY = re.compile(r'found duplicate key "([^"]*)" with value')
# Fixed texts for pydantic's own error types; other messages pass through.
_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "tuple_type": "expected a list",
    "string_type": "expected a string",
}


@dataclass(frozen=True, slots=True)
class Principal:
    """
    A user (or the anonymous client), compiled for evaluation.

    Attributes:
        credential: The bcrypt hash, or the public nkey; "" for anonymous.
        grant: Rendered at load time; None when it depends on the connection
            (anonymous `{{user}}`) or a template value was unsafe.
        expires: Lifetime of the user JWT in seconds, 0 for none.
    """

    name: str
    identity: Identity
    credential: str
    account: str
    expires: int
    rules: Rules
    grant: Grant | None
    connection_types: tuple[str, ...]
    source_networks: tuple[str, ...]
    networks: tuple[Network, ...]


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

    @property
    def accounts(self) -> Mapping[str, Account]:
        """The declared accounts, by name."""
        return self.document.accounts

    @property
    def roles(self) -> Mapping[str, Role]:
        """The declared roles, by name."""
        return self.document.roles


def load_policy(path: Path) -> Policy:
    """
    Read, validate and compile a policy file.

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
    return _parse(text, source=str(path), digest=hashlib.sha256(data).hexdigest())


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    """
    Validate and compile policy YAML given as text.

    Args:
        text: The YAML document.
        source: The name used in error messages.

    Raises:
        PolicyError: One `source:line: where: message` per problem.
    """
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return _parse(text, source=source, digest=digest)


def _parse(text: str, *, source: str, digest: str) -> Policy:
    try:
        with warnings.catch_warnings():
            # ruamel's warnings (a reused anchor, ...) print a snippet of the
            # document, which may hold a secret; the document is legal anyway.
            warnings.simplefilter("ignore")
            root: object = YAML(typ="rt").load(text)
    except YAMLError as exc:
        raise PolicyError([f"{source}:{_yaml_problem(exc, text)}"]) from None
    except RecursionError:
        raise PolicyError([f"{source}:1: YAML nested too deeply"]) from None
    if root is None:
        raise PolicyError([f"{source}:1: the policy is empty"])
    try:
        document = validate_document(root)
    except ValidationError as exc:
        found = sorted(
            (_line(root, err["loc"]), n, _where(err["loc"]), _message(err))
            for n, err in enumerate(exc.errors(include_url=False, include_input=False))
        )
        problems = [
            f"{source}:{line}: {where}: {message}"
            if where
            else f"{source}:{line}: {message}"
            for line, _, where, message in found
        ]
        raise PolicyError(problems) from None
    return _compile(document, source=source, version_hash=f"sha256:{digest}")


def _yaml_problem(exc: YAMLError, text: str) -> str:
    if isinstance(exc, ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return f"{line}: invalid YAML: non-printable character"
    mark = None
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    if isinstance(exc, DuplicateKeyError):
        # ruamel's text quotes both values: they may be secrets.
        key = _DUPLICATE_KEY.search(str(exc.problem))
        return f"{line}: duplicate key {key[1]!r}" if key else f"{line}: duplicate key"
    if isinstance(exc, MarkedYAMLError):
        return f"{line}: invalid YAML: {exc.problem or exc.context}"
    return f"{line}: invalid YAML"


def _line(root: object, loc: tuple[int | str, ...]) -> int:
    """The 1-based line of the deepest YAML node `loc` reaches."""
    node, line = root, 0
    for part in loc:
        try:
            if isinstance(node, CommentedMap) and part in node:
                line = cast("int", node.lc.key(part)[0])
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int):
                line = cast("int", node.lc.item(part)[0])
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError):
            # Keys that came in through a merge (<<) have no line of their own.
            break
    return line + 1


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _message(err: ErrorDetails) -> str:
    text = _MESSAGES.get(err["type"], err["msg"])
    return text[:1].lower() + text[1:]


def _compile(document: PolicyDocument, *, source: str, version_hash: str) -> Policy:
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
    )


def _principal(
    document: PolicyDocument,
    grantee: Grantee,
    *,
    name: str,
    identity: Identity,
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
        networks=tuple(ipaddress.ip_network(n) for n in grantee.source_networks),
    )


_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _decoy(hashed: str) -> str:
    # Not a real user's hash: a real one would match that user's password, and
    # the verification cache would then make repeats fast - a password oracle
    # that needs no user name. bcrypt hashes with the salt (first 29 chars) and
    # compares the checksum, so a random checksum costs the same and never matches.
    return hashed[:29] + "".join(secrets.choice(_BCRYPT_ALPHABET) for _ in range(31))
