"""
Service discovery: the NATS micro protocol's `$SRV.PING|INFO|STATS` answers.

`nats micro ls/info/stats` list services by asking `$SRV.<VERB>`,
`$SRV.<VERB>.<name>` and `$SRV.<VERB>.<name>.<id>`; every instance answers
for itself. nats-py's `nats.micro.Service` would subscribe each endpoint
with its own callback and count its own stats, which would replace the
worker's subscription, its dispatcher and its back-pressure, and keep a
second set of numbers beside /metrics. So only the protocol is implemented
here: the nine control subscriptions, answered with nats-py's own response
classes (the exact JSON and `type` fields `nats micro` reads), and stats read
from the same collectors /metrics renders (docs/operations.md, "Observing it
from NATS").
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from nats.micro.service import (
    EndpointInfo,
    EndpointStats,
    ServiceInfo,
    ServicePing,
    ServiceStats,
    ServiceVerb,
    control_subject,
)
from nats.nuid import NUID

from service import __version__
from service.protocol.claims import AUTH_SUBJECT

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from service.config import Settings
    from service.ops.metrics import Metrics

NAME = "nats-auth-callout"
DESCRIPTION = "NATS auth callout: decides who connects, from a YAML policy"
ENDPOINT = "authorize"


def new_instance_id() -> str:
    """A NUID, as nats.micro and the Go framework give each instance."""
    return NUID().next().decode()


class MicroService:
    """One instance of the service as `nats micro` sees it."""

    def __init__(self, settings: Settings, metrics: Metrics, instance: str) -> None:
        self.id = instance
        self._settings = settings
        self._metrics = metrics
        self._started = datetime.now(UTC)
        self._metadata: dict[str, str] = {"mode": settings.mode}

    async def start(self, nc: Client) -> None:
        """Subscribe the control subjects (no queue group: every instance answers)."""
        answer = {
            ServiceVerb.PING: self._ping,
            ServiceVerb.INFO: self._info,
            ServiceVerb.STATS: self._stats,
        }
        self._started = datetime.now(UTC)
        for verb, build in answer.items():
            for name, instance in ((None, None), (NAME, None), (NAME, self.id)):
                subject = control_subject(verb, name, instance)
                await nc.subscribe(subject, cb=functools.partial(self._answer, build))

    @staticmethod
    async def _answer(build: Callable[[], dict[str, object]], msg: Msg) -> None:
        await msg.respond(json.dumps(build()).encode())

    def _ping(self) -> dict[str, object]:
        return ServicePing(
            id=self.id, name=NAME, version=__version__, metadata=self._metadata
        ).to_dict()

    def _info(self) -> dict[str, object]:
        endpoint = EndpointInfo(
            name=ENDPOINT,
            subject=AUTH_SUBJECT,
            queue_group=self._settings.queue_group,
        )
        return ServiceInfo(
            name=NAME,
            id=self.id,
            version=__version__,
            description=DESCRIPTION,
            endpoints=[endpoint],
            metadata=self._metadata,
        ).to_dict()

    def _stats(self) -> dict[str, object]:
        totals = self._metrics.totals()
        requests = sum(totals.decisions.values())
        nanos = round(totals.seconds * 1e9)
        endpoint = EndpointStats(
            name=ENDPOINT,
            subject=AUTH_SUBJECT,
            queue_group=self._settings.queue_group,
            num_requests=requests,
            num_errors=totals.decisions.get("abort", 0),
            processing_time=nanos,
            average_processing_time=nanos // requests if requests else 0,
            last_error=totals.last_abort,
            data={"decisions": totals.decisions, "dropped": totals.dropped},
        )
        return ServiceStats(
            id=self.id,
            name=NAME,
            version=__version__,
            started=self._started,
            endpoints=[endpoint],
            metadata=self._metadata,
        ).to_dict()
