"""
Request dispatch: decide, reply, one log line, metrics, checks.

No `nats` import: the worker hands over each message as bytes, headers and
a `respond` coroutine function, so everything here works with any transport.

Two lanes (dispatch/fastlane.py, dispatch/coldlane.py):

- fast: every request is first decided on the event loop, inside `accept`,
  with a secret check that only consults the verification cache. Without
  bcrypt a decision is a fraction of a millisecond, so a known user's
  connect never waits behind anyone's bcrypt, and the worker's subscription
  callback does not return before the decision: nats-py holds the next
  messages meanwhile (back-pressure instead of an unbounded pile of tasks).
  A policy with identity providers may wait for a JWKS refresh (bounded by
  `unknown_kid_wait`), so its fast attempts run on a small pool instead;
- cold: a request whose secret is not in the cache goes to the cold lane:
  bcrypt on `threads` threads, shed when it cannot make its deadline.

At most `max_inflight` requests are in the service at once (beyond it a
request is dropped and logged, like callout.go's ErrWorkerChannelFull). A
reply that would arrive after the server's deadline is dropped, not sent late.

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

from service.dispatch.coldlane import ColdLane, Shed
from service.dispatch.fastlane import (
    Claimed,
    check_or_defer,
    decide_fast,
    deferring,
    fast_thread,
)
from service.dispatch.logincache import LoginCache
from service.dispatch.recorder import DecisionRecorder
from service.dispatch.selfcheck import FirstRequestChecks, Verdict
from service.dispatch.sharedkey import derive, replica_key
from service.dispatch.throttle import LoginThrottle
from service.handler import HandlerContext, Outcome, handle

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from service.config import Keys, Settings
    from service.dispatch.audit import AuditBuffer
    from service.dispatch.cachepeers import Link
    from service.handler import Admit
    from service.ops.health import Health
    from service.ops.metrics import Metrics
    from service.policy import Policy
    from service.signers import AccountSigner, Loaded

    Respond = Callable[[bytes], Awaitable[None]]

log = structlog.get_logger("callout")

_FAST_THREADS = 2  # one may wait for a JWKS refresh, the other goes on


@dataclasses.dataclass(frozen=True, slots=True)
class _Request:
    data: bytes
    headers: Mapping[str, str] | None
    respond: Respond
    ctx: HandlerContext  # kept for the whole request, whatever reloads meanwhile
    now: float  # wall clock when received
    received: float  # monotonic
    started: float  # perf_counter, for the duration metric


def _paced(outcome: Outcome) -> bool:
    return outcome.paced


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
        peers: Link | None = None,
        audit: AuditBuffer | None = None,
    ) -> None:
        # the HMAC keys of the state shared by replicas (a bucket), else by
        # the workers, else by nobody (dispatch/sharedkey.py)
        base = replica_key(keys.issuer.export_seed()) if settings.state_bucket else None
        if base is None and peers is not None:
            base = peers.key
        self.login_cache = LoginCache(
            check=check_or_defer,
            ttl=settings.cache_ttl,
            key=derive(base, "login cache"),
            on_success=None if peers is None else peers.tell,
        )
        self.throttle = LoginThrottle(
            policy.document.throttle,
            metrics=metrics,
            key=derive(base, "throttle"),
            deferring=deferring,
        )
        if peers is not None:
            self.throttle.listen(peers.tell_event)
        self._ctx = HandlerContext(
            issuer=keys.issuer,
            xkey=keys.xkey,
            policy=policy,
            check_secret=self.login_cache,
            signers=signers,
            issuer_account=settings.issuer_account or "",
            guard=self.throttle,
            holds=self.login_cache.holds,
        )
        self._max_inflight = settings.max_inflight
        # an unknown name refused without its decoy is answered by the lane
        # when a check would have been: the same time, no CPU (coldlane.py)
        self.cold: ColdLane[Outcome] = ColdLane(settings.threads, paced=_paced)
        self._fast_pool = ThreadPoolExecutor(
            _FAST_THREADS, thread_name_prefix="callout-fast", initializer=fast_thread
        )
        self._tasks: set[asyncio.Task[None]] = set()  # requests in flight
        self._inflight = 0  # accepted, not finished (fast ones only briefly)
        self._checking: set[asyncio.Task[None]] = set()
        self._metrics = metrics
        self._record = DecisionRecorder(metrics, audit)
        self._health = health
        self._checks = FirstRequestChecks(
            mode=settings.mode, issuer_account=settings.issuer_account or ""
        )
        self.received = 0
        metrics.set_policy(policy.version_hash)
        metrics.track(
            inflight=lambda: self._inflight,
            connected=lambda: float(health.connected),
            ready=lambda: float(health.not_ready() is None),
        )
        metrics.track_cache(self.login_cache)
        metrics.track_backoffs(self.throttle.active)

    @property
    def context(self) -> HandlerContext:
        return self._ctx

    @property
    def policy(self) -> Policy:
        """The policy in force."""
        return self._ctx.policy

    def install(self, loaded: Loaded) -> None:
        """Put a reloaded policy in force (one assignment: atomic on the loop)."""
        self._ctx = dataclasses.replace(
            self._ctx, policy=loaded.policy, signers=loaded.signers
        )
        self.throttle.configure(loaded.policy.document.throttle)
        # hygiene more than correctness: cached successes are keyed by the hash
        self.login_cache.clear()
        self._metrics.set_policy(loaded.policy.version_hash)

    def set_admit(self, admit: Admit) -> None:
        """Give live sessions the last word on each Allow (handler.py `admit`)."""
        self._ctx = dataclasses.replace(self._ctx, admit=admit)

    def accept(
        self, data: bytes, headers: Mapping[str, str] | None, respond: Respond
    ) -> None:
        """`dispatch` in a task of its own, for callers that cannot await."""
        self._track(asyncio.create_task(self.dispatch(data, headers, respond)))

    async def dispatch(
        self, data: bytes, headers: Mapping[str, str] | None, respond: Respond
    ) -> None:
        """
        Handle one request: answered before this returns when the decision
        needs no bcrypt, else queued for the cold lane (or dropped: overload).
        """
        self.received += 1
        if self._inflight >= self._max_inflight:
            self._record.overload(self._inflight)
            return
        self._inflight += 1
        handed_over = False
        try:
            req = _Request(
                data,
                headers,
                respond,
                self._ctx,
                time.time(),
                time.monotonic(),
                time.perf_counter(),
            )
            inline = not req.ctx.policy.providers  # nothing else can make it wait
            if inline:
                try:
                    outcome = decide_fast(data, headers, req.ctx, req.now)
                except Exception:  # noqa: BLE001 - logged as an abort
                    self._record.internal_error()
                    return
                if outcome is not None:
                    await self._finish(req, outcome)
                    return
            self._track(asyncio.create_task(self._queued(req, tried=inline)))
            handed_over = True
        finally:
            if not handed_over:
                self._inflight -= 1

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Until every request accepted so far is finished."""
        while self._tasks:  # a finishing task may have queued another
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
        self.cold.close()
        self._fast_pool.shutdown(wait=False, cancel_futures=True)

    def report(self, verdict: Verdict, *, readiness: bool = False) -> None:
        """Log self-check findings; a first-request verdict also sets readiness."""
        for finding in verdict.findings:
            emit = log.error if finding.level == "error" else log.warning
            emit(finding.event, **finding.fields)
        if readiness:
            self._health.key_problem = verdict.problem

    async def _queued(self, req: _Request, *, tried: bool) -> None:
        """A request the event loop could not decide: fast pool, then cold lane."""
        try:
            outcome = await self._decide_queued(req, tried=tried)
            if outcome is not None:
                await self._finish(req, outcome)
        finally:
            self._inflight -= 1

    async def _decide_queued(self, req: _Request, *, tried: bool) -> Outcome | None:
        """The outcome; None when dropped (shed) or failed (both logged here)."""
        loop = asyncio.get_running_loop()
        try:
            outcome = None
            if not tried:
                outcome = await loop.run_in_executor(
                    self._fast_pool,
                    decide_fast,
                    req.data,
                    req.headers,
                    req.ctx,
                    req.now,
                )
            if outcome is None:
                claimed = Claimed(
                    req.data,
                    req.headers,
                    req.ctx.xkey,
                    received=req.received,
                    wall=req.now,
                )
                decided = await self._decide_cold(req, claimed, loop)
                if isinstance(decided, Shed):
                    # no reply: the server refuses the client at its deadline,
                    # it tries again (maybe a cache hit then: see coldlane.py)
                    self._record.shed(
                        decided,
                        req.started,
                        req.ctx,
                        self.cold.cost,
                        claimed=claimed.log_fields(),
                    )
                    return None
                outcome = decided
        except Exception:  # noqa: BLE001 - logged as an abort
            self._record.internal_error()
            return None
        return outcome

    async def _finish(self, req: _Request, outcome: Outcome) -> None:
        """Reply (unless too late), log, and check a new server's configuration."""
        reply = outcome.reply
        # Counted before the client hears the answer: a guesser's next try
        # (sent as soon as this refusal arrives) must meet the new count, or
        # a sequential guesser would get a free bcrypt check per failure.
        self.throttle.observe(outcome)
        if reply is not None:
            # exp is whole seconds (see protocol.request.decode_request): past
            # exp + 1 the server has certainly given up, so a reply is noise.
            if outcome.expires and math.floor(time.time()) > outcome.expires:
                outcome = dataclasses.replace(
                    outcome, decision="abort", reply=None, reason="deadline_passed"
                )
            else:
                await req.respond(reply)
        self._record.outcome(outcome, req.started, req.ctx.policy.version_hash)
        if self._checks.first_seen(outcome, req.data, req.headers) is not None:
            # after the reply and outside the request: a check never delays
            # or counts as a request, and never queues behind bcrypt
            check = functools.partial(
                self._checks.check, req.data, req.headers, outcome, req.ctx, req.now
            )
            task = asyncio.create_task(self._check(check))
            self._checking.add(task)
            task.add_done_callback(self._checking.discard)

    async def _decide_cold(
        self, req: _Request, claimed: Claimed, loop: asyncio.AbstractEventLoop
    ) -> Outcome | Shed:
        check = functools.partial(
            handle, req.data, req.headers, ctx=req.ctx, now=req.now
        )
        # the lane's thread reads the claims once, when it picks the request
        return await self.cold.submit(
            check, deadline=claimed.deadline, received=req.received, loop=loop
        )

    async def _check(self, check: Callable[[], Verdict]) -> None:
        verdict = await asyncio.get_running_loop().run_in_executor(None, check)
        self.report(verdict, readiness=True)
