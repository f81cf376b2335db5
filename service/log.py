"""
Logging: structlog configured once, JSON lines on stdout, secrets redacted.

Nothing below the worker logs; the worker writes one line per request. The
redaction processor is a second line of defence: keys that name secrets are
dropped and values that look like seeds or JWTs are masked, wherever they
appear.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, MutableMapping

    from structlog.typing import Processor

_SECRET_KEYS = frozenset(
    {"password", "pass", "token", "auth_token", "jwt", "seed", "sig", "secret", "creds"}
)
# nkey seeds (S + kind + 56 base32) and compact JWTs (three base64url segments)
_SECRET_TEXT = re.compile(
    r"S[OAUNCXP][A-Z2-7]{56}|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+"
)
REDACTED = "[REDACTED]"


def _scrub(value: object) -> object:
    if isinstance(value, str):
        return _SECRET_TEXT.sub(REDACTED, value)
    if isinstance(value, dict):
        return {
            k: REDACTED if k in _SECRET_KEYS else _scrub(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: drop secret-named keys, mask seed/JWT-shaped text."""
    for key in list(event_dict):
        if key in _SECRET_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


class _CurrentStdout:
    """Writes to whatever `sys.stdout` is at write time, not at configure time."""

    # structlog caches loggers on first use; a stream captured at configure
    # time outlives a replaced sys.stdout (test capture, a redirect) and
    # then fails with "I/O operation on closed file".
    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure_logging(*, fmt: str = "json", level: str = "info") -> None:
    """Configure structlog for the process: JSON (default) or console lines."""
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    if fmt == "json":
        processors.append(structlog.processors.JSONRenderer())
    else:
        processors.append(structlog.dev.ConsoleRenderer())
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # WriteLogger writes line and newline in one write: with several worker
        # processes on one pipe, lines stay whole (a write <= PIPE_BUF is atomic)
        logger_factory=structlog.WriteLoggerFactory(_CurrentStdout()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )


class Throttle:
    """
    At most one log line per `every` seconds for each kind of event.

    Each kind keeps its own clock: with one shared "last kind" two kinds that
    alternate (a refused login, then a reset connection) would each be new
    every time and log on every retry. Kinds are event names and exception
    class names, a small fixed set, so the map stays small.
    """

    def __init__(
        self, every: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every = every
        self._clock = clock
        self._last: dict[Hashable, float] = {}

    def allow(self, kind: Hashable) -> bool:
        """True when a line of this kind may be written now (and note it)."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.every:
            return False
        self._last[kind] = now
        return True
