"""
Audit events: each decision line also as a JSON event for a JetStream stream.

The recorder hands every decision's fields to `AuditBuffer.offer`, which
never waits: it builds the event and appends it to a bounded buffer, or
counts it as dropped when the buffer is full. The worker's publisher
(process/auditlink.py) empties the buffer over NATS at its own pace, so a
slow or missing stream costs events, never decision time
(docs/operations.md, "Observing it from NATS").

No `nats` import: the buffer only holds ready-to-send subjects, payloads and
ids.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from service.log import Throttle, redact_secrets

if TYPE_CHECKING:
    from collections.abc import Mapping

    from service.ops.metrics import Metrics

log = structlog.get_logger("callout")

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_DROP_LOG_EVERY = 10.0  # seconds between two callout.audit_dropped lines


def subject_token(value: object) -> str:
    """
    `value` as one safe subject token: letters, digits, `_` and `-` only
    (no `.`, `*`, `>`, `$` or whitespace, so a name can never add a token or
    act as a wildcard in a consumer's filter); `none` when empty or null.
    """
    if value is None or value == "":
        return "none"
    text = str(value)
    return text if _TOKEN.fullmatch(text) else _UNSAFE.sub("_", text)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One event, ready to publish: its subject, JSON body and unique id."""

    subject: str
    payload: bytes
    msg_id: str


def event_id() -> str:
    """A unique id (128 random bits, hex): the event's `id` and `Nats-Msg-Id`."""
    return secrets.token_hex(16)


class AuditBuffer:
    """Bounded: events wait here for the publisher; beyond `size`, dropped."""

    def __init__(
        self, prefix: str, size: int, metrics: Metrics, *, instance: str = ""
    ) -> None:
        self.prefix = prefix
        self._instance = instance
        self._metrics = metrics
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(size)
        self._throttle = Throttle(_DROP_LOG_EVERY)
        self._dropped_since_log = 0

    def offer(self, event: str, fields: Mapping[str, object]) -> None:
        """Buffer the event for this decision line; never waits."""
        body: dict[str, object] = {
            "id": event_id(),
            "event": event,
            **structlog.contextvars.get_contextvars(),  # `worker` under --workers
            **fields,
            "instance": self._instance,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        # the fields are the log line's, which never hold a secret; the log's
        # redaction runs here too, as the same second line of defence
        body = dict(redact_secrets(None, "", body))
        decision = subject_token(body.get("decision") or "dropped")
        subject = f"{self.prefix}.{decision}.{subject_token(body.get('account'))}"
        item = AuditEvent(subject, json.dumps(body).encode(), str(body["id"]))
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped("overflow")

    def dropped(self, reason: str, count: int = 1) -> None:
        """Count lost events; log it at most once per interval."""
        self._metrics.audit_dropped.labels(reason).inc(count)
        self._dropped_since_log += count
        if self._throttle.allow("callout.audit_dropped"):
            log.warning(
                "callout.audit_dropped",
                reason=reason,
                dropped=self._dropped_since_log,
                subject=self.prefix,
            )
            self._dropped_since_log = 0

    async def get(self) -> AuditEvent:
        """The next event to publish (waits while the buffer is empty)."""
        return await self._queue.get()

    def done(self) -> None:
        """One event taken by `get` is finished (stored or counted dropped)."""
        self._queue.task_done()

    async def join(self) -> None:
        """Until every event buffered so far is finished."""
        await self._queue.join()

    def discard(self) -> int:
        """Empty the buffer (shutdown); how many events were still in it."""
        count = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            count += 1
        return count
