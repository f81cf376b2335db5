"""
The service's own parts, built the way the tests need them: bcrypt hashes of
test passwords (made once per process), a handler context, a dispatcher.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import bcrypt

from service.config import Keys, Settings
from service.dispatch.dispatcher import Dispatcher
from service.dispatch.logincache import LoginCache
from service.handler import HandlerContext
from service.ops.health import Health
from service.ops.metrics import Metrics
from service.signers import AccountSigner

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from service.policy import Policy
    from service.protocol.nkeys import KeyPair
    from service.protocol.xkeys import CurveKeyPair


@functools.cache
def hash_secret(secret: str, cost: int = 4) -> str:
    """
    A bcrypt hash of `secret` (cost 4 unless a test measures bcrypt's price).

    Cached: each (secret, cost) pays bcrypt once per test process.
    """
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(cost)).decode()


def app_signers(issuer: KeyPair) -> dict[str, AccountSigner]:
    """Config mode's signers for a policy whose one account is APP."""
    return {"APP": AccountSigner(issuer, audience="APP")}


def handler_context(
    policy: Policy,
    issuer: KeyPair,
    *,
    xkey: CurveKeyPair | None = None,
    check_secret: Callable[[str, str], bool] | None = None,
    signers: Mapping[str, AccountSigner] | None = None,
) -> HandlerContext:
    """A config-mode context: a fresh login cache and APP's signer by default."""
    return HandlerContext(
        issuer=issuer,
        xkey=xkey,
        policy=policy,
        check_secret=LoginCache() if check_secret is None else check_secret,
        signers=app_signers(issuer) if signers is None else signers,
    )


def build_dispatcher(
    policy: Policy,
    issuer: KeyPair,
    **settings: object,
) -> tuple[Dispatcher, Metrics, Health]:
    """A config-mode dispatcher on `Settings(**settings)`, its metrics, its health."""
    metrics, health = Metrics(), Health()
    dispatcher = Dispatcher(
        Settings(**settings),  # type: ignore[arg-type]
        Keys(issuer=issuer, xkey=None),
        policy,
        app_signers(issuer),
        metrics=metrics,
        health=health,
    )
    return dispatcher, metrics, health
