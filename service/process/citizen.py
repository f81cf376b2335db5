"""
The service as a NATS citizen: `$SRV` discovery (process/micro.py), when
`CALLOUT_AUDIT_SUBJECT` is set audit events (process/auditlink.py; their
stream, process/auditstream.py, with CALLOUT_AUDIT_STREAM), and the
self-check of its own login after connecting, all on the worker's
connection. Kept out of worker.py, which only calls `start` once subscribed,
`check_connection` after that and `stop` once the requests are answered.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import structlog
from nats.errors import Error as NatsError

from service.dispatch.audit import AuditBuffer
from service.dispatch.selfcheck import Verdict, connection_findings
from service.process.auditlink import AuditLink
from service.process.auditstream import ensure_stream
from service.process.micro import MicroService, new_instance_id

if TYPE_CHECKING:
    from nats.aio.client import Client

    from service.config import Settings
    from service.ops.metrics import Metrics

log = structlog.get_logger("callout")

_USER_INFO = "$SYS.REQ.USER.INFO"
_ACCOUNT_CONNZ = "$SYS.REQ.ACCOUNT.PING.CONNZ"  # this account's connections


class Citizen:
    """Discovery for every instance; audit events when configured."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
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
            if self._settings.audit_stream:  # before the first event is sent
                await ensure_stream(nc, self._settings)
            self._link.start(nc)

    async def stop(self) -> None:
        """After the last decision: flush the audit events (bounded)."""
        if self._link is not None:
            await self._link.stop()

    async def check_connection(self, nc: Client) -> Verdict | None:
        """Ask the server who we are and who else is in our account."""
        try:
            reply = await nc.request(_USER_INFO, b"", timeout=2)
            info = json.loads(reply.data)["data"]
            # replies carry other users' JWTs: parsed here, never logged
            reply = await nc.request(_ACCOUNT_CONNZ, b'{"auth": true}', timeout=2)
            connz = json.loads(reply.data).get("data")
        except (NatsError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            log.info("callout.selfcheck_skipped", error=type(exc).__name__)
            return None
        settings = self._settings
        auth_account = settings.auth_account if settings.mode == "config" else None
        findings = connection_findings(info, connz, auth_account=auth_account)
        return Verdict(tuple(findings))
