"""
Self-checks for the misconfigurations that otherwise fail silently.

Two kinds, both sans-IO (the worker does the NATS requests and the logging):

* On the first request from each server (`FirstRequestChecks`): only a
  request shows how that server is configured. Its `sub` is the issuer the
  server expects (config mode: `auth_callout.issuer`; operator mode: the
  callout account); if that is not our issuer key, the server rejects every
  answer we send. A sealed request without our xkey, a plain one with it, or
  a seal that does not open, means the two sides disagree on the xkey: every
  request is aborted.
* After connecting (`connection_findings`): `$SYS.REQ.USER.INFO` on the
  service's own connection tells its account and permissions, and
  `$SYS.REQ.ACCOUNT.PING.CONNZ` who else is connected in that account.

What cannot be detected from here: static users listed in `auth_users` that
are not connected right now (only the server's config knows them), and the
issuer/xkey relation of a server that has not sent a request yet.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from service.errors import CalloutError, RequestError
from service.protocol.claims import AUTH_SUBJECT, SERVER_XKEY_HEADER
from service.protocol.jwt import b64decode
from service.protocol.request import decode_request

if TYPE_CHECKING:
    from collections.abc import Mapping

    from service.handler import HandlerContext, Outcome

_KEY_REASONS = frozenset({"encryption_mismatch", "decryption_failed"})
GLOBAL_ACCOUNT = "$G"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem to log: `event` at `level` with `fields`."""

    event: str
    level: Literal["error", "warning"]
    fields: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """
    The result of checking one server.

    Attributes:
        problem: A readiness reason code (`issuer_mismatch`,
            `xkey_mismatch`), or None when this server and we agree.
    """

    findings: tuple[Finding, ...] = ()
    problem: str | None = None


class FirstRequestChecks:
    """Remembers which servers were checked (bounded: server ids are new per start)."""

    def __init__(self, *, mode: str, issuer_account: str, limit: int = 256) -> None:
        self._mode = mode
        self._issuer_account = issuer_account
        self._limit = limit
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_seen(
        self, outcome: Outcome, payload: bytes, headers: Mapping[str, str] | None
    ) -> str | None:
        """The server's key if this outcome is its first checkable one, else None."""
        if outcome.decision == "abort" and outcome.reason not in _KEY_REASONS:
            return None
        # A sealed request we cannot open names its server only by its xkey,
        # which is new with each server start like the server id. An aborted
        # plain request is keyed by its claimed issuer: only to log once per
        # server; check() verifies before anything is reported.
        key = (
            outcome.server_id
            or (headers or {}).get(SERVER_XKEY_HEADER)
            or _claimed_issuer(payload)
            or "unknown server"
        )
        if key in self._seen:
            return None
        self._seen[key] = None
        while len(self._seen) > self._limit:
            self._seen.popitem(last=False)
        return key

    def check(
        self,
        payload: bytes,
        headers: Mapping[str, str] | None,
        outcome: Outcome,
        ctx: HandlerContext,
        now: float,
    ) -> Verdict:
        """Compare this server's configuration with ours (blocking: decodes)."""
        if outcome.reason in _KEY_REASONS:
            return _xkey_verdict(payload, headers, outcome, ctx, now)
        try:
            request = decode_request(payload, headers, now=now, xkey=ctx.xkey)
        except RequestError:
            return Verdict()  # it decoded a moment ago; expired since, most likely
        ours = self._issuer_account or ctx.issuer.public_key
        if request.account == ours:
            return Verdict()
        # Operator mode with a signing key as issuer and no CALLOUT_ISSUER_ACCOUNT
        # still works: the server accepts the account's signing keys.
        certain = self._mode == "config" or bool(self._issuer_account)
        fields: dict[str, object] = {
            "server_id": request.server.id,
            "server_name": request.server.name,
            "server_issuer": request.account,
            "our_issuer": ours,
            "hint": (
                "the server's auth_callout issuer is not the public key of "
                "CALLOUT_ISSUER_SEED: it will reject every answer"
                if self._mode == "config"
                else "the callout account is not CALLOUT_ISSUER_ACCOUNT (or the "
                "issuer's own key); unless CALLOUT_ISSUER_SEED is a signing key of "
                "that account, the server rejects every answer"
            ),
        }
        level: Literal["error", "warning"] = "error" if certain else "warning"
        return Verdict(
            (Finding("callout.issuer_mismatch", level, fields),),
            "issuer_mismatch" if certain else None,
        )


