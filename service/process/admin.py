"""
The HTTP port's wiring (process/worker.py `serve`): its settings, and the
revocation `POST /admin/revoke` (ops/admin.py) performs over the worker's
own system-account link, as `nats-auth-callout revoke` does over one it
opens (process/revoke.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from service import keyfiles
from service.errors import ConfigError
from service.ops.http import HttpApi
from service.process.revoke import RevokeFailed, revoke_over

if TYPE_CHECKING:
    from service.config import Settings
    from service.ops.admin import Revoke
    from service.ops.health import Health
    from service.ops.metrics import Metrics
    from service.process.sessions import LiveSessions
    from service.review.sessions import Revocation

log = structlog.get_logger("callout")

SETTING = "CALLOUT_ADMIN_TOKEN_FILE"
MIN_TOKEN = 16  # characters: a guessable token is no authentication


def admin_token(settings: Settings) -> bytes | None:
    """
    The admin bearer token, or None (the endpoint is off): not set, or the
    file is readable by other users (refused, with a warning saying so).

    Raises:
        ConfigError: The file cannot be read, or the token is too short.
    """
    path = settings.admin_token_file
    if path is None:
        return None
    if loose := keyfiles.loose_permissions({SETTING: path}):
        log.warning(
            "callout.config_warning",
            warning=f"{loose[0]}; until then /admin/revoke is off",
        )
        return None
    token = keyfiles.read_text(path, SETTING)
    if len(token) < MIN_TOKEN:
        msg = f"{SETTING} {path}: the token must be at least {MIN_TOKEN} characters"
        raise ConfigError(msg)
    return token.encode()


def revoker(sessions: LiveSessions) -> Revoke:
    """`POST /admin/revoke`'s work, over the live sessions' system link."""

    async def revoke(revocation: Revocation) -> tuple[int, dict[str, object]]:
        link = sessions.link
        if link is None:
            return 503, {"error": "no system-account login (CALLOUT_SYSTEM_*)"}
        if not link.connected:
            return 503, {"error": "the system-account link is not connected"}
        try:
            return 200, await revoke_over(link, revocation)
        except RevokeFailed as exc:
            return 502, {"error": str(exc)}

    return revoke


def http_api(
    settings: Settings, metrics: Metrics, health: Health, sessions: LiveSessions
) -> HttpApi | None:
    """
    The HTTP endpoint CALLOUT_HTTP_LISTEN asks for, not yet started.

    Raises:
        ConfigError: A bad listen address or admin token file.
    """
    if not settings.http_listen:
        return None
    return HttpApi(
        settings.http_listen,
        metrics=metrics,
        not_ready=health.not_ready,
        admin_token=admin_token(settings),
        revoke=revoker(sessions),
    )
