"""`describe()`: a decision as the JSON that `explain` prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.policy.evaluate import Allow, Deny

if TYPE_CHECKING:
    from service.policy.evaluate import Decision
    from service.protocol.claims import Permission


def _permission(
    permission: Permission, implied: tuple[str, ...] = ()
) -> dict[str, list[str]]:
    view = {"allow": list(permission.allow), "deny": list(permission.deny)}
    if implied:
        # which of the denies the service added (subjects.deeper_denies)
        view["implied_deny"] = list(implied)
    return view


def describe(decision: Decision) -> dict[str, object]:
    """
    A JSON-able view of a decision, as `explain` prints it.

    Returns:
        `decision`, `user`, `account`, `reason`, `identity`, `expires_at`,
        `permissions` (`pub`, `sub`, `resp`; None for a denial),
        `connection_types` and `source_networks`; and `via` (the identity
        provider or certificate subject) when there is one, so that views of
        password, token and nkey decisions keep their shape.
    """
    view = _view(decision)
    if decision.via is not None:
        view["via"] = decision.via
    return view


def _view(decision: Decision) -> dict[str, object]:
    match decision:
        case Allow(grant=grant):
            resp = grant.resp
            return {
                "decision": "allow",
                "user": decision.user,
                "account": decision.account,
                "reason": None,
                "identity": decision.identity,
                "expires_at": decision.expires_at,
                "permissions": {
                    "pub": _permission(grant.pub),
                    "sub": _permission(grant.sub, grant.implied_sub_deny),
                    "resp": None
                    if resp is None
                    else {"max": resp.max, "ttl_seconds": resp.ttl_seconds},
                },
                "connection_types": list(decision.connection_types),
                "source_networks": list(decision.source_networks),
            }
        case Deny():
            return {
                "decision": "deny",
                "user": decision.user,
                "account": None,
                "reason": decision.reason,
                "identity": None,
                "expires_at": None,
                "permissions": None,
                "connection_types": None,
                "source_networks": None,
            }