def _claimed_issuer(payload: bytes) -> str | None:
    parts = payload.split(b".")
    if len(parts) != 3:  # noqa: PLR2004 - header.payload.signature
        return None
    try:
        claims = json.loads(b64decode(parts[1]))
    except (CalloutError, ValueError):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


def _xkey_verdict(
    payload: bytes,
    headers: Mapping[str, str] | None,
    outcome: Outcome,
    ctx: HandlerContext,
    now: float,
) -> Verdict:
    server_id = outcome.server_id
    if ctx.xkey is None:
        hint = (
            "the server encrypts requests (its auth_callout has an xkey) but "
            "CALLOUT_XKEY_SEED is not set: every request is aborted"
        )
    elif outcome.reason == "decryption_failed":
        hint = (
            "the server seals requests for another xkey: set its auth_callout "
            f"xkey to {ctx.xkey.public_key}"
        )
    else:
        hint = (
            "CALLOUT_XKEY_SEED is set but the server sends plain requests: add "
            f"xkey: {ctx.xkey.public_key} to its auth_callout, or unset the seed"
        )
        # a plain request still verifies, which names the server for the log
        with contextlib.suppress(RequestError):
            server_id = decode_request(payload, headers, now=now).server.id
    fields = {
        "server_id": server_id,
        "server_xkey": (headers or {}).get(SERVER_XKEY_HEADER),
        "hint": hint,
    }
    return Verdict(
        (Finding("callout.xkey_mismatch", "error", fields),), "xkey_mismatch"
    )


def connection_findings(
    user_info: Mapping[str, Any],
    connz: Mapping[str, Any] | None,
    *,
    auth_account: str | None = None,
) -> list[Finding]:
    """
    Problems visible from the service's own connection.

    Args:
        user_info: The `data` of a `$SYS.REQ.USER.INFO` reply.
        connz: The `data` of a `$SYS.REQ.ACCOUNT.PING.CONNZ` reply with
            `auth: true` (None when it was not available).
        auth_account: Config mode: `CALLOUT_AUTH_ACCOUNT`, the name the
            policy is kept out of; None in operator mode (known by key).
    """
    out = []
    account = str(user_info.get("account", ""))
    own = str(user_info.get("user", ""))
    deny = (user_info.get("permissions") or {}).get("publish", {}).get("deny") or []
    if AUTH_SUBJECT not in deny:
        # The server denies publishing to the request subject to every user of
        # a callout account (auth.go), so its absence means we are elsewhere.
        out.append(
            Finding(
                "callout.not_in_callout_account",
                "error",
                {
                    "account": account,
                    "user": own,
                    "hint": "requests are published in the callout account "
                    "(auth_callout.account); the service's login must be there and "
                    "in auth_users, or it never receives a request",
                },
            )
        )
    elif auth_account is not None and account != auth_account:
        # The policy loader refuses placements in CALLOUT_AUTH_ACCOUNT; if
        # that names another account, the real one is not protected.
        out.append(
            Finding(
                "callout.auth_account_mismatch",
                "error",
                {
                    "account": account,
                    "setting": auth_account,
                    "hint": "the callout account is not CALLOUT_AUTH_ACCOUNT: set it "
                    "to this account's name, or policies may place users in the "
                    "account that receives every client's credentials",
                },
            )
        )
    if account == GLOBAL_ACCOUNT:
        out.append(
            Finding(
                "callout.global_account_used",
                "warning",
                {
                    "hint": "the callout account is $G, the default account: any "
                    "user that lands in $G can subscribe to the requests, which "
                    "carry client credentials; use a dedicated account",
                },
            )
        )
    others = sorted(
        {
            str(c.get("authorized_user", ""))
            for c in (connz or {}).get("connections") or []
            if c.get("authorized_user") and c.get("authorized_user") != own
        }
    )
    if others:
        out.append(
            Finding(
                "callout.bypass_users_connected",
                "warning",
                {
                    "account": account,
                    "users": others[:20],
                    "hint": "these users are connected in the callout account: they "
                    "are in auth_users, so the callout never checks them, and they "
                    "can read requests (client credentials) unless xkey is set",
                },
            )
        )
    return out
