"""The audit publisher against a scripted connection: acks, retries, losses."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from service.dispatch.audit import AuditBuffer
from service.ops.metrics import Metrics
from service.process import auditlink
from service.process.auditlink import AuditLink

if TYPE_CHECKING:
    from nats.aio.client import Client

ACK = b'{"stream": "AUDIT", "seq": 1}'


class _Reply:
    def __init__(self, data: bytes) -> None:
        self.data = data


class _Connection:
    """`request` answers from a script: bytes, an exception, or `None` = hang."""

    def __init__(self, *script: bytes | Exception | None) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.two_calls = asyncio.Event()

    async def request(
        self, subject: str, payload: bytes, *, timeout: float, headers: Any
    ) -> _Reply:
        del payload, timeout
        self.calls.append((subject, headers))
        if len(self.calls) >= 2:  # the shutdown test: its window is full
            self.two_calls.set()
        step = self.script.pop(0) if self.script else ACK
        if step is None:
            await asyncio.Event().wait()
        if isinstance(step, Exception):
            raise step
        assert isinstance(step, bytes)
        return _Reply(step)


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def _publish(
    connection: _Connection, events: int
) -> tuple[Metrics, AuditLink, AuditBuffer]:
    metrics = Metrics()
    buffer = AuditBuffer("audit", 10, metrics)
    link = AuditLink(buffer, metrics)
    link.start(cast("Client", connection))
    for _ in range(events):
        buffer.offer("callout.request_authorized", {"decision": "allow"})
    return metrics, link, buffer


async def test_a_timeout_is_retried_with_the_same_id() -> None:
    """No ack in time: the same Nats-Msg-Id again, and the second ack stores it."""
    connection = _Connection(NatsTimeout(), ACK)
    metrics, link, buffer = await _publish(connection, 1)
    await asyncio.wait_for(buffer.join(), 1)
    await link.stop()

    assert len(connection.calls) == 2
    assert connection.calls[0] == connection.calls[1]
    assert _value(metrics, "callout_audit_stored_total") == 1
    assert _value(metrics, "callout_audit_dropped_total", reason="not_stored") == 0


@pytest.mark.parametrize(
    "answer",
    [
        NoRespondersError(),
        b'{"error": {"code": 503, "description": "maximum bytes exceeded"}}',
        b"not json",
        [NatsTimeout(), NatsTimeout()],
    ],
    ids=["no-stream", "refused", "garbage", "two-timeouts"],
)
async def test_an_event_no_stream_stores_is_counted_not_stored(answer: Any) -> None:
    """No stream, a refusal, garbage, or two timeouts: one `not_stored` drop."""
    script = answer if isinstance(answer, list) else [answer]
    metrics, link, buffer = await _publish(_Connection(*script), 1)
    await asyncio.wait_for(buffer.join(), 1)
    await link.stop()

    assert _value(metrics, "callout_audit_dropped_total", reason="not_stored") == 1
    assert _value(metrics, "callout_audit_stored_total") == 0


async def test_events_still_waiting_at_shutdown_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stalled stream at exit: in flight, held and buffered all count `shutdown`."""
    monkeypatch.setattr(auditlink, "FLUSH_WAIT", 0.05)
    monkeypatch.setattr(auditlink, "WINDOW", 2)
    connection = _Connection(*([None] * 10))
    metrics, link, buffer = await _publish(connection, 6)
    await asyncio.wait_for(connection.two_calls.wait(), 1)  # the window is full
    await link.stop()

    assert _value(metrics, "callout_audit_dropped_total", reason="shutdown") == 6
    await asyncio.wait_for(buffer.join(), 1)
