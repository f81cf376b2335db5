"""
The service as a NATS citizen: `$SRV` discovery (process/micro.py) and, when
`CALLOUT_AUDIT_SUBJECT` is set, audit events (process/auditlink.py), both on
the worker's connection. Kept out of worker.py, which only calls
`start` once subscribed and `stop` once the requests are answered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.dispatch.audit import AuditBuffer
from service.process.auditlink import AuditLink
from service.process.micro import MicroService, new_instance_id

if TYPE_CHECKING:
    from nats.aio.client import Client

    from service.config import Settings
    from service.ops.metrics import Metrics


class Citizen:
    """Discovery for every instance; audit events when configured."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        instance = new_instance_id()  # one per connection: replica or worker
        self.micro = MicroService(settings, metrics, instance)
        self.audit: AuditBuffer | None = None
        self._link: AuditLink | None = None
        if settings.audit_subject:
            self.audit = AuditBuffer(
                settings.audit_subject,
                settings.audit_buffer,
                metrics,
                instance=instance,
            )
            self._link = AuditLink(self.audit, metrics)

    async def start(self, nc: Client) -> None:
        await self.micro.start(nc)
        if self._link is not None:
            self._link.start(nc)

    async def stop(self) -> None:
        """After the last decision: flush the audit events (bounded)."""
        if self._link is not None:
            await self._link.stop()
