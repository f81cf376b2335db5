"""
The audit stream (CALLOUT_AUDIT_STREAM), made once at startup if missing.

With CALLOUT_AUDIT_SUBJECT and CALLOUT_AUDIT_STREAM set, each instance looks
the stream up in its own account before it publishes the first event: an
existing stream is left as it is (whatever its subjects and limits: someone
made it on purpose), a missing one is created capturing `<subject>.>` with
a duplicate window for the events' `Nats-Msg-Id`, the age and size limits
of CALLOUT_AUDIT_MAX_AGE/_MAX_BYTES, and the oldest events discarded first.
Instances that start together may both create it: the same configuration
twice is accepted by JetStream. When neither works (no JetStream in the
account, no permission) one warning says so and nothing else changes:
events are published anyway and counted `not_stored`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from nats.errors import Error as NatsError
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

if TYPE_CHECKING:
    from nats.aio.client import Client

    from service.config import Settings

log = structlog.get_logger("callout")

API_WAIT = 2.0  # seconds for a JetStream API call
DUPLICATE_WINDOW = 120.0  # seconds; an event's retry comes within 2 s


def stream_config(settings: Settings) -> StreamConfig:
    """The stream the service creates for its audit events."""
    return StreamConfig(
        name=settings.audit_stream,
        description="nats-auth-callout audit events",
        subjects=[f"{settings.audit_subject}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.audit_max_age,
        max_bytes=settings.audit_max_bytes,
        duplicate_window=DUPLICATE_WINDOW,
        num_replicas=1,
    )


async def ensure_stream(nc: Client, settings: Settings) -> bool:
    """Find or create the audit stream; False (warned once) when neither works."""
    name = settings.audit_stream
    js = nc.jetstream(timeout=API_WAIT)
    try:
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(stream_config(settings))
            log.info(
                "callout.audit_stream_created",
                stream=name,
                subjects=[f"{settings.audit_subject}.>"],
                max_age=settings.audit_max_age,
                max_bytes=settings.audit_max_bytes,
            )
            return True
    except (NatsError, TimeoutError, OSError) as exc:
        log.warning(
            "callout.audit_stream_unavailable",
            stream=name,
            error=type(exc).__name__,
            detail=str(exc)[:200],
        )
        return False
    log.info("callout.audit_stream_exists", stream=name, subjects=info.config.subjects)
    return True
