"""
Scenario 5 of storms.py: a cold storm, and a known user connecting during it.

Distinct users whose cost-12 passwords the service never saw connect at
once and retry like nats.go clients (2 s + up to 0.1 s after a failure).
The figure is authorizations per second against the bcrypt ceiling of the
machine (cores / the time of one check, measured here, in the same run);
meanwhile a known (cached) user connects every `PROBE_EVERY` seconds, and
its connect latency shows whether the callout's event loop ever stalls.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import TYPE_CHECKING

import bcrypt
from rawclient import Backoff, Tally, connect_close, until_connected
from scenarios import STACKS, Figure, prewarm, quantile
from stormenv import COST, cores

if TYPE_CHECKING:
    from rawclient import Login
    from stormenv import Stacks

PROBE_EVERY = 0.1
PROBE_GOAL_MS = 50.0


def bcrypt_seconds(samples: int = 5) -> float:
    """Median seconds of one cost-12 check on this machine, now."""
    hashed = bcrypt.hashpw(b"ceiling", bcrypt.gensalt(COST, prefix=b"2a"))
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        bcrypt.checkpw(b"ceiling", hashed)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def probe(login: Login, stop: asyncio.Event) -> tuple[list[float], int]:
    """Connect-close `login` every PROBE_EVERY s until `stop`: (ms each, failures)."""
    latencies, failures = [], 0
    while not stop.is_set():
        ok, seconds = await connect_close(login)
        if ok:
            latencies.append(seconds * 1000)
        else:
            failures += 1
        try:
            async with asyncio.timeout(PROBE_EVERY):
                await stop.wait()
        except TimeoutError:
            pass
    return latencies, failures


async def cold_storm(
    stacks: Stacks, cold: list[str], known: str, seconds: float
) -> list[Figure]:
    """All of `cold` connect at once; `known` probes; bounded by `seconds`."""
    check = bcrypt_seconds()
    ceiling = cores() / check
    scenario = "5 cold storm"
    rate = Figure(scenario, f"authorizations/s, {len(cold)} new users")
    rate.note = f"ceiling {ceiling:.2f}/s = {cores()} cores / {check * 1000:.0f} ms; "
    failed = Figure(scenario, "failed attempts")
    p50 = Figure(scenario, "known user connect p50 ms")
    worst = Figure(scenario, "known user connect max ms")
    await prewarm(stacks, [known], time.monotonic() + 10)
    for stack in STACKS:
        tally, stop = Tally(), asyncio.Event()
        probing = asyncio.create_task(probe(stacks.login(stack, known), stop))
        started = time.monotonic()
        conns = await asyncio.gather(
            *(
                until_connected(
                    stacks.login(stack, user),
                    tally,
                    started + seconds,
                    Backoff(),
                    random.Random(i),
                )
                for i, user in enumerate(cold)
            )
        )
        stop.set()
        latencies, probe_failures = await probing
        done = len(tally.connected_at)
        last = max(tally.connected_at) if done == len(cold) else time.monotonic()
        rate.values[stack] = done / (last - started)
        failed.values[stack] = float(tally.failed)
        failed.note += f"{stack}: {len(cold) - done} never in ({tally.reasons()}); "
        p50.values[stack] = statistics.median(latencies) if latencies else None
        worst.values[stack] = max(latencies, default=None)
        over = sum(x > PROBE_GOAL_MS for x in latencies)
        worst.note += (
            f"{stack}: {len(latencies)} probes, {over} > {PROBE_GOAL_MS:.0f} ms, "
            f"p99 {quantile(latencies, 0.99):.0f}, {probe_failures} failed; "
        )
        if stack == "callout":
            callout_rate = rate.values[stack] or 0.0
            rate.met = callout_rate >= 0.8 * ceiling
            worst.met = probe_failures == 0 and over == 0 and bool(latencies)
        for conn in conns:
            if conn is not None:
                conn.close()
        if stack == "bcrypt":
            await asyncio.to_thread(stacks.restart_bcrypt)
    rate.goal = ">= 80% of the bcrypt ceiling"
    rate.reference = ("ceiling", ceiling)
    worst.goal = f"< {PROBE_GOAL_MS:.0f} ms throughout"
    return [rate, failed, p50, worst]
