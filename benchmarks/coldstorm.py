"""
Scenario 5 of storms.py: a cold storm, and a known user connecting during it.

Distinct users whose cost-12 passwords the service never saw connect at
once and retry like nats.go clients (2 s + up to 0.1 s after a failure).
The figure is authorizations per second against the bcrypt ceiling of the
machine (cores / the time of one check, measured here, in the same run);
meanwhile a known (cached) user connects every `PROBE_EVERY` seconds, and
its connect latency shows whether the callout's event loop ever stalls. The
probe runs in a process of its own (`coldstorm.py probe ...`): in the
storm's process it would also time that process's own burst of connects.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import threading
import time
from typing import TYPE_CHECKING

import bcrypt
from rawclient import Backoff, Login, Tally, connect_close, until_connected
from scenarios import Figure, prewarm, quantile
from stormenv import COST, cores

if TYPE_CHECKING:
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


async def _probe(login: Login) -> dict[str, object]:
    """Connect-close `login` every PROBE_EVERY s until stdin closes."""
    latencies, when, failures = [], [], 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wait_for_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    print("ready", flush=True)
    first = time.monotonic()
    while not stop.is_set():
        started = time.monotonic()
        ok, seconds = await connect_close(login)
        if ok:
            latencies.append(seconds * 1000)
            when.append(started - first)
        else:
            failures += 1
        try:
            async with asyncio.timeout(PROBE_EVERY):
                await stop.wait()
        except TimeoutError:
            pass
    return {"latencies": latencies, "when": when, "failures": failures}


class Probe:
    """The probe process: `start()`, the storm, then `result()`."""

    def __init__(self, login: Login) -> None:
        self.login = login
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        lg = self.login
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "probe",
            lg.host,
            str(lg.port),
            lg.user,
            lg.password,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None  # noqa: S101 - PIPE above
        await self.proc.stdout.readline()  # "ready"

    async def result(self) -> tuple[list[float], list[float], int]:
        """ms of each connect, when each started (s after the first), failures."""
        assert self.proc is not None  # noqa: S101 - start() first
        assert self.proc.stdin is not None  # noqa: S101 - PIPE above
        self.proc.stdin.close()
        out, _ = await self.proc.communicate()
        found = json.loads(out)
        return found["latencies"], found["when"], found["failures"]


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
    for stack in stacks.names:
        tally, probe = Tally(), Probe(stacks.login(stack, known))
        await probe.start()
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
        latencies, when, probe_failures = await probe.result()
        done = len(tally.connected_at)
        last = max(tally.connected_at) if done == len(cold) else time.monotonic()
        rate.values[stack] = done / (last - started)
        failed.values[stack] = float(tally.failed)
        failed.note += f"{stack}: {len(cold) - done} never in ({tally.reasons()}); "
        p50.values[stack] = statistics.median(latencies) if latencies else None
        worst.values[stack] = max(latencies, default=None)
        over = [f"{w:.1f}" for x, w in zip(latencies, when, strict=True) if x > 50]
        worst.note += (
            f"{stack}: {len(latencies)} probes, {len(over)} > {PROBE_GOAL_MS:.0f} "
            f"ms (at s {', '.join(over[:5])}), p99 {quantile(latencies, 0.99):.0f}, "
            f"{probe_failures} failed; "
        )
        if stack == "callout":
            callout_rate = rate.values[stack] or 0.0
            rate.met = callout_rate >= 0.8 * ceiling
            worst.met = probe_failures == 0 and not over and bool(latencies)
        for conn in conns:
            if conn is not None:
                conn.close()
        if stack == "bcrypt":
            await asyncio.to_thread(stacks.restart_bcrypt)
    rate.goal = ">= 80% of the bcrypt ceiling"
    rate.reference = ("ceiling", ceiling)
    worst.goal = f"< {PROBE_GOAL_MS:.0f} ms throughout"
    return [rate, failed, p50, worst]


if __name__ == "__main__" and sys.argv[1:2] == ["probe"]:
    host, port, user, secret = sys.argv[2:6]
    found = asyncio.run(_probe(Login(host, int(port), user, secret)))
    print(json.dumps(found))
