"""
`nats-auth-callout revoke USER` (and `POST /admin/revoke`, process/admin.py):
over the system-account link (CALLOUT_SYSTEM_*), tell every running
instance to refuse USER (`revoked`), then have one of them kick USER's
connections cluster-wide.

The order matters: the refusal is in force on every instance that answered
before the first kick, so a kicked client that reconnects at once is
refused. Instances that did not answer (none running, or not on this
cluster) are reported; a replica that starts later has not heard of it
(docs/operations.md "Revocation and live sessions").
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from nats.errors import Error as NatsError

from service.process.sessions import REVOKE, REVOKE_KICK
from service.process.syslink import SystemLink

if TYPE_CHECKING:
    from service.config import Settings
    from service.review.sessions import Revocation

KICK_WAIT = 300.0  # seconds: the kicks are paced (sessions.kicks_per_second)
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class RevokeFailed(Exception):
    """Nothing or only part was done; the text says what (no secrets)."""


def _say(text: str) -> None:
    print(text, file=sys.stderr)  # noqa: T201


async def revoke(settings: Settings, revocation: Revocation) -> int:
    """Revoke on every instance, kick, print the outcome as one JSON line."""
    if not settings.system_login:
        _say("revoke needs CALLOUT_SYSTEM_USER, _NKEY_SEED_FILE or _CREDS")
        return EXIT_USAGE
    link = SystemLink(settings)
    try:
        await link.connect(retry=False)
    except (NatsError, OSError, TimeoutError) as exc:
        _say(f"cannot connect with the system-account login: {type(exc).__name__}")
        return EXIT_USAGE
    try:
        outcome = await revoke_over(link, revocation)
    except RevokeFailed as exc:
        _say(str(exc))
        return EXIT_FAIL
    finally:
        await link.close()
    print(json.dumps(outcome))  # noqa: T201
    return EXIT_OK


async def revoke_over(link: SystemLink, revocation: Revocation) -> dict[str, object]:
    """
    Revoke on every instance, then kick, over a connected system link.

    Returns:
        `{"user", "instances", "found", "kicked", "until"}`, what the CLI prints.

    Raises:
        RevokeFailed: No instance answered, or the kick request failed.
    """
    answers = await link.ask_all(REVOKE, revocation.encode())
    instances = sum(_field(a, "revoked") is True for a in answers)
    if instances == 0:
        msg = "no running instance answered: nothing revoked, nobody kicked"
        raise RevokeFailed(msg)
    try:
        reply = await link.request(REVOKE_KICK, revocation.encode(), KICK_WAIT)
    except (NatsError, TimeoutError) as exc:
        msg = f"revoked on {instances} instances; kicking: {type(exc).__name__}"
        raise RevokeFailed(msg) from None
    return {
        "user": revocation.user,
        "instances": instances,
        "found": _field(reply, "found"),
        "kicked": _field(reply, "kicked"),
        "until": revocation.until or None,
    }


def _field(payload: bytes, name: str) -> object:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return data.get(name) if isinstance(data, dict) else None
