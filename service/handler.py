"""
Sans-IO request handling: bytes and headers in, an outcome out.

decode -> identify/evaluate -> issue. A policy "no" becomes a signed error
response (the client sees `Authorization Violation` at once, the server logs
the reason). A request that is not a valid server request becomes an abort:
no reply at all. No `nats` import here; the worker does the IO and the log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

from service.errors import RequestError
from service.policy import Allow, Deny, evaluate
from service.protocol.claims import UserClaims
from service.protocol.request import read_request
from service.protocol.response import encode_response, encode_user_jwt, seal_response

if TYPE_CHECKING:
    from collections.abc import Mapping

    from service.policy import Policy
    from service.policy.guard import Guard
    from service.protocol.claims import AuthRequest
    from service.protocol.nkeys import KeyPair
    from service.protocol.xkeys import CurveKeyPair
    from service.signers import AccountSigner

# live sessions' last word on an Allow: a deny reason or None (see `admit`)
Admit: TypeAlias = Callable[[Allow, "AuthRequest", float], str | None]


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """
    Everything a decision needs besides the request.

    Attributes:
        issuer: Signs responses (and, in config mode, user JWTs).
        xkey: The service's curve key; when set, requests must be sealed.
        policy: The policy in force.
        check_secret: `(bcrypt_hash, secret) -> bool`, usually cached.
        signers: Per policy account, who signs its user JWTs.
        issuer_account: Operator mode: the callout account, set on responses
            when `issuer` is one of its signing keys.
        guard: The login throttle (None: none).
        holds: Whether the verification cache holds a login, without bcrypt.
        admit: The last word on an Allow, from live sessions: a deny reason
            (`revoked`, `too_many_connections`) or None; it must not block
            (it runs on the lanes). It sees the request for the client's
            server and cid: a connection it lets through is counted at once.
    """

    issuer: KeyPair
    xkey: CurveKeyPair | None
    policy: Policy
    check_secret: Callable[[str, str], bool]
    signers: Mapping[str, AccountSigner]
    issuer_account: str = ""
    guard: Guard | None = None
    holds: Callable[[str, str], bool] | None = None
    admit: Admit | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """
    The result of one request, for the worker to send and log.

    Attributes:
        reply: Bytes to send back; None means abort (send nothing).
        expires: The server's deadline (unix seconds, 0 = none); past it
            a reply is useless and is dropped.
        paced: A refusal without its decoy check: the cold lane answers it
            when a check would have ended (policy `Deny.paced`).
    """

    decision: Literal["allow", "deny", "abort"]
    reply: bytes | None
    reason: str | None = None
    user: str | None = None
    account: str | None = None
    server_id: str | None = None
    client_host: str | None = None
    client_type: str | None = None
    expires: int = 0
    via: str | None = None
    paced: bool = False

    def log_fields(self) -> dict[str, object]:
        """
        The canonical log-line fields, plus `via`.

        They are listed in docs/operations.md "Decisions and logs".
        """
        fields: dict[str, object] = {
            "decision": self.decision,
            "user": self.user,
            "account": self.account,
            "reason": self.reason,
            "client_host": self.client_host,
            "client_type": self.client_type,
            "server_id": self.server_id,
        }
        if self.via is not None:
            # the identity provider or certificate subject, never the token
            fields["via"] = self.via
        return fields


def _abort(exc: RequestError) -> Outcome:
    return Outcome(
        decision="abort", reply=None, reason=exc.reason, server_id=exc.server_id
    )


def client_type(request: AuthRequest) -> str:
    """The client's connection type as the log and policy name it."""
    if request.client_info.kind == "Leafnode":
        return "leafnode"
    return request.client_info.type or request.client_info.kind.lower()


def user_claims(
    request: AuthRequest, allow: Allow, signer: AccountSigner
) -> UserClaims:
    """The user JWT claims for an Allow, as `signer` will sign them."""
    return UserClaims(
        subject=request.user_nkey,
        audience=signer.audience,
        issuer_account=signer.issuer_account,
        name=allow.user,
        expires=allow.expires_at,
        pub=allow.grant.pub,
        sub=allow.grant.sub,
        resp=allow.grant.resp,
        src=allow.source_networks,
        allowed_connection_types=allow.connection_types,
    )


def handle(
    payload: bytes,
    headers: Mapping[str, str] | None,
    *,
    ctx: HandlerContext,
    now: float,
    verify_late: bool = False,
) -> Outcome:
    """
    Turn one auth request into a signed (and maybe sealed) response.

    Never raises for a bad request: that is an abort outcome. With
    `verify_late` the request's signature is checked after the policy
    decision instead of before it (still before anything is signed or
    answered): the fast lane's attempts end with an exception when the
    decision needs bcrypt, and such a request is decided again, verified
    first, on the cold lane; its first attempt need not pay for a check
    the second makes anyway.
    """
    try:
        request, signed = read_request(payload, headers, now=now, xkey=ctx.xkey)
        if not verify_late:
            signed.verify()
    except RequestError as exc:
        return _abort(exc)
    decision = evaluate(
        ctx.policy,
        request,
        int(now),
        check_secret=ctx.check_secret,
        guard=ctx.guard,
        holds=ctx.holds,
    )
    if verify_late:
        try:
            signed.verify()
        except RequestError as exc:
            return _abort(exc)
    if isinstance(decision, Allow) and ctx.admit is not None:
        refusal = ctx.admit(decision, request, now)
        if refusal is not None:
            decision = Deny(refusal, user=decision.user, via=decision.via)
    verdict: Literal["allow", "deny"]
    if isinstance(decision, Allow):
        signer = ctx.signers[decision.account]
        user_jwt = encode_user_jwt(
            user_claims(request, decision, signer), signer.key, now=int(now)
        )
        token = encode_response(
            request,
            ctx.issuer,
            now=int(now),
            jwt=user_jwt,
            issuer_account=ctx.issuer_account,
        )
        verdict, reason, account = "allow", None, decision.account
    else:
        token = encode_response(
            request,
            ctx.issuer,
            now=int(now),
            error=decision.reason,
            issuer_account=ctx.issuer_account,
        )
        verdict, reason, account = "deny", decision.reason, None
    # callout.go: a sealed request always gets a sealed response
    reply = (
        seal_response(token, request, ctx.xkey)
        if request.sealed and ctx.xkey is not None
        else token.encode("ascii")
    )
    return Outcome(
        decision=verdict,
        reply=reply,
        reason=reason,
        user=decision.user,
        account=account,
        server_id=request.server.id,
        client_host=request.client_info.host or None,
        client_type=client_type(request) or None,
        expires=request.expires,
        via=decision.via,
        paced=isinstance(decision, Deny) and decision.paced,
    )
