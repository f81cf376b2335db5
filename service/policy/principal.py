"""
Who a client was identified as: a `Principal`, ready for the checks and the
grant. Users and certificates are compiled at load time; a bearer token's
principal is built per request from its verified claims (tokens.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from service.policy.subjects import Grant, Rules

Identity = Literal["password", "token", "nkey", "jwt", "certificate", "anonymous"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Principal:
    """
    A user (or the anonymous client), compiled for evaluation.

    Attributes:
        credential: The bcrypt hash, or the public nkey; "" for the others.
        grant: Rendered at load time; None when it depends on the connection
            (anonymous `{{user}}`, token claims) or a template value was unsafe.
        expires: Lifetime of the user JWT in seconds, 0 for none.
        claims: `{{claim.PATH}}` values by PATH (bearer tokens only).
        not_after: Unix seconds when the credential itself expires (a
            token's `exp`, a certificate's notAfter); 0 for none. The user
            JWT never outlives it.
        via: What proved the identity, for logs: `jwt:<provider>` or
            `certificate:<subject DN>`; None for the policy's own credentials.
        max_connections: Its concurrent connections cluster-wide at most;
            0 for no cap (enforced by live sessions, not by `evaluate`).
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
    claims: Mapping[str, str] | None = None
    not_after: int = 0
    via: str | None = None
    max_connections: int = 0


def networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """Parsed `source_networks` (already validated by the model)."""
    return tuple(ipaddress.ip_network(n) for n in cidrs)
