"""
Handler benchmark: median µs per decision through `service.handler.handle`.

Run from the repository root (or `make bench`):

    .venv/bin/python benchmarks/handler.py

Rows: a password user whose secret is in the verification cache; the same
user with a fresh bcrypt check at cost 12 (what `nats server passwd` makes),
every call a cache miss; a wrong password (never cached); a random-bytes abort.
The baseline in the same run is the bare protocol path (decode + encode user
JWT + encode response) with no policy at all.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import bcrypt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from micro import measure  # noqa: E402

from service.dispatch.logincache import LoginCache  # noqa: E402
from service.handler import HandlerContext, handle  # noqa: E402
from service.policy import parse_policy  # noqa: E402
from service.protocol.claims import Permission, UserClaims  # noqa: E402
from service.protocol.nkeys import KeyPair, Prefix  # noqa: E402
from service.protocol.request import decode_request  # noqa: E402
from service.protocol.response import encode_response, encode_user_jwt  # noqa: E402
from service.signers import AccountSigner  # noqa: E402
from tests.factories import (  # noqa: E402
    NOW,
    FakeServer,
    john_doe_policy,
    make_request,
)

if TYPE_CHECKING:
    from collections.abc import Callable

PASSWORD = "john-doe-password"


def median_us(fn: Callable[[], object], calls: int, batches: int = 5) -> float:
    """Median over batches of the mean µs per call (after one warm-up call)."""
    return statistics.median(measure(fn, calls, batches, warmup=1))


def decisions(calls: int = 2000) -> list[tuple[str, float]]:
    """(decision kind, median µs) for each row of the table; the baseline first."""
    issuer = KeyPair.create(Prefix.ACCOUNT)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()
    policy = parse_policy(john_doe_policy(hashed))
    server = FakeServer()

    def request(password: str) -> tuple[bytes, dict[str, str] | None]:
        return make_request(
            server,
            issuer_account=issuer.public_key,
            connect_opts={"user": "john-doe", "pass": password},
        )

    good, wrong = request(PASSWORD), request("wrong-password")
    signers = {"APP": AccountSigner(issuer, audience="APP")}
    cached = HandlerContext(
        issuer=issuer,
        xkey=None,
        policy=policy,
        check_secret=LoginCache(),
        signers=signers,
    )
    fresh = HandlerContext(
        issuer=issuer,
        xkey=None,
        policy=policy,
        check_secret=LoginCache(max_entries=0),
        signers=signers,
    )
    req = decode_request(*good, now=NOW)
    claims = UserClaims(
        subject=req.user_nkey,
        audience="APP",
        name="john-doe",
        expires=NOW + 3600,
        pub=Permission(allow=("users.john-doe.>",)),
        sub=Permission(allow=("users.john-doe.>", "_INBOX.>")),
    )

    def baseline() -> object:
        r = decode_request(*good, now=NOW)
        user = encode_user_jwt(claims, issuer, now=NOW)
        return encode_response(r, issuer, now=NOW, jwt=user)

    return [
        ("baseline: decode + encode, no policy", median_us(baseline, calls)),
        (
            "allow, cached identity",
            median_us(lambda: handle(*good, ctx=cached, now=NOW), calls),
        ),
        (
            "allow, fresh bcrypt (cost 12)",
            median_us(lambda: handle(*good, ctx=fresh, now=NOW), 5, 3),
        ),
        (
            "deny, wrong password (cost 12)",
            median_us(lambda: handle(*wrong, ctx=cached, now=NOW), 5, 3),
        ),
        (
            "abort, garbage bytes",
            median_us(lambda: handle(b"xkv1garbage", None, ctx=cached, now=NOW), 5000),
        ),
    ]


def main() -> int:
    """Time each kind of decision and print a table with ratios to the baseline."""
    rows = decisions()
    base = rows[0][1]
    print(f"{'decision':40} {'median µs':>12} {'x baseline':>11}")
    print("-" * 65)
    for name, value in rows:
        print(f"{name:40} {value:12.1f} {value / base:11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
