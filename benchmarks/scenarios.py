"""
The connect scenarios of storms.py: sequential, warm, reconnect and cold storms.

Each runs the floor, callout and bcrypt stacks (stormenv.py) in turn, with
the same users and the same client behaviour (rawclient.py), and returns
`Figure`s for the table. Every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

from rawclient import Backoff, Held, Tally, connect_close, until_connected
from soak import connect_once

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from rawclient import Conn, Login
    from stormenv import Stacks


@dataclass
class Figure:
    """One table row: a value per stack (None: not measured), and a goal."""

    scenario: str
    metric: str
    values: dict[str, float | None] = field(default_factory=dict)
    goal: str = ""
    met: bool | None = None
    note: str = ""
    reference: tuple[str, float] | None = None  # ratios against it, not the floor


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class ClientCpu:
    """CPU share of the benchmark's own event loop thread (the clients)."""

    def __enter__(self) -> Self:
        self.cpu, self.wall = time.thread_time(), time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.share = (time.thread_time() - self.cpu) / (time.perf_counter() - self.wall)


async def prewarm(stacks: Stacks, users: list[str], deadline: float) -> int:
    """
    Connect users through the callout until every worker's cache holds each.

    Each worker process has its own cache, and the queue group hands a
    request to any of them: a user is warm when every worker has logged an
    authorization for it. Returns the failed attempts.
    """
    rng, tally, gate = random.Random(1), Tally(), asyncio.Semaphore(8)
    assert stacks.service is not None  # noqa: S101 - started

    async def one(user: str) -> None:
        async with gate:
            conn = await until_connected(
                stacks.login("callout", user), tally, deadline, Backoff(0.2, 0.2), rng
            )
            if conn is not None:
                conn.close()

    want = {(u, w) for u in users for w in range(stacks.workers)}
    while want and time.monotonic() < deadline:
        await asyncio.gather(*(one(u) for u in {u for u, _ in want}))
        want -= {
            (r.get("user"), r.get("worker", 0))
            for r in stacks.service.events("callout.request_authorized")
        }
    return tally.failed


async def sequential(
    stacks: Stacks, users: list[str], n: int, n_bcrypt: int
) -> list[Figure]:
    """
    p50/p99 of one connect at a time, raw protocol and nats-py clients.

    The stacks take turns connect by connect, so a slow spell of the machine
    falls on all of them alike instead of on whichever ran then.
    """
    figures = []
    kinds: dict[str, Callable[[Login], Awaitable[tuple[bool, float]]]] = {
        "raw": connect_close,
        "nats-py": lambda lg: connect_once(
            f"nats://{lg.host}:{lg.port}", lg.user, lg.password
        ),
    }
    names = stacks.connect_stacks()
    for kind, connect in kinds.items():
        times: dict[str, list[float]] = {stack: [] for stack in names}
        failed: dict[str, int] = dict.fromkeys(names, 0)
        for i in range(n):
            for stack in names:
                if i >= (n_bcrypt if stack == "bcrypt" else n):
                    continue
                ok, seconds = await connect(stacks.login(stack, users[i % len(users)]))
                times[stack].append(seconds * 1000)
                failed[stack] += not ok
        p50, p99 = (
            Figure("2 sequential", f"connect p50 ms ({kind})"),
            Figure("2 sequential", f"connect p99 ms ({kind})"),
        )
        for stack in names:
            p50.values[stack] = statistics.median(times[stack])
            p99.values[stack] = quantile(times[stack], 0.99)
            if failed[stack]:
                p50.note += f"{stack}: {failed[stack]} failed; "
        p50.goal, p99.goal = "callout <= 1.5x floor", ""
        floor, callout = p50.values.get("floor"), p50.values.get("callout")
        p50.met = floor is not None and callout is not None and callout <= 1.5 * floor
        figures += [p50, p99]
    return figures


async def warm_storm(
    stacks: Stacks, users: list[str], clients: int, seconds: float
) -> list[Figure]:
    """`clients` known users connect at once; wall time until all are in."""
    wall = Figure("3 warm storm", f"wall s, {clients} clients")
    failed = Figure("3 warm storm", "failed attempts")
    cpu = Figure("3 warm storm", "client CPU share (of one core)")
    for stack in stacks.connect_stacks():
        tally, rng = Tally(), random.Random(3)
        started = time.monotonic()
        deadline = started + seconds
        cpu_meter = stacks.meter(stack)
        cpu_meter.start()
        with ClientCpu() as meter:
            conns = await asyncio.gather(
                *(
                    until_connected(
                        stacks.login(stack, users[i % len(users)]),
                        tally,
                        deadline,
                        Backoff(),
                        rng,
                    )
                    for i in range(clients)
                )
            )
        missing = sum(c is None for c in conns)
        last = max(tally.connected_at, default=deadline)
        wall.values[stack] = (last if not missing else deadline) - started
        failed.values[stack] = float(tally.failed)
        failed.note += f"{stack}: {missing} never in ({tally.reasons()}); "
        cpu.values[stack] = meter.share
        cpu.note += f"{stack}: CPU s {cpu_meter.stop()}; "
        _close(conns)
        if stack == "bcrypt":
            await asyncio.to_thread(stacks.restart_bcrypt)
    wall.goal = "callout <= 1.5x floor, 0 failures"
    wall.met = _ratio(wall, "callout") <= 1.5 and failed.values.get("callout") == 0
    return [wall, failed, cpu]


