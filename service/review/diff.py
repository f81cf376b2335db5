"""
What a policy change gives and takes away, principal by principal.

Every principal (users, anonymous, certificate entries, identity providers)
becomes a set of facts: its account, each allow and deny entry (rendered for
users, with templates for the others), reply permissions, expiry, connection
types, source networks and, for providers, each role a token can map to and
what that role allows. Comparing two policies compares those sets, and each
changed fact is a gain or a loss for the principal:

* an allow entry added, a deny removed, a longer expiry, one more connection
  type or network: a gain;
* the reverse, a new account, a principal removed, a changed credential: a
  loss (a client holding the old grant would have to reconnect).

An empty `connection_types` or `source_networks` list means "any"; going
from any to a list is a loss. No secret is shown: a credential change is
reported as such, never with its hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from service.policy import Policy
    from service.policy.fields import Role
    from service.policy.principal import Principal
    from service.policy.providers import Provider
    from service.policy.subjects import Rules

# A fact is (kind, value); kinds whose growth is a gain, the others a loss.
_GROWTH_IS_GAIN = {
    "publish allow",
    "subscribe allow",
    "connection type",
    "source network",
    "role",
    "role via claim",
    "account via claim",
}
_ANY = "any"


@dataclass(frozen=True, slots=True)
class Change:
    """One principal's gained and lost facts, as printable lines."""

    principal: str
    gained: tuple[str, ...]
    lost: tuple[str, ...]


def diff_policies(old: Policy, new: Policy) -> list[Change]:
    """Every principal whose facts differ, in a stable order."""
    before, after = principal_facts(old), principal_facts(new)
    changes = []
    for name in sorted(before.keys() | after.keys()):
        gained, lost = _compare(before.get(name), after.get(name))
        if gained or lost:
            changes.append(Change(name, tuple(gained), tuple(lost)))
    return changes


def _compare(
    old: frozenset[tuple[str, str]] | None, new: frozenset[tuple[str, str]] | None
) -> tuple[list[str], list[str]]:
    if old is None:
        return ["principal added", *_lines(new or frozenset())], []
    if new is None:
        return [], ["principal removed"]
    gained: list[str] = []
    lost: list[str] = []
    if {f for f in old if f[0] == "credential"} != {
        f for f in new if f[0] == "credential"
    }:
        lost.append("credential changed")
    # from "any" to a list: the list's entries narrow, they add nothing
    narrowed = {kind for kind, value in old - new if value == _ANY}
    for kind, value in sorted(new - old):
        if kind != "credential":
            gain = kind not in narrowed and _is_gain(kind, value, added=True)
            (gained if gain else lost).append(f"{kind} {value}")
    for kind, value in sorted(old - new):
        if kind != "credential":
            side = gained if _is_gain(kind, value, added=False) else lost
            side.append(f"no {kind} {value}")
    return gained, lost


def _is_gain(kind: str, value: str, *, added: bool) -> bool:
    if kind in ("expires", "credential", "account", "responses"):
        return False  # a different value: clients holding the old one differ
    if value == _ANY:  # "any" itself appearing is a widening
        return added
    return added == (kind in _GROWTH_IS_GAIN)


def _lines(facts: frozenset[tuple[str, str]]) -> list[str]:
    # a credential shows as its kind only: the digest is for comparing
    return [f"{kind} {value.partition(' #')[0]}" for kind, value in sorted(facts)]


def principal_facts(policy: Policy) -> dict[str, frozenset[tuple[str, str]]]:
    """Each principal's facts, keyed `user:NAME`, `certificate:NAME`, ..."""
    out: dict[str, frozenset[tuple[str, str]]] = {}
    for user in policy.users:
        out[f"user:{user.name}"] = _principal(user)
    if policy.anonymous is not None:
        out["anonymous"] = _principal(policy.anonymous)
    if policy.certificates is not None:
        for _, principal in policy.certificates.entries.values():
            out[f"certificate:{principal.name}"] = _principal(principal)
    for provider in policy.providers:
        out[f"provider:{provider.name}"] = _provider(provider)
    return out


def _principal(principal: Principal) -> frozenset[tuple[str, str]]:
    facts = {("account", principal.account), *_common(principal)}
    if principal.credential:
        digest = hashlib.sha256(principal.credential.encode()).hexdigest()[:12]
        facts.add(("credential", f"{principal.identity} #{digest}"))
    if principal.grant is not None:
        grant = principal.grant
        facts |= _entries("publish", grant.pub.allow, grant.pub.deny)
        facts |= _entries("subscribe", grant.sub.allow, grant.sub.deny)
        if grant.resp is not None:
            facts.add(("responses", _responses(grant.resp.max, grant.resp.ttl_seconds)))
    else:
        facts |= _rules(principal.rules)
    return frozenset(facts)


def _common(
    holder: Principal | Provider,
) -> set[tuple[str, str]]:
    facts = {("expires", f"{holder.expires}s" if holder.expires else "never")}
    facts |= {("connection type", t) for t in holder.connection_types or (_ANY,)}
    facts |= {("source network", n) for n in holder.source_networks or (_ANY,)}
    return facts


def _rules(rules: Rules) -> set[tuple[str, str]]:
    facts = _entries("publish", rules.pub_allow, rules.pub_deny)
    facts |= _entries("subscribe", rules.sub_allow, rules.sub_deny)
    if rules.resp is not None:
        facts.add(("responses", _responses(rules.resp.max, rules.resp.ttl_seconds)))
    return facts


def _entries(
    what: str, allow: Iterable[str], deny: Iterable[str]
) -> set[tuple[str, str]]:
    return {(f"{what} allow", s) for s in allow} | {(f"{what} deny", s) for s in deny}


def _responses(most: int, ttl: float) -> str:
    return f"max={most} ttl={ttl:g}s"


def _provider(provider: Provider) -> frozenset[tuple[str, str]]:
    facts = {("account", provider.account), *_common(provider)}
    facts |= {("account via claim", a) for a in provider.accounts - {provider.account}}
    facts |= {("role", r) for r in provider.roles}
    facts |= {("role via claim", f"{c} -> {r}") for c, r in provider.role_map.items()}
    for name in {*provider.roles, *provider.role_map.values()}:
        facts |= {
            (kind, f"{value} (role {name})")
            for kind, value in _role(provider.role_specs[name])
        }
    return frozenset(facts)


def _role(role: Role) -> set[tuple[str, str]]:
    facts = _entries("publish", role.publish.allow, role.publish.deny)
    facts |= _entries("subscribe", role.subscribe.allow, role.subscribe.deny)
    if role.responses is not None:
        ttl = float(role.responses.expires or 0)
        facts.add(("responses", _responses(role.responses.max, ttl)))
    return facts
