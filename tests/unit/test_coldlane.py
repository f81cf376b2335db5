"""The cold lane: results, deadline shedding, idle-time spare runs, priority, close."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from service.dispatch.coldlane import SPARE_AGE, ColdLane, Shed

if TYPE_CHECKING:
    from collections.abc import Callable


def _never() -> float:
    return float("inf")


def _record(seen: list[str], item: str) -> Callable[[], str]:
    def fn() -> str:
        seen.append(item)
        return item

    return fn


def _setting(event: threading.Event) -> Callable[[], str]:
    def fn() -> str:
        event.set()
        return "set"

    return fn


async def _submit(
    lane: ColdLane[str], fn: Callable[[], str], *, deadline: float | None = None
) -> asyncio.Future[str | Shed]:
    until = _never if deadline is None else (lambda: deadline)
    return lane.submit(
        fn,
        deadline=until,
        received=time.monotonic(),
        loop=asyncio.get_running_loop(),
    )


async def test_a_result_and_an_exception_reach_the_awaiting_task() -> None:
    """Each future gets its function's return value or exception."""
    lane: ColdLane[str] = ColdLane(1)

    def boom() -> str:
        raise ValueError("boom")

    ok = await _submit(lane, lambda: "done")
    bad = await _submit(lane, boom)

    assert await ok == "done"
    with pytest.raises(ValueError, match="boom"):
        await bad
    lane.close()


async def test_no_thread_starts_before_the_first_job() -> None:
    """A lane nobody uses costs no threads."""
    before = threading.active_count()
    lane: ColdLane[str] = ColdLane(4)

    assert threading.active_count() == before
    lane.close()


async def test_a_job_that_cannot_make_its_deadline_is_shed_unrun() -> None:
    """With checks known to take 10 s, a job due in 1 s is dropped, not run."""
    lane: ColdLane[str] = ColdLane(1)
    lane.cost = 10.0
    ran = threading.Event()

    shed = await (await _submit(lane, _setting(ran), deadline=time.monotonic() + 1))

    assert isinstance(shed, Shed)
    assert shed.left < lane.cost
    assert lane.shed == 1
    lane.close()


async def test_a_shed_job_runs_in_idle_time_without_an_answer() -> None:
    """The dropped job's check still runs once nothing else waits (cache warming)."""
    lane: ColdLane[str] = ColdLane(1)
    lane.cost = 10.0
    ran = threading.Event()

    def check() -> str:
        ran.set()
        return "verified"

    future = await _submit(lane, check, deadline=time.monotonic() + 1)
    result = await future
    warmed = await asyncio.to_thread(ran.wait, 30)

    assert isinstance(result, Shed)
    assert warmed
    assert lane.spare_runs == 1
    lane.close()


async def test_spare_work_waits_for_every_job_that_can_make_its_deadline() -> None:
    """A fresh job goes before a shed one's idle-time run."""
    lane: ColdLane[str] = ColdLane(1)
    order: list[str] = []
    gate = threading.Event()

    def blocker() -> str:
        gate.wait(30)
        order.append("blocker")
        return "blocker"

    first = await _submit(lane, blocker)
    await asyncio.sleep(0)  # the thread picks the blocker
    lane.cost = 10.0
    shed = await _submit(lane, _record(order, "spare"), deadline=time.monotonic() + 1)
    fresh = await _submit(lane, _record(order, "fresh"))
    gate.set()

    assert await first == "blocker"
    assert isinstance(await shed, Shed)
    assert await fresh == "fresh"
    await asyncio.to_thread(_wait_for, lambda: "spare" in order)
    assert order == ["blocker", "fresh", "spare"]
    lane.close()


async def test_spare_work_older_than_spare_age_is_forgotten() -> None:
    """A client refused long ago has tried again or given up: no idle-time run."""
    now = [1000.0]
    lane: ColdLane[str] = ColdLane(1, clock=lambda: now[0])
    lane.cost = 10.0
    ran = threading.Event()
    future = lane.submit(
        _setting(ran),
        deadline=lambda: now[0] + 1,
        received=now[0] - SPARE_AGE - 1,
        loop=asyncio.get_running_loop(),
    )

    assert isinstance(await future, Shed)
    marker = await _submit(lane, lambda: "after")
    assert await marker == "after"  # the thread went round once more
    assert not ran.is_set()
    lane.close()


async def test_cache_hits_do_not_lower_the_expected_cost() -> None:
    """Only checks that took real time (bcrypt) feed the cost average."""
    lane: ColdLane[str] = ColdLane(1)

    def slow() -> str:
        time.sleep(0.02)
        return "bcrypt"

    await (await _submit(lane, lambda: "hit"))
    after_hit = lane.cost
    await (await _submit(lane, slow))

    assert after_hit is None
    assert (lane.cost or 0.0) >= 0.02
    lane.close()


async def test_close_waits_for_the_running_check_and_drops_the_queue() -> None:
    """close() returns after the running job; queued ones never start."""
    lane: ColdLane[str] = ColdLane(1)
    gate, started = threading.Event(), threading.Event()
    ran: list[str] = []

    def running() -> str:
        started.set()
        gate.wait(30)
        ran.append("running")
        return "running"

    await _submit(lane, running)
    await _submit(lane, _record(ran, "queued"))
    await asyncio.to_thread(started.wait, 30)
    threading.Timer(0.05, gate.set).start()
    await asyncio.to_thread(lane.close)

    assert ran == ["running"]


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")
async def test_checks_run_below_the_process_priority() -> None:
    """bcrypt threads are niced, so the event loop and nats-server come first."""
    lane: ColdLane[int] = ColdLane(1, nice=3)
    base = os.getpriority(os.PRIO_PROCESS, 0)

    def own_nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    nice = await lane.submit(
        own_nice,
        deadline=_never,
        received=time.monotonic(),
        loop=asyncio.get_running_loop(),
    )

    assert nice == min(19, base + 3)
    lane.close()


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met")
        time.sleep(0.005)
