"""
`POST /admin/revoke` on the HTTP port: what `nats-auth-callout revoke` does,
for callers that speak HTTP (docs/operations.md "Revocation and live
sessions").

Off (404, as for any unknown path) unless CALLOUT_ADMIN_TOKEN_FILE names a
token file. A request must carry `Authorization: Bearer <token>`, compared
in constant time; a missing or wrong one is a bare 401, logged at most once
per `LOG_EVERY` seconds and never with what was sent. The body is JSON,
`{"user": NAME, "reason": TEXT, "for": SECONDS or "1h"}` (only `user` is
required), at most `MAX_BODY` bytes, delivered within `BODY_TIMEOUT`.

The work itself is an async callable the process layer passes in (ops must
not reach for NATS): it answers a status and a JSON object, 200 with what
the CLI prints, 503 without a system-account login.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from service.policy.fields import duration
from service.review.sessions import MAX_NAME, MAX_REASON, Revocation

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from service.log import Throttle

    Revoke = Callable[[Revocation], Awaitable[tuple[int, dict[str, object]]]]

log = structlog.get_logger("callout")

PATH = "/admin/revoke"
MAX_BODY = 4096  # bytes
BODY_TIMEOUT = 3.0  # seconds for the whole body once the head is in
_FIELDS = frozenset({"user", "reason", "for"})


def parse_revocation(body: bytes, now: float) -> Revocation | str:
    """The revocation a request body asks for, or what is wrong with it."""
    try:
        data = json.loads(body)
    except ValueError:
        return "the body is not JSON"
    if not isinstance(data, dict):
        return 'expected {"user": NAME, "reason": TEXT, "for": DURATION}'
    if problem := _problem(data):
        return problem
    span = data.get("for")
    seconds = 0
    if span not in (None, 0):
        try:
            digits = isinstance(span, str) and span.isdigit()
            seconds = duration(int(span) if digits else span)
        except ValueError:
            return "for: seconds or 90s, 10m, 1h, 2d"
    until = now + seconds if seconds else 0.0
    return Revocation(data["user"], data.get("reason", ""), until)


def _problem(data: dict[str, object]) -> str | None:
    """What is wrong with the fields other than `for`, or None."""
    if unknown := sorted(set(data) - _FIELDS):
        return f"unknown fields: {', '.join(map(str, unknown))}"
    user, reason = data.get("user"), data.get("reason", "")
    if not (
        isinstance(user, str)
        and 0 < len(user) <= MAX_NAME
        and user.isprintable()
        and not any(c.isspace() for c in user)
    ):
        return f"user: a principal's name, 1-{MAX_NAME} printable characters, no spaces"
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        return f"reason: text of at most {MAX_REASON} characters"
    return None


class AdminRevoke:
    """The `/admin/revoke` handler; `token` is the bearer token's bytes."""

    def __init__(self, token: bytes, revoke: Revoke | None, throttle: Throttle) -> None:
        self._token = token
        self._revoke = revoke
        self._throttle = throttle

    def authorized(self, request: web.BaseRequest) -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        offered = given.strip().encode("utf-8", "surrogateescape")
        # compared whatever the scheme, so a missing token costs the same
        match = hmac.compare_digest(offered, self._token)
        return match and scheme.lower() == "bearer"

    async def handle(self, request: web.BaseRequest) -> web.Response:
        if request.method != "POST":
            return web.Response(
                status=405, text="405: Method Not Allowed", headers={"Allow": "POST"}
            )
        if not self.authorized(request):
            if self._throttle.allow("callout.admin_unauthorized"):
                log.warning(
                    "callout.admin_unauthorized", path=PATH, remote=request.remote
                )
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        body = await _body(request)
        if isinstance(body, int):
            return _answer(body, {"error": _BODY_ERRORS[body]})
        revocation = parse_revocation(body, time.time())
        if isinstance(revocation, str):
            return _answer(400, {"error": revocation})
        if self._revoke is None:
            return _answer(503, {"error": "no system-account login (CALLOUT_SYSTEM_*)"})
        status, answer = await self._revoke(revocation)
        log.info(
            "callout.admin_revoke",
            principal=revocation.user,
            reason=revocation.reason,
            until=revocation.until or None,
            status=status,
            remote=request.remote,
        )
        return _answer(status, answer)


_BODY_ERRORS = {
    408: f"the body took over {BODY_TIMEOUT:g} s",
    413: f"the body is over {MAX_BODY} bytes",
}


async def _body(request: web.BaseRequest) -> bytes | int:
    """The body, or 413 when it is over MAX_BODY, 408 when slower than BODY_TIMEOUT."""
    if (request.content_length or 0) > MAX_BODY:
        return 413
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            while len(body) <= MAX_BODY:
                chunk = await request.content.read(MAX_BODY + 1 - len(body))
                if not chunk:
                    break
                body += chunk
    except TimeoutError:
        return 408
    return bytes(body) if len(body) <= MAX_BODY else 413


def _answer(status: int, data: dict[str, object]) -> web.Response:
    return web.json_response(data, status=status)
