"""
Live sessions, without IO: what the servers report about connections, and
which of them a policy change makes stale.

nats-server's CONNZ (`$SYS.REQ.SERVER.PING.CONNZ`, `auth: true`) reports a
callout user as `authorized_user` = the issued user JWT's `name`, which is
the principal's name (checked on nats-server 2.15.1: not the CONNECT user,
and CONNZ's `user` filter matches the same field). A connection is stale
when `diff.principal_facts` of its principal differ between the policy it
was admitted under and the new one, or the principal is gone: the same
comparison `nats-auth-callout diff` prints, so `diff` shows who a reload
will kick.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.policy.tokens import NAMESPACE_SEPARATOR
from service.review.diff import principal_facts

if TYPE_CHECKING:
    from service.policy import Policy
    from service.policy.principal import Principal


@dataclass(frozen=True, slots=True)
class Connection:
    """One client connection as a server reports it."""

    server_id: str
    cid: int
    account: str
    user: str
    kind: str = ""


@dataclass(frozen=True, slots=True)
class ConnzPage:
    """One server's CONNZ reply: its connections and whether more pages exist."""

    server_id: str
    connections: tuple[Connection, ...]
    offset: int
    total: int

    @property
    def next_offset(self) -> int | None:
        end = self.offset + len(self.connections)
        return end if self.connections and end < self.total else None


def parse_connz(payload: bytes) -> ConnzPage | None:
    """A CONNZ reply, or None when it is an error or not one."""
    try:
        reply = json.loads(payload)
        data = reply["data"]
        server_id = str(data["server_id"])
        conns = tuple(
            Connection(
                server_id=server_id,
                cid=int(c["cid"]),
                account=str(c.get("account", "")),
                # a JWT-less connection has no authorized_user
                user=str(c.get("authorized_user", "")),
                kind=str(c.get("type", "")),
            )
            for c in data.get("connections") or ()
        )
        return ConnzPage(
            server_id, conns, int(data.get("offset", 0)), int(data.get("total", 0))
        )
    except (ValueError, KeyError, TypeError):
        return None


def kick_answer(payload: bytes) -> str | None:
    """A KICK reply: None for success, else the server's error text."""
    try:
        error = json.loads(payload).get("error")
    except (ValueError, AttributeError):
        return "unreadable reply"
    if not error:
        return None
    return str(error.get("description", "error"))[:200]


def principal_key(policy: Policy, name: str) -> tuple[str, Principal] | None:
    """The `principal_facts` key of a connection's principal name, and it."""
    if (user := policy.by_name.get(name)) is not None:
        return f"user:{name}", user
    if policy.certificates is not None:
        for _, entry in policy.certificates.entries.values():
            if entry.name == name:
                return f"certificate:{name}", entry
    if name == "anonymous" and policy.anonymous is not None:
        return "anonymous", policy.anonymous
    return None  # identity-provider users: see accounts_of


def account_names(policy: Policy, name: str) -> set[str]:
    """An account as CONNZ may name it: its name, or its public key (operator)."""
    account = policy.accounts.get(name)
    key = account.public_key if account is not None else None
    return {name, key} if key else {name}


def stale(old: Policy, new: Policy) -> dict[str, str]:
    """Each principal name whose connections must go: `removed` or `changed`."""
    before, after = principal_facts(old), principal_facts(new)
    out: dict[str, str] = {}
    for key, facts in before.items():
        name = key.partition(":")[2] if ":" in key else key
        if key not in after:
            out[name] = "removed"
        elif after[key] != facts:
            out[name] = "changed"
    return out


def accounts_of(policy: Policy, name: str) -> set[str]:
    """The accounts a principal's connections can be in (CONNZ's names for them)."""
    provider_name, separator, _ = name.partition(NAMESPACE_SEPARATOR)
    if separator:  # an identity provider's user, `<provider>:<user claim>`
        provider = next((p for p in policy.providers if p.name == provider_name), None)
        if provider is None:
            return set()
        names = {provider.account, *provider.accounts}
        return {n for account in names for n in account_names(policy, account)}
    found = principal_key(policy, name)
    return account_names(policy, found[1].account) if found is not None else set()


def to_kick(
    connections: list[Connection], old: Policy, new: Policy
) -> list[tuple[Connection, str]]:
    """The connections a change from `old` to `new` makes stale, with the cause."""
    causes = stale(old, new)
    out = []
    for conn in connections:
        # a provider's user goes with its provider's facts (its roles, accounts)
        owner = conn.user.partition(NAMESPACE_SEPARATOR)[0]
        cause = causes.get(conn.user) or causes.get(owner)
        # only a connection in the principal's own account is one we issued:
        # a static user of the same name elsewhere is not the policy's
        if cause is None or conn.account not in accounts_of(old, conn.user):
            continue
        out.append((conn, cause))
    return out


def of_principal(
    connections: list[Connection], policy: Policy, name: str
) -> list[Connection]:
    """`name`'s connections in its own account (a revocation kicks these)."""
    accounts = accounts_of(policy, name)
    return [c for c in connections if c.user == name and c.account in accounts]


@dataclass(frozen=True, slots=True)
class Revocation:
    """`nats-auth-callout revoke`'s request, as the replicas receive it."""

    user: str
    reason: str
    until: float  # unix seconds; 0: until the policy changes

    def encode(self) -> bytes:
        return json.dumps(
            {"user": self.user, "reason": self.reason, "until": self.until}
        ).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Revocation | None:
        """The request, or None when it is not a well-formed one."""
        try:
            data = json.loads(payload)
            user, reason, until = data["user"], data.get("reason", ""), data["until"]
        except (ValueError, KeyError, TypeError):
            return None
        ok = (
            isinstance(user, str)
            and 0 < len(user) <= MAX_NAME
            and isinstance(reason, str)
            and isinstance(until, int | float)
            and until >= 0
        )
        return cls(user, reason[:MAX_REASON], float(until)) if ok else None


MAX_NAME = 256
MAX_REASON = 200


class Revocations:
    """
    Principals refused with `revoked` until a time, or until the policy in
    force changes (the caller clears them then). Read from the lanes'
    threads too: one dict lookup, replaced never mutated in place.
    """

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def add(self, revocation: Revocation) -> None:
        until = revocation.until or float("inf")
        self._until = self._until | {revocation.user: until}

    def refused(self, name: str, now: float) -> bool:
        return now < self._until.get(name, 0.0)

    def clear(self) -> None:
        self._until = {}

    def __len__(self) -> int:
        return len(self._until)