def _close(conns: list[Conn | None]) -> None:
    for conn in conns:
        if conn is not None:
            conn.close()


def _ratio(figure: Figure, stack: str) -> float:
    value, floor = figure.values.get(stack), figure.values.get("floor")
    if value is None or not floor:
        return float("nan")
    return value / floor


async def until(check: Callable[[], bool], deadline: float) -> float | None:
    """Poll `check` every 10 ms; the monotonic time it held, None at `deadline`."""
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        await asyncio.sleep(0.01)
    return None


class _Fleet:
    """Held connections of one stack, and what they saw."""

    def __init__(self, stacks: Stacks, stack: str, users: list[str], n: int) -> None:
        self.held = [
            Held(stacks.login(stack, users[i % len(users)]), Backoff(), seed=i)
            for i in range(n)
        ]
        self.tally = Tally()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, deadline: float) -> None:
        self.tasks = [
            asyncio.create_task(h.run(self.tally, deadline)) for h in self.held
        ]

    def all_up(self) -> bool:
        return all(h.conn for h in self.held)

    def back_since(self, moment: float) -> int:
        return sum(bool(h.conn) and h.since > moment for h in self.held)

    async def stop(self) -> None:
        for h in self.held:
            h.stop()
        await asyncio.gather(*self.tasks)


async def _reconnect(
    stacks: Stacks, stack: str, fleet: _Fleet, seconds: float, *, forget: bool = False
) -> tuple[float | None, float | None, int]:
    """(all in before, all back after the restart, never back)."""
    fleet.start(time.monotonic() + 2 * seconds)
    ready = await until(fleet.all_up, time.monotonic() + seconds)
    if stack == "bcrypt":
        stacks.swap_body("bcrypt", stacks.bcrypt_body())
    if forget:
        await asyncio.to_thread(stacks.forget)
    fleet.tally.failures.clear()
    started = time.monotonic()
    restart = asyncio.create_task(asyncio.to_thread(stacks.servers[stack].restart))
    n = len(fleet.held)
    done = await until(lambda: fleet.back_since(started) == n, started + seconds)
    await restart
    never = n - fleet.back_since(started)
    await fleet.stop()
    return ready, None if done is None else done - started, never


async def reconnect_storm(
    stacks: Stacks, users: list[str], clients: int, seconds: float
) -> list[Figure]:
    """`clients` connected; the server restarts; time until all are back."""
    back = Figure("4 reconnect storm", f"s until all {clients} back")
    failed = Figure("4 reconnect storm", "failed attempts")
    for stack in stacks.names:
        if stack == "bcrypt":
            # connecting 2 000 bcrypt users would take minutes: they connect
            # to a plaintext config, and the restart brings the hashes in
            stacks.swap_body("bcrypt", stacks.plain_body())
            await asyncio.to_thread(stacks.servers["bcrypt"].restart)
        fleet = _Fleet(stacks, stack, users, clients)
        ready, took, never = await _reconnect(stacks, stack, fleet, seconds)
        back.values[stack] = seconds if took is None else took
        failed.values[stack] = float(fleet.tally.failed)
        failed.note += f"{stack}: {never} never back ({fleet.tally.reasons()}); "
        if ready is None:
            failed.note += f"{stack}: not all in before the restart; "
        if stack == "callout":
            back.met = never == 0 and ready is not None
        if stack == "bcrypt":
            await asyncio.to_thread(stacks.restart_bcrypt)
    back.goal = "every client back, 0 permanent failures"
    if "callout" not in stacks.names:
        return [back, failed]
    # the same, with the cache emptied first: what a restart looks like when
    # the clients connected longer than CALLOUT_CACHE_TTL ago
    cold = Figure("4 reconnect storm", "  same, cache expired (callout)")
    fleet = _Fleet(stacks, "callout", users, clients)
    _, took, never = await _reconnect(stacks, "callout", fleet, seconds, forget=True)
    cold.values["callout"] = seconds if took is None else took
    cold.note = (
        f"{len(users)} distinct users, {never} never back, "
        f"{fleet.tally.failed} failed attempts ({fleet.tally.reasons()})"
    )
    return [back, failed, cold]
