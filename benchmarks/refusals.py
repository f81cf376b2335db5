"""
Refusal timing: can the time to a refusal tell which user names exist?

Run from the repository root (or `make bench`):

    .venv/bin/python benchmarks/refusals.py [--rounds N]

Through `service.handler.handle` with the service's own verification cache
and bcrypt at cost 12 (as `nats server passwd` makes hashes), it times
refusals of an unknown name (a decoy bcrypt) and of a known name with a
wrong password (a real bcrypt), interleaved so that machine noise falls on
both; then the same two under an address back-off of the login throttle
(no bcrypt for either). It prints each distribution's percentiles and the
ratio of medians: near 1.0 means the two cannot be told apart.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import bcrypt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from service.dispatch.logincache import LoginCache  # noqa: E402
from service.dispatch.throttle import LoginThrottle  # noqa: E402
from service.handler import HandlerContext, Outcome, handle  # noqa: E402
from service.policy import parse_policy  # noqa: E402
from service.policy.throttle import Throttle  # noqa: E402
from service.protocol.nkeys import KeyPair, Prefix  # noqa: E402
from service.signers import AccountSigner  # noqa: E402
from tests.factories import NOW, FakeServer, john_doe_policy, make_request  # noqa: E402

HOST = "127.0.0.1"


def _request(server: FakeServer, issuer: KeyPair, user: str) -> bytes:
    body, _ = make_request(
        server,
        issuer_account=issuer.public_key,
        connect_opts={"user": user, "pass": "not-the-password"},
        now=NOW,
    )
    return body


def _percentiles(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=20)
    return f"p5 {q[0]:7.2f}  p50 {statistics.median(samples):7.2f}  p95 {q[-1]:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    issuer, server = KeyPair.create(Prefix.ACCOUNT), FakeServer()
    hashed = bcrypt.hashpw(b"john-doe-password", bcrypt.gensalt(12)).decode()
    policy = parse_policy(john_doe_policy(hashed))
    cache = LoginCache()
    throttle = LoginThrottle(Throttle(address_failures=1))
    ctx = HandlerContext(
        issuer=issuer,
        xkey=None,
        policy=policy,
        check_secret=cache,
        signers={"APP": AccountSigner(issuer, audience="APP")},
        guard=throttle,
        holds=cache.holds,
    )
    requests = {
        "unknown name": _request(server, issuer, "no-such-user"),
        "wrong password": _request(server, issuer, "john-doe"),
    }
    for phase in ("no back-off", "address back-off"):
        if phase == "address back-off":
            throttle.observe(
                Outcome(
                    decision="deny", reply=b"", reason="unknown_user", client_host=HOST
                )
            )
        times: dict[str, list[float]] = {kind: [] for kind in requests}
        reasons: dict[str, set[str | None]] = {kind: set() for kind in requests}
        for _ in range(args.rounds):
            for kind, body in requests.items():
                started = time.perf_counter()
                outcome = handle(body, None, ctx=ctx, now=NOW)
                times[kind].append((time.perf_counter() - started) * 1000)
                reasons[kind].add(outcome.reason)
        print(f"{phase} ({args.rounds} rounds, interleaved):")
        for kind, samples in times.items():
            why = sorted(str(r) for r in reasons[kind])
            print(f"  {kind:<15} {_percentiles(samples)}  reasons {why}")
        ratio = statistics.median(times["unknown name"]) / statistics.median(
            times["wrong password"]
        )
        print(f"  ratio of medians (unknown / wrong): {ratio:.3f}")


if __name__ == "__main__":
    main()
