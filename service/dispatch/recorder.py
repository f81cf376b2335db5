"""
One log line and the metrics for each request's end: decided, shed, failed,
or dropped at the door (overload).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog

from service.handler import Outcome

if TYPE_CHECKING:
    from collections.abc import Mapping

    from service.dispatch.audit import AuditBuffer
    from service.dispatch.coldlane import Shed
    from service.handler import HandlerContext
    from service.ops.metrics import Metrics

log = structlog.get_logger("callout")

_EVENTS = {
    "allow": "callout.request_authorized",
    "deny": "callout.request_rejected",
    "abort": "callout.request_aborted",
}
# answered too late or not at all because of the server's deadline
_EXPIRED = frozenset({"deadline_passed", "deadline_unmeetable", "expired_request"})


class DecisionRecorder:
    """Logs and counts how requests end."""

    def __init__(self, metrics: Metrics, audit: AuditBuffer | None = None) -> None:
        self._metrics = metrics
        self._audit = audit  # each line below also as an event, when configured

    def outcome(
        self, outcome: Outcome, started: float, version: str, **extra: object
    ) -> None:
        """The decision line (docs/operations.md, "Decisions and logs"), metrics."""
        seconds = time.perf_counter() - started
        self._metrics.observe(outcome.decision, outcome.reason, seconds)
        if outcome.reason in _EXPIRED:
            self._metrics.drop("expired")
        fields = outcome.log_fields() | extra
        fields["duration_ms"] = round(seconds * 1000, 3)
        fields["policy_version"] = version
        event = _EVENTS[outcome.decision]
        if outcome.decision == "abort":
            log.warning(event, **fields)
        else:
            log.info(event, **fields)
        if self._audit is not None:
            self._audit.offer(event, fields)

    def shed(
        self,
        shed: Shed,
        started: float,
        ctx: HandlerContext,
        cost: float | None,
        *,
        claimed: Mapping[str, str | None],
    ) -> None:
        """
        A request dropped before bcrypt: it could not be answered in time.
        `claimed` are its server and client fields as it states them: it was
        dropped before its signature check.
        """
        self.outcome(
            Outcome(
                decision="abort",
                reply=None,
                reason="deadline_unmeetable",
                server_id=claimed.get("server_id"),
                client_host=claimed.get("client_host"),
                client_type=claimed.get("client_type"),
            ),
            started,
            ctx.policy.version_hash,
            waited_ms=round(shed.waited * 1000, 1),
            left_ms=round(shed.left * 1000, 1),
            bcrypt_ms=round((cost or 0.0) * 1000, 1),
        )

    def overload(self, inflight: int) -> None:
        """A request dropped on arrival: CALLOUT_MAX_INFLIGHT are in the service."""
        self._metrics.drop("overload")
        log.warning("callout.request_dropped", reason="overload", inflight=inflight)
        if self._audit is not None:
            self._audit.offer(
                "callout.request_dropped",
                {"decision": "dropped", "reason": "overload", "inflight": inflight},
            )

    def internal_error(self) -> None:
        """Count and log the exception being handled (call from `except`)."""
        self._metrics.observe("abort", "internal_error", 0.0)
        log.exception(  # noqa: LOG004 - only ever called from an except block
            "callout.request_aborted", decision="abort", reason="internal_error"
        )
        if self._audit is not None:
            self._audit.offer(
                "callout.request_aborted",
                {"decision": "abort", "reason": "internal_error"},
            )
