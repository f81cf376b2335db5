"""
A principal's rules: its roles' lists (in order), its own, and what its
permission macros expand to, merged into one `Rules` at load time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.policy.macros import combine, expand
from service.policy.subjects import Rules, make_rules
from service.protocol.claims import ResponsePermission

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from service.policy.fields import Grantee, Role


def merge_rules(sources: Sequence[Role | Grantee]) -> Rules:
    """
    Merge the roles' permission lists (in order) with the grantee's own.

    Args:
        sources: The roles, then the grantee itself, last. Its `responses`
            win; else the first role's that has one.
    """
    *roles, own = sources
    responses = own.responses or next((r.responses for r in roles if r.responses), None)
    # The macros' subjects follow the written ones (policy/macros.py).
    macros = combine(expand(source) for source in sources)
    return make_rules(
        pub_allow=(
            *(s for source in sources for s in source.publish.allow),
            *macros.subjects("pub"),
        ),
        pub_deny=(s for source in sources for s in source.publish.deny),
        sub_allow=(
            *(s for source in sources for s in source.subscribe.allow),
            *macros.subjects("sub"),
        ),
        sub_deny=(
            *(s for source in sources for s in source.subscribe.deny),
            *macros.subjects("sub_deny"),
        ),
        resp=None
        if responses is None
        else ResponsePermission(
            max=responses.max, ttl_seconds=float(responses.expires or 0)
        ),
        macros=macros.entries,
        notes=macros.notes,
    )


def connection_cap(own: int | None, roles: Iterable[Role]) -> int:
    """
    A principal's `max_connections`: its own, else the lowest of its roles'
    (a role that caps its holders is not lifted by another role); 0: none.
    """
    if own is not None:
        return own
    return min((r.max_connections for r in roles if r.max_connections), default=0)
