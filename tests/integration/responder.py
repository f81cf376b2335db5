# Copyright 2026 The nats-auth-callout authors
# SPDX-License-Identifier: Apache-2.0
"""A minimal auth-callout responder made only of ``service.protocol``.

No policy, no worker: the test supplies ``decide(request)``, which returns the
:class:`UserClaims` to grant or a ``str`` reason to refuse with (an error
response). The responder signs the user JWT with ``user_signer`` and the
response with ``signer``, seals the response when the request was sealed, and
replies. A :class:`RequestError` from ``decode_request`` means *abort*: no reply;
the error is recorded in :attr:`Responder.errors`.

Tests await :meth:`Responder.wait_handled` instead of sleeping. Any other
exception inside the handler is a bug in the code under test; it is recorded
and re-raised when the ``async with`` block exits.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

import nats

from service.errors import RequestError
from service.protocol.claims import AUTH_SUBJECT, AuthRequest, UserClaims
from service.protocol.request import decode_request
from service.protocol.response import encode_response, encode_user_jwt, seal_response

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from service.protocol.nkeys import KeyPair
    from service.protocol.xkeys import CurveKeyPair

QUEUE = "auth"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the responder did with one request.

    Attributes:
        kind: ``"jwt"`` (granted), ``"error"`` (refused with a reason) or
            ``"aborted"`` (no reply, see ``error``).
        request: The decoded request (None when it did not decode).
        user_jwt: The user JWT sent, for ``"jwt"``.
        reason: The error reason sent, for ``"error"``.
        error: The decode error, for ``"aborted"``.
    """

    kind: Literal["jwt", "error", "aborted"]
    request: AuthRequest | None = None
    user_jwt: str = ""
    reason: str = ""
    error: RequestError | None = None


class Responder:
    """Answer ``$SYS.REQ.USER.AUTH`` on a real server; use ``async with``."""

    def __init__(
        self,
        url: str,
        *,
        decide: Callable[[AuthRequest], UserClaims | str],
        signer: KeyPair,
        user_signer: KeyPair | None = None,
        xkey: CurveKeyPair | None = None,
        issuer_account: str = "",
        **connect_options: Any,
    ) -> None:
        """
        Args:
            url: Server URL the service user connects to.
            decide: Grant (UserClaims) or refuse (reason) one request.
            signer: Signs the response: the config-mode issuer, or the
                callout account (or its signing key) in operator mode.
            user_signer: Signs the user JWT; defaults to ``signer``.
            xkey: The service's curve key when encryption is configured.
            issuer_account: ``nats.issuer_account`` of the response, for a
                response signed by a signing key (operator mode).
            connect_options: For ``nats.connect``: ``user``/``password`` or
                ``user_credentials``.
        """
        self.url = url
        self.decide = decide
        self.signer = signer
        self.user_signer = user_signer or signer
        self.xkey = xkey
        self.issuer_account = issuer_account
        self.connect_options = connect_options
        self.outcomes: list[Outcome] = []
        self.errors: list[RequestError] = []
        self.failures: list[BaseException] = []
        self._changed = asyncio.Condition()
        self._nc: Client | None = None

    @property
    def requests(self) -> list[AuthRequest]:
        """Every request that decoded, in arrival order."""
        return [o.request for o in self.outcomes if o.request is not None]

    async def __aenter__(self) -> Self:
        nc = await nats.connect(
            self.url, allow_reconnect=False, name="auth-service", **self.connect_options
        )
        self._nc = nc
        try:
            await nc.subscribe(AUTH_SUBJECT, queue=QUEUE, cb=self._on_request)
            await nc.flush()  # the server knows the subscription before clients come
        except BaseException:
            await nc.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = None
        if exc is None and self.failures:
            raise self.failures[0]

    async def wait_handled(self, count: int = 1, timeout: float = 5.0) -> Outcome:
        """Wait until ``count`` requests have been handled; the ``count``-th outcome."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(
                lambda: len(self.outcomes) >= count or bool(self.failures)
            )
        if self.failures:
            raise self.failures[0]
        return self.outcomes[count - 1]

    async def _record(
        self, outcome: Outcome | None, failure: BaseException | None = None
    ) -> None:
        async with self._changed:
            if outcome is not None:
                self.outcomes.append(outcome)
                if outcome.error is not None:
                    self.errors.append(outcome.error)
            if failure is not None:
                self.failures.append(failure)
            self._changed.notify_all()

    async def _on_request(self, msg: Msg) -> None:
        try:
            outcome = await self._answer(msg)
        except Exception as exc:  # noqa: BLE001 -- surfaced in wait_handled/__aexit__
            await self._record(None, exc)
        else:
            await self._record(outcome)

    async def _answer(self, msg: Msg) -> Outcome:
        try:
            req = decode_request(msg.data, msg.headers, now=time.time(), xkey=self.xkey)
        except RequestError as exc:
            return Outcome("aborted", error=exc)
        decision = self.decide(req)
        now = int(time.time())
        if isinstance(decision, str):
            user_jwt = ""
            token = encode_response(
                req,
                self.signer,
                now=now,
                error=decision,
                issuer_account=self.issuer_account,
            )
            outcome = Outcome("error", req, reason=decision)
        else:
            user_jwt = encode_user_jwt(decision, self.user_signer, now=now)
            token = encode_response(
                req,
                self.signer,
                now=now,
                jwt=user_jwt,
                issuer_account=self.issuer_account,
            )
            outcome = Outcome("jwt", req, user_jwt=user_jwt)
        if req.sealed:
            if self.xkey is None:  # pragma: no cover - decode_request aborts first
                raise AssertionError("sealed request without an xkey")
            body = seal_response(token, req, self.xkey)
        else:
            body = token.encode("ascii")
        await msg.respond(body)
        return outcome
