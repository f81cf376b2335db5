"""
The fast lane's tools: decide without bcrypt, or say that bcrypt is needed.

The verification cache (service/dispatch/logincache.py) calls `check_or_defer` on a
miss. In a fast attempt (`decide_fast`, flagged per thread) that raises
`Cold` instead of running bcrypt, so the attempt costs what a cached
decision costs, hit or miss; on a cold-lane thread it runs bcrypt. Same
cache, same policy code, same handler: only where a miss is paid differs.
"""

from __future__ import annotations

import json
import math
import threading
from typing import TYPE_CHECKING

from service.errors import RequestError
from service.handler import handle
from service.policy.passwords import bcrypt_check
from service.protocol.jwt import b64decode
from service.protocol.request import unseal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from service.handler import HandlerContext, Outcome
    from service.protocol.xkeys import CurveKeyPair


class Cold(BaseException):
    """
    The decision needs a secret check the login cache cannot answer.

    Control flow, not an error: it derives from BaseException so that no
    `except Exception` between the secret check and `decide_fast` (in the
    policy, a provider, the handler) can swallow it as a failure.
    """


_lane = threading.local()


def check_or_defer(hashed: str, secret: str) -> bool:
    """The cache's check on a miss: bcrypt, except in a fast attempt."""
    if getattr(_lane, "fast", False):
        raise Cold
    return bcrypt_check(hashed, secret)


def deferring() -> bool:
    """This thread is making a fast attempt: a bcrypt check would be deferred."""
    return bool(getattr(_lane, "fast", False))


def fast_thread() -> None:
    """Initializer of a pool whose threads only ever make fast attempts."""
    _lane.fast = True


def decide_fast(
    data: bytes, headers: Mapping[str, str] | None, ctx: HandlerContext, now: float
) -> Outcome | None:
    """The decision if it needs no bcrypt, else None (for the cold lane)."""
    on_pool = getattr(_lane, "fast", False)
    _lane.fast = True
    try:
        # verified after the decision: a deferred request is verified on the
        # cold lane before its bcrypt, and a burst of new users costs the
        # event loop less (no Ed25519 check for requests it hands over)
        return handle(data, headers, ctx=ctx, now=now, verify_late=True)
    except Cold:
        return None
    finally:
        _lane.fast = on_pool


def deadline(expires: int, issued_at: int, received: float, wall: float) -> float:
    """
    When the server stops waiting, on the monotonic clock of `received`.

    nats-server writes exp = trunc(send time + timeout) and iat = trunc(its
    clock a moment later), then waits `timeout` from sending. So the server
    gives up by `received + (exp - iat)` and certainly by exp + 1 (whole
    seconds); a fractional timeout makes exp - iat useless (0), hence the
    second bound. `wall` is the wall clock at `received`.
    """
    if not expires:
        return math.inf
    limit = received + (expires + 1 - wall)
    ttl = expires - issued_at
    if issued_at and ttl >= 1:
        limit = min(limit, received + ttl)
    return limit


_CLAIMED_TEXT_MAX = 256  # unverified input: bounded before it reaches a log line


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and len(value) <= _CLAIMED_TEXT_MAX else None


class Claimed:
    """
    What a request says about itself, read once without verifying it.

    Only the cold lane's scheduling uses the deadline (a thread calls
    `deadline` when it picks the request, and drops a request it cannot
    answer in time); the decision that follows verifies everything.
    Verifying here as well would double the GIL time of each request a
    storm makes us drop. The same read keeps the server id and client
    fields, so that the line of a dropped request names them (as claimed).
    """

    __slots__ = (
        "_data",
        "_headers",
        "_received",
        "_wall",
        "_xkey",
        "client_host",
        "client_type",
        "server_id",
    )

    def __init__(
        self,
        data: bytes,
        headers: Mapping[str, str] | None,
        xkey: CurveKeyPair | None,
        *,
        received: float,
        wall: float,
    ) -> None:
        self._data, self._headers, self._xkey = data, headers, xkey
        self._received, self._wall = received, wall
        self.server_id: str | None = None
        self.client_host: str | None = None
        self.client_type: str | None = None

    def deadline(self) -> float:
        """The claimed deadline (monotonic); inf when the claims do not read."""
        try:
            token, _ = unseal(self._data, self._headers, self._xkey)
            claims = json.loads(b64decode(token.split(b".")[1]))
            expires, issued_at = int(claims.get("exp", 0)), int(claims.get("iat", 0))
            nats = claims.get("nats") or {}
            info = nats.get("client_info") or {}
            self.server_id = _text((nats.get("server_id") or {}).get("id"))
            self.client_host = _text(info.get("host"))
            self.client_type = _text(info.get("type"))
        except (RequestError, ValueError, TypeError, IndexError, AttributeError):
            return math.inf  # the decision will tell what is wrong with it
        return deadline(expires, issued_at, self._received, self._wall)

    def log_fields(self) -> dict[str, str | None]:
        """The decision-line fields this request claims (not verified)."""
        return {
            "server_id": self.server_id,
            "client_host": self.client_host,
            "client_type": self.client_type,
        }
