"""
Storm benchmark: the callout against a no-callout floor and plain bcrypt.

Run from the repository root (part of `make bench`):

    .venv/bin/python benchmarks/storms.py             # full run, ~8 minutes
    .venv/bin/python benchmarks/storms.py --quick     # smaller, ~3 minutes
    .venv/bin/python benchmarks/storms.py --only 3,5 --clients 500

Every scenario runs three stacks in this one invocation, on the same users
(stormenv.py): the floor (nats-server, plaintext passwords in its config),
the callout (nats-server + this service, cost-12 hashes in the policy) and
the usual alternative (nats-server with the same hashes in its config);
scenarios 2 and 3 also a fourth, minimal (minimalresponder.py: the least a
correct responder does, a lower bound for any callout).
Scenarios: 1 handler alone, 2 sequential connects, 3 warm storm, 4
reconnect storm, 5 cold storm, 6 saturation. Ratios are against the floor
unless a row names another reference. Everything runs on loopback; every
loop stops by itself (a count and a deadline). Goals are printed, not
enforced: the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

from coldstorm import cold_storm
from handler import decisions as handler_decisions
from saturation import saturation
from scenarios import Figure, prewarm, reconnect_storm, sequential, warm_storm
from stormenv import MINIMAL, STACKS, Stacks, cores, hashes

GOAL_HANDLER_US = 150.0
QUICK = {
    "clients": 300,
    "users": 20,
    "cold": 40,
    "seq": 50,
    "seq_bcrypt": 5,
    "storm_seconds": 20.0,
    "cold_seconds": 30.0,
    "saturation_seconds": 2.0,
}


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    add = parser.add_argument
    add("--quick", action="store_true", help="small sizes, short bounds")
    add("--only", default="1,2,3,4,5,6", help="scenarios to run, e.g. 3,5")
    add("--clients", type=int, default=2000, help="storm clients (3, 4)")
    add("--users", type=int, default=100, help="known users the clients share")
    add("--cold", type=int, default=300, help="new users in the cold storm (5)")
    add("--seq", type=int, default=200, help="sequential connects per stack (2)")
    add("--seq-bcrypt", type=int, default=20, help="... for the bcrypt stack")
    add("--storm-seconds", type=float, default=60.0, help="bound of storms 3, 4")
    add("--cold-seconds", type=float, default=90.0, help="bound of the cold storm")
    add("--saturation-seconds", type=float, default=5.0)
    add("--workers", type=int, default=1, help="service processes for 2-5")
    add("--stacks", default=",".join((*STACKS, MINIMAL)), help="e.g. callout")
    add("--max-workers", type=int, default=cores(), help="saturation: 1..N")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    args.only = {int(x) for x in args.only.split(",") if x.strip()}
    return args


def _raise_open_files() -> int:
    """2 000 clients need more descriptors than many shells allow."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


COLUMNS = ("floor", MINIMAL, "callout", "bcrypt")


def _ratios(figure: Figure) -> list[str]:
    """minimal/, callout/ and bcrypt/ the reference (the floor unless named)."""
    name, ref = figure.reference or ("floor", figure.values.get("floor"))
    out = []
    for stack in COLUMNS[1:]:
        value = figure.values.get(stack)
        out.append("-" if value is None or not ref else f"{value / ref:.2f}x")
    if name != "floor" and out[1] != "-":
        out[1] = f"{out[1]} vs {name}"
    return out


def print_table(figures: list[Figure]) -> None:
    print(
        "minimal: the least a correct responder does (minimalresponder.py), "
        "a lower bound for any callout"
    )
    head = (
        f"{'scenario':18} {'figure':40} "
        + " ".join(f"{c:>8}" for c in COLUMNS)
        + f" {'minimal/':>9} {'callout/':>16} {'bcrypt/':>8}  goal"
    )
    print(head)
    print("-" * (len(head) + 30))
    for f in figures:
        minimal_ratio, callout_ratio, bcrypt_ratio = _ratios(f)
        verdict = "" if f.met is None else (" [met]" if f.met else " [NOT met]")
        print(
            f"{f.scenario:18} {f.metric:40} "
            + " ".join(f"{_fmt(f.values.get(c)):>8}" for c in COLUMNS)
            + f" {minimal_ratio:>9} {callout_ratio:>16} {bcrypt_ratio:>8}"
            f"  {f.goal}{verdict}"
        )
    notes = [f for f in figures if f.note]
    if notes:
        print("\nnotes:")
        for f in notes:
            print(f"  {f.scenario} / {f.metric}: {f.note.rstrip('; ')}")


def handler_figures() -> list[Figure]:
    rows = dict(handler_decisions())
    cached = Figure("1 handler", "µs/decision, cached identity")
    median = rows["allow, cached identity"]
    cached.values["callout"] = median
    cached.goal = f"<= {GOAL_HANDLER_US:.0f} µs"
    cached.met = median <= GOAL_HANDLER_US
    base = rows["baseline: decode + encode, no policy"]
    cached.reference = ("protocol", base)
    fresh = Figure("1 handler", "µs/decision, fresh bcrypt cost 12")
    fresh.values["callout"] = rows["allow, fresh bcrypt (cost 12)"]
    fresh.reference = ("protocol", base)
    return [cached, fresh]


async def run(args: argparse.Namespace, directory: Path) -> list[Figure]:
    figures: list[Figure] = []
    if 1 in args.only:
        figures += handler_figures()
    if not args.only - {1}:
        return figures
    warm = [f"user{i}" for i in range(args.users)]
    cold = [f"cold{i}" for i in range(args.cold)]
    started = time.monotonic()
    stacks = Stacks(directory, hashes(warm + cold), workers=args.workers)
    stacks.names = tuple(s for s in STACKS if s in args.stacks.split(","))
    stacks.with_minimal = MINIMAL in args.stacks.split(",") and bool(args.only & {2, 3})
    print(f"hashes ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
    stacks.start()
    try:
        if args.only & {2, 3, 4}:
            failed = await prewarm(stacks, warm, time.monotonic() + 120)
            print(f"cache warmed ({failed} retries)", file=sys.stderr)
        if 2 in args.only:
            figures += await sequential(stacks, warm, args.seq, args.seq_bcrypt)
        if 3 in args.only:
            figures += await warm_storm(stacks, warm, args.clients, args.storm_seconds)
        if 4 in args.only:
            figures += await reconnect_storm(
                stacks, warm, args.clients, args.storm_seconds
            )
        if 5 in args.only:
            figures += await cold_storm(stacks, cold, warm[0], args.cold_seconds)
        if 6 in args.only:
            figures += await saturation(
                stacks, warm[:8], args.max_workers, args.saturation_seconds
            )
    finally:
        stacks.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    args = _options(argv)
    limit = _raise_open_files()
    print(
        f"storms: {cores()} cores, open files {limit}, Python "
        f"{sys.version.split()[0]}, clients {args.clients}, users {args.users}, "
        f"cold {args.cold}, service workers {args.workers}"
    )
    with tempfile.TemporaryDirectory(prefix="storms-") as tmp:
        figures = asyncio.run(run(args, Path(tmp)))
    print_table(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
