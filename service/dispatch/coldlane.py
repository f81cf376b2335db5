"""
The cold lane: secret checks that need bcrypt, on threads, against deadlines.

A cost-12 check takes ~0.25 s of one core and nats-server waits 2 s for an
answer, so when many clients arrive at once (a restart, a deploy) most of
them cannot be answered in time, whatever we do. What we can do:

- never let them delay anyone else: only requests that missed the
  verification cache come here (service/dispatch.py decides the others on
  the event loop), so a known user never waits behind bcrypt;
- spend the cores only on answers that can still arrive in time: when a
  thread picks the oldest request, it drops it (`Shed`) if its deadline is
  nearer than the expected cost of a check (an average of recent checks);
  the server then refuses that client, which tries again;
- use the cores that would otherwise idle: a dropped request's check still
  runs when nothing that can make its deadline is waiting (newest first,
  those at most `SPARE_AGE` old). Its answer is never sent, but a success
  lands in the verification cache, so the client's next attempt is a cache
  hit. Clients refused together retry together, so without this the
  threads would idle between waves of retries;
- run below the event loop's priority (nice +`NICE`), so the rest of the
  process and the machine (nats-server) stay responsive while bcrypt
  saturates every core;
- pace what was refused without the check that its timing needs (`paced`
  results: an unknown name once the decoy budget is spent). It queued and
  was shed like a check, in the same line; its result is then handed over
  by a timer when a check would have ended, a duration drawn from recent
  checks, so the time to the answer looks like a check's (the same
  distribution, not only the same mean), while the thread moves on at once
  and no CPU is spent on it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

T = TypeVar("T")

SPARE = 256  # dropped requests kept for idle time
SPARE_AGE = 10.0  # seconds: older clients have given up or tried again
NICE = 5
MARGIN = 0.02  # seconds kept for the reply's way back
JOIN_TIMEOUT = 5.0
_EWMA = 0.2
_TRIVIAL = 0.005  # a check this fast was a cache hit: it says nothing of bcrypt
RECENT = 64  # durations of recent checks that paced answers are drawn from
# before any check ran: a cost-12 bcrypt on a current core, roughly
UNMEASURED = 0.25


@dataclass(frozen=True, slots=True)
class Shed:
    """A request dropped before its check: it could not make its deadline."""

    waited: float  # seconds in the queue
    left: float  # seconds to its deadline when a thread picked it


@dataclass(eq=False, slots=True)
class _Job(Generic[T]):
    fn: Callable[[], T]
    deadline: Callable[[], float]  # computed on a lane thread, off the loop
    received: float
    future: asyncio.Future[T | Shed]
    loop: asyncio.AbstractEventLoop = field(repr=False)


def _resolve(future: asyncio.Future[T], value: T) -> None:
    if not future.done():  # cancelled at shutdown
        future.set_result(value)


def _fail(future: asyncio.Future[T], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _hand_over(job: _Job[T], fn: Callable[..., None], value: object) -> None:
    """Run `fn(job.future, value)` on the job's loop (gone: nobody waits)."""
    with contextlib.suppress(RuntimeError):
        job.loop.call_soon_threadsafe(fn, job.future, value)


def _hand_over_after(job: _Job[T], delay: float, value: T) -> None:
    """Resolve the job's future with `value` in `delay` seconds, by a timer."""

    def start() -> None:
        job.loop.call_later(max(0.0, delay), _resolve, job.future, value)

    with contextlib.suppress(RuntimeError):
        job.loop.call_soon_threadsafe(start)


