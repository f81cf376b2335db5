"""
Request dispatch: handler on a thread, reply, one log line, metrics, checks.

No `nats` import: the worker hands over each message as bytes, headers and
a `respond` coroutine function, so everything here works with any transport.

Tasks are bounded (`max_inflight`; beyond it a request is dropped and logged,
like callout.go's ErrWorkerChannelFull) and the handler runs on a thread pool
sized to the cores, so bcrypt never blocks the event loop. A reply that would
arrive after the server's deadline is dropped, not sent late.

Reload swaps the frozen `HandlerContext` in one assignment; each request
keeps the context it started with, so a reload neither changes nor drops a
request in flight, and its log line names the policy version that decided.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import structlog

from service.handler import HandlerContext, Outcome, handle
from service.secretcache import SecretCache
from service.selfcheck import FirstRequestChecks, Verdict

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from service.config import Keys, Settings
    from service.health import Health
    from service.metrics import Metrics
    from service.policy import Policy
    from service.reload import Loaded
    from service.signers import AccountSigner

    Respond = Callable[[bytes], Awaitable[None]]

log = structlog.get_logger("callout")

_EVENTS = {
    "allow": "callout.request_authorized",
    "deny": "callout.request_rejected",
    "abort": "callout.request_aborted",
}
_EXPIRED = frozenset({"deadline_passed", "expired_request"})


class Dispatcher:
    """Runs requests through the handler with the policy in force."""

    def __init__(
        self,
        settings: Settings,
        keys: Keys,
        policy: Policy,
        signers: Mapping[str, AccountSigner],
        *,
        metrics: Metrics,
        health: Health,
    ) -> None:
        self.secret_cache = SecretCache()
        self._ctx = HandlerContext(
            issuer=keys.issuer,
            xkey=keys.xkey,
            policy=policy,
            check_secret=self.secret_cache,
            signers=signers,
            issuer_account=settings.issuer_account or "",
        )
        self._max_inflight = settings.max_inflight
        self._pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="callout")
        self._tasks: set[asyncio.Task[None]] = set()  # requests in flight
        self._checking: set[asyncio.Task[None]] = set()
        self._metrics = metrics
        self._health = health
        self._checks = FirstRequestChecks(
            mode=settings.mode, issuer_account=settings.issuer_account or ""
        )
        self.received = 0
        metrics.set_policy(policy.version_hash)
        metrics.track(
            inflight=lambda: len(self._tasks),
            connected=lambda: float(health.connected),
        )

    @property
    def context(self) -> HandlerContext:
        return self._ctx

    def install(self, loaded: Loaded) -> None:
        """Put a reloaded policy in force (one assignment: atomic on the loop)."""
        self._ctx = dataclasses.replace(
            self._ctx, policy=loaded.policy, signers=loaded.signers
        )
        # hygiene more than correctness: cached successes are keyed by the hash
        self.secret_cache.clear()
        self._metrics.set_policy(loaded.policy.version_hash)

    def accept(
        self, data: bytes, headers: Mapping[str, str] | None, respond: Respond
    ) -> None:
        """Start handling one request, or drop it when `max_inflight` are running."""
        self.received += 1
        if len(self._tasks) >= self._max_inflight:
            self._metrics.drop("overload")
            log.warning(
                "callout.request_dropped", reason="overload", inflight=len(self._tasks)
            )
            return
        task = asyncio.create_task(self._process(data, headers, respond))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Until every request accepted so far is finished."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    def cut_off(self) -> int:
        """Cancel what is still running (the shutdown grace is over); how many."""
        cut = len(self._tasks)
        for task in self._tasks:
            task.cancel()
        self._metrics.drop("shutdown", cut)
        return cut

    def close(self) -> None:
        for task in self._checking:
            task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def report(self, verdict: Verdict, *, readiness: bool = False) -> None:
        """Log self-check findings; a first-request verdict also sets readiness."""
        for finding in verdict.findings:
            emit = log.error if finding.level == "error" else log.warning
            emit(finding.event, **finding.fields)
        if readiness:
            self._health.key_problem = verdict.problem

    async def _process(
        self, data: bytes, headers: Mapping[str, str] | None, respond: Respond
    ) -> None:
        started = time.perf_counter()
        ctx = self._ctx  # kept for the whole request, whatever reloads meanwhile
        now = time.time()
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(
                self._pool, functools.partial(handle, data, headers, ctx=ctx, now=now)
            )
        except Exception:
            self._metrics.observe("abort", "internal_error", 0.0)
            log.exception(
                "callout.request_aborted", decision="abort", reason="internal_error"
            )
            return
        reply = outcome.reply
        if reply is not None:
            # exp is whole seconds (see codec.decode_request): past exp + 1 the
            # server has certainly given up, so a reply would only be noise.
            if outcome.expires and math.floor(time.time()) > outcome.expires:
                outcome = dataclasses.replace(
                    outcome, decision="abort", reply=None, reason="deadline_passed"
                )
            else:
                await respond(reply)
        self._log(outcome, started, ctx.policy.version_hash)
        if self._checks.first_seen(outcome, data, headers) is not None:
            # after the reply and outside the request: a check never delays
            # or counts as a request, and never queues behind bcrypt
            check = functools.partial(
                self._checks.check, data, headers, outcome, ctx, now
            )
            task = asyncio.create_task(self._check(check))
            self._checking.add(task)
            task.add_done_callback(self._checking.discard)

    async def _check(self, check: Callable[[], Verdict]) -> None:
        verdict = await asyncio.get_running_loop().run_in_executor(None, check)
        self.report(verdict, readiness=True)

    def _log(self, outcome: Outcome, started: float, version: str) -> None:
        seconds = time.perf_counter() - started
        self._metrics.observe(outcome.decision, outcome.reason, seconds)
        if outcome.reason in _EXPIRED:
            self._metrics.drop("expired")
        fields = outcome.log_fields()
        fields["duration_ms"] = round(seconds * 1000, 3)
        fields["policy_version"] = version
        event = _EVENTS[outcome.decision]
        if outcome.decision == "abort":
            log.warning(event, **fields)
        else:
            log.info(event, **fields)
