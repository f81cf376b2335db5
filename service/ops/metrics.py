"""
Prometheus metrics, on a registry of our own.

A dedicated `CollectorRegistry` (not the process-global one) keeps the
exposition to exactly what is listed here, and lets tests build as many
independent `Metrics` as they like. Label values are reason codes from the
code base, never user input, so the number of series stays bounded; anything
that does not look like a code is counted as `other`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping


__all__ = ["CONTENT_TYPE", "DECISIONS", "Metrics", "Totals"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
DECISIONS = ("allow", "deny", "abort")
THROTTLE_SCOPES = ("principal", "address")  # back-offs
THROTTLED_SCOPES = (*THROTTLE_SCOPES, "decoys")  # and the global decoy budget
AUDIT_DROPS = ("overflow", "not_stored", "shutdown")
KICK_CAUSES = ("removed", "changed", "revoked")


@dataclass(frozen=True, slots=True)
class Totals:
    """
    The decision counters as /metrics shows them, for `$SRV.STATS`.

    Attributes:
        decisions: `callout_requests_total` summed over reasons, per decision.
        seconds: `callout_request_duration_seconds_sum` over all decisions.
        dropped: `callout_dropped_requests_total` per reason.
        last_abort: The reason of the latest abort ("" before the first).
    """

    decisions: dict[str, int]
    seconds: float
    dropped: dict[str, int]
    last_abort: str


class CacheCounts(Protocol):
    """What the metrics read of the login cache (it lives in a higher layer)."""

    @property
    def checks(self) -> int: ...

    def __len__(self) -> int: ...


# A cached decision takes ~0.2 ms, a fresh bcrypt at cost 12 ~0.3 s, and the
# server gives up after its auth timeout (2 s by default).
BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
)
_CODE = re.compile(r"[a-z][a-z0-9_]{0,47}")


def label(reason: str | None) -> str:
    """A bounded label value: the code itself, `none`, or `other`."""
    if reason is None:
        return "none"
    return reason if _CODE.fullmatch(reason) else "other"


class Metrics:
    """
    Every metric the service exports.

    They are listed in docs/operations.md "Health, readiness, metrics".
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "callout_requests",
            "Auth requests handled, by decision and reason code.",
            ["decision", "reason"],
            registry=r,
        )
        self.duration = Histogram(
            "callout_request_duration_seconds",
            "Time from receiving a request to replying (or deciding not to).",
            ["decision"],
            buckets=BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "callout_inflight_requests", "Requests being handled now.", registry=r
        )
        self.dropped = Counter(
            "callout_dropped_requests",
            "Requests not answered: expired (past the server's deadline, or "
            "shed before bcrypt because it could not be met: deadline_unmeetable), "
            "overload (CALLOUT_MAX_INFLIGHT) or shutdown (cut off at the grace).",
            ["reason"],
            registry=r,
        )
        self.reloads = Counter(
            "callout_policy_reloads",
            "Policy reload attempts, by result (success or failure).",
            ["result"],
            registry=r,
        )
        self.policy_info = Gauge(
            "callout_policy_info",
            "1 for the version (content hash) of the policy in force.",
            ["version"],
            registry=r,
        )
        self.nats_connected = Gauge(
            "callout_nats_connected",
            "1 while connected to nats-server, else 0.",
            registry=r,
        )
        self.throttled = Counter(
            "callout_throttled",
            "Logins refused without a secret check by the login throttle, by "
            "scope: principal (in back-off at its address), address (its "
            "bcrypt budget spent) or decoys (an unknown name refused without "
            "its decoy check, paced: the global decoy budget is spent).",
            ["scope"],
            registry=r,
        )
        self.backoffs = Gauge(
            "callout_backoffs",
            "Login back-offs in force now, by scope (principal or address).",
            ["scope"],
            registry=r,
        )
        self.ready = Gauge(
            "callout_ready",
            "1 while /readyz passes (able to authorize now), else 0.",
            registry=r,
        )
        self.audit_published = Counter(
            "callout_audit_stored",
            "Audit events a JetStream stream acknowledged (CALLOUT_AUDIT_SUBJECT).",
            registry=r,
        )
        self.audit_dropped = Counter(
            "callout_audit_dropped",
            "Audit events lost: overflow (the buffer was full), not_stored "
            "(no stream acknowledged it), shutdown (still buffered at exit).",
            ["reason"],
            registry=r,
        )
        self.kicks = Counter(
            "callout_kicks",
            "Live connections the servers closed at our request, by cause: "
            "removed or changed (a reload), revoked (nats-auth-callout revoke).",
            ["cause"],
            registry=r,
        )
        self.last_abort = ""
        # Present every series from the start, so dashboards and rate() see
        # zeros instead of gaps.
        for decision in DECISIONS:
            self.duration.labels(decision)
        for reason in ("expired", "overload", "shutdown"):
            self.dropped.labels(reason)
        for result in ("success", "failure"):
            self.reloads.labels(result)
        for scope in THROTTLED_SCOPES:
            self.throttled.labels(scope)
        for reason in AUDIT_DROPS:
            self.audit_dropped.labels(reason)
        for cause in KICK_CAUSES:
            self.kicks.labels(cause)

    def observe(self, decision: str, reason: str | None, seconds: float) -> None:
        """Count one handled request and its duration."""
        self.requests.labels(decision, label(reason)).inc()
        self.duration.labels(decision).observe(seconds)
        if decision == "abort":
            self.last_abort = label(reason)

    def totals(self) -> Totals:
        """The decision counters, read from the same collectors /metrics renders."""
        decisions = dict.fromkeys(DECISIONS, 0)
        dropped: dict[str, int] = {}
        seconds = 0.0
        for family in (*self.requests.collect(), *self.duration.collect()):
            for sample in family.samples:
                if sample.name == "callout_requests_total":
                    key = sample.labels["decision"]
                    decisions[key] = decisions.get(key, 0) + int(sample.value)
                elif sample.name == "callout_request_duration_seconds_sum":
                    seconds += sample.value
        for family in self.dropped.collect():
            for sample in family.samples:
                if sample.name == "callout_dropped_requests_total":
                    dropped[sample.labels["reason"]] = int(sample.value)
        return Totals(decisions, seconds, dropped, self.last_abort)

    def drop(self, reason: str, count: int = 1) -> None:
        """Count requests that got no answer (`expired`, `overload`, `shutdown`)."""
        self.dropped.labels(reason).inc(count)

    def set_policy(self, version: str) -> None:
        """Make `version` the only `callout_policy_info` series."""
        self.policy_info.clear()
        self.policy_info.labels(version).set(1)

    def track(
        self,
        *,
        inflight: Callable[[], float],
        connected: Callable[[], float],
        ready: Callable[[], float] | None = None,
    ) -> None:
        """Read the gauges from the worker at scrape time (always exact)."""
        self.inflight.set_function(inflight)
        self.nats_connected.set_function(connected)
        if ready is not None:
            self.ready.set_function(ready)

    def throttle(self, scope: str) -> None:
        """Count one login refused by the throttle."""
        self.throttled.labels(scope).inc()

    def track_backoffs(self, active: Callable[[str], int]) -> None:
        """The back-offs in force, read from the throttle at scrape time."""
        for scope in THROTTLE_SCOPES:
            self.backoffs.labels(scope).set_function(functools.partial(active, scope))

    def track_live(self, per_account: Callable[[], Mapping[str, int]]) -> None:
        """The live connections per account, read from the view at scrape time."""
        self.registry.register(_LiveCollector(per_account))

    def track_cache(self, cache: CacheCounts) -> None:
        """The verification cache's size and bcrypt count, read at scrape time."""
        self.registry.register(_CacheCollector(cache))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _CacheCollector(Collector):
    """Reads the cache's own counts: nothing to keep in step on the hot path."""

    def __init__(self, cache: CacheCounts) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "callout_secret_cache_entries",
            "Successful secret checks held in the verification cache "
            "(with --workers: this worker's copy of the shared cache).",
            value=len(self._cache),
        )
        yield CounterMetricFamily(
            "callout_secret_checks",
            "bcrypt checks run (verification cache misses that were checked).",
            value=self._cache.checks,
        )


class _LiveCollector(Collector):
    """The live connection view's counts (system-account link only)."""

    def __init__(self, per_account: Callable[[], Mapping[str, int]]) -> None:
        self._per_account = per_account

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "callout_live_connections",
            "Client connections open now, cluster-wide, per account, as the "
            "servers report them (every replica shows the same view).",
            labels=["account"],
        )
        for account, count in sorted(self._per_account().items()):
            family.add_metric([account], count)
        yield family