class ColdLane(Generic[T]):
    """`threads` threads running submitted checks, most urgent first."""

    def __init__(
        self,
        threads: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        nice: int = NICE,
        paced: Callable[[T], bool] | None = None,
    ) -> None:
        self._clock = clock
        self._nice = nice
        self._paced = paced
        self._recent: deque[float] = deque(maxlen=RECENT)  # seconds per check
        self._cond = threading.Condition()
        self._queue: deque[_Job[T]] = deque()
        self._spare: deque[_Job[T]] = deque(maxlen=SPARE)
        self._stopping = False
        self._idle = 0  # threads waiting for work
        self.cost: float | None = None  # seconds, recent checks on average
        self.shed = 0
        self.spare_runs = 0
        self._threads = threads
        self._started = False  # threads start with the first job
        self._workers: list[threading.Thread] = []

    def submit(
        self,
        fn: Callable[[], T],
        *,
        deadline: Callable[[], float],
        received: float,
        loop: asyncio.AbstractEventLoop,
    ) -> asyncio.Future[T | Shed]:
        """
        Queue `fn`; the future gets its result, or `Shed` when dropped.

        `deadline()` gives the monotonic time by which the result is
        useless; a thread calls it when it picks the job.
        """
        future: asyncio.Future[T | Shed] = loop.create_future()
        with self._cond:
            if not self._started:
                self._started = True
                for i in range(self._threads):
                    thread = threading.Thread(
                        target=self._work, name=f"callout-cold-{i}", daemon=True
                    )
                    thread.start()
                    self._workers.append(thread)
            self._queue.append(_Job(fn, deadline, received, future, loop))
            if self._idle:
                # waking a thread that cannot start makes it fight the event
                # loop for the lock and the GIL, on every submit of a burst
                self._cond.notify()
        return future

    def __len__(self) -> int:
        return len(self._queue)

    def close(self, timeout: float = JOIN_TIMEOUT) -> None:
        """
        Drop queued work, then wait (up to `timeout`) for the running checks.

        The threads are daemons (a lane nobody closes never blocks the exit),
        so one still inside bcrypt when the interpreter finalizes would be
        ended in the middle of native code: glibc aborts the process
        ("exception not rethrown", exit -6). Hence the wait.
        """
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._spare.clear()
            self._cond.notify_all()
        until = time.monotonic() + timeout
        for thread in self._workers:
            thread.join(max(0.0, until - time.monotonic()))

    def _next(self) -> tuple[_Job[T], bool] | None:
        """The oldest queued job, else the newest recent spare; None: stop."""
        with self._cond:
            while not self._stopping:
                if self._queue:
                    return self._queue.popleft(), False
                horizon = self._clock() - SPARE_AGE
                while self._spare:
                    job = self._spare.pop()
                    if job.received >= horizon:
                        return job, True
                    self._spare.clear()  # the rest are older still
                self._idle += 1
                try:
                    self._cond.wait()
                finally:
                    self._idle -= 1
        return None

    def _work(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # not Linux: as is
            # on Linux a thread has its own nice value; relative to the
            # process's own, so a service started with `nice` stays below it
            tid = threading.get_native_id()
            base = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, base + self._nice))
        while (picked := self._next()) is not None:
            job, spare = picked
            if spare:
                self.spare_runs += 1
                with contextlib.suppress(Exception):  # nobody waits for it
                    job.fn()
                continue
            try:
                deadline = job.deadline()
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting task
                _hand_over(job, _fail, exc)
                continue
            now = self._clock()
            if self.cost is not None and now + self.cost + MARGIN > deadline:
                self.shed += 1
                shed = Shed(waited=now - job.received, left=deadline - now)
                _hand_over(job, _resolve, shed)
                with self._cond:
                    self._spare.append(job)
                continue
            self._run(job, now)

    def _run(self, job: _Job[T], started: float) -> None:
        try:
            result = job.fn()
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting task
            _hand_over(job, _fail, exc)
            return
        took = self._clock() - started
        if self._paced is not None and self._paced(result):
            # answered when a check picked now would have ended; the check's
            # own time (parsing, signing) is part of what a real one takes
            _hand_over_after(job, self.pace() - took, result)
            return
        if took > _TRIVIAL:
            # before the hand-over: whoever awaits the result sees the new cost
            cost = self.cost
            self.cost = took if cost is None else cost + _EWMA * (took - cost)
            self._recent.append(took)
        _hand_over(job, _resolve, result)

    def pace(self) -> float:
        """How long a check takes: one of the recent ones, drawn at random."""
        recent = tuple(self._recent)  # appended to by other threads
        if recent:
            return secrets.choice(recent)
        return UNMEASURED if self.cost is None else self.cost
