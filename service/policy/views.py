"""`describe()`: a decision as the JSON that `explain` prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.policy.evaluate import Allow, Deny

if TYPE_CHECKING:
    from service.policy.evaluate import Decision
    from service.policy.subjects import Grant
    from service.protocol.claims import Permission

# the grant's lists, by the names policy/macros.py gives them
_LISTS = {"pub": "publish", "sub": "subscribe", "sub_deny": "subscribe_deny"}


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
        password, token and nkey decisions keep their shape; `macros`
        when permission macros granted something (`macros_view`); and
        `max_connections` when the principal has a cap.
    """
    view = _view(decision)
    if decision.via is not None:
        view["via"] = decision.via
    if isinstance(decision, Allow) and decision.max_connections:
        view["max_connections"] = decision.max_connections
    if isinstance(decision, Allow) and decision.grant.macros:
        view["macros"] = macros_view(decision.grant)
    return view


def macros_view(grant: Grant) -> dict[str, object]:
    """
    Which macro produced each subject of the grant, and what they cannot scope.

    Returns:
        `publish`, `subscribe`, `subscribe_deny`: subject -> the macros that
        produced it, for the subjects in the issued lists (an explicit deny
        may have removed some); `notes`: the client inbox prefix to set and
        what NATS cannot scope.
    """
    present = {
        "pub": set(grant.pub.allow),
        "sub": set(grant.sub.allow),
        "sub_deny": set(grant.sub.deny),
    }
    view: dict[str, object] = {}
    for kind, name in _LISTS.items():
        by_subject: dict[str, list[str]] = {}
        for entry_kind, subject, source in grant.macros:
            if entry_kind == kind and subject in present[kind]:
                by_subject.setdefault(subject, []).append(source)
        view[name] = by_subject
    view["notes"] = list(grant.notes)
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
