"""
Audit events from the buffer to JetStream, on the service's own connection.

Each event is published as a JetStream publish: a request whose reply is the
stream's acknowledgement, with the event's id as `Nats-Msg-Id`. At most
`WINDOW` wait for their acknowledgement at once; an event not acknowledged
within `ACK_WAIT` is sent once more with the same id (the stream keeps one
copy: its duplicate window de-duplicates), then counted `not_stored`. When
the stream is missing, slow or stalled, the window stays full, the buffer
fills and further events are counted `overflow`: decisions never wait for
any of this (dispatch/audit.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

from nats.errors import Error as NatsError

if TYPE_CHECKING:
    from nats.aio.client import Client

    from service.dispatch.audit import AuditBuffer, AuditEvent
    from service.ops.metrics import Metrics

WINDOW = 64  # acknowledgements awaited at once: ~1 ms each on a LAN
ACK_WAIT = 2.0  # seconds; JetStream acknowledges in milliseconds when healthy
ATTEMPTS = 2
FLUSH_WAIT = 2.0  # seconds at shutdown for the buffered events


class AuditLink:
    """Publishes buffered audit events until stopped."""

    def __init__(self, buffer: AuditBuffer, metrics: Metrics) -> None:
        self._buffer = buffer
        self._metrics = metrics
        self._window = asyncio.Semaphore(WINDOW)
        self._pump: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def start(self, nc: Client) -> None:
        self._pump = asyncio.create_task(self._run(nc))

    async def _run(self, nc: Client) -> None:
        while True:
            event = await self._buffer.get()
            try:
                await self._window.acquire()
            except asyncio.CancelledError:
                self._lost(1)
                raise
            task = asyncio.create_task(self._send(nc, event))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, nc: Client, event: AuditEvent) -> None:
        try:
            for _ in range(ATTEMPTS):
                try:
                    reply = await nc.request(
                        event.subject,
                        event.payload,
                        timeout=ACK_WAIT,
                        headers={"Nats-Msg-Id": event.msg_id},
                    )
                except TimeoutError:
                    continue  # maybe stored, maybe not: the same id again
                except NatsError:
                    break  # no responders (no stream), or no connection
                if _stored(reply.data):
                    self._metrics.audit_published.inc()
                    self._buffer.done()
                    return
                break  # the stream refused it (limits): another try would too
            self._buffer.dropped("not_stored")
            self._buffer.done()
        except asyncio.CancelledError:
            self._lost(1)
            raise
        finally:
            self._window.release()

    def _lost(self, count: int) -> None:
        self._buffer.dropped("shutdown", count)
        for _ in range(count):
            self._buffer.done()

    async def stop(self) -> None:
        """Publish what is buffered (up to `FLUSH_WAIT`); count the rest lost."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_WAIT):
                await self._buffer.join()
        tasks = [t for t in (self._pump, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        left = self._buffer.discard()
        if left:
            self._buffer.dropped("shutdown", left)


def _stored(data: bytes) -> bool:
    """A JetStream publish acknowledgement (a duplicate is stored, once)."""
    try:
        ack = json.loads(data)
    except ValueError:
        return False
    return isinstance(ack, dict) and "seq" in ack and "error" not in ack
