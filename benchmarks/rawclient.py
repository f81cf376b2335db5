"""
Storm clients for benchmarks/storms.py: the NATS handshake over asyncio streams.

A raw client reads INFO, sends CONNECT and PING, and is connected when PONG
comes back (a refusal is `-ERR ...`). It costs the benchmark process a few
tens of µs per connect where nats-py costs about a millisecond (tasks,
parsers, flusher), so a storm of 2 000 measures the servers, not the client;
storms.py prints the client's own CPU share next to every storm to show it.

Clients behave like nats.go's defaults: a failed attempt waits
`wait` + up to `jitter` seconds before the next; a held connection answers
the server's PINGs and, when the server goes away, tries again at once,
then every `wait` + jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

ATTEMPT_TIMEOUT = 5.0  # above the server's 2 s auth budget: we see its verdict


@dataclass(frozen=True)
class Login:
    host: str
    port: int
    user: str
    password: str

    def connect_line(self) -> bytes:
        opts = {
            "verbose": False,
            "pedantic": False,
            "user": self.user,
            "pass": self.password,
            "name": "storm",
            "lang": "raw",
            "version": "0",
            "protocol": 1,
        }
        return b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n"


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()


def _reason(line: bytes) -> str:
    text = line.decode(errors="replace").strip()
    if text.startswith("-ERR"):
        return text[4:].strip(" '").lower().replace(" ", "_") or "err"
    return "eof" if not text else f"unexpected {text[:20]!r}"


async def attempt(login: Login, limit: float = ATTEMPT_TIMEOUT) -> Conn | str:
    """One connect: a `Conn` when the server answered PONG, else why not."""
    writer = None
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(login.host, login.port)
            await reader.readline()  # INFO
            writer.write(login.connect_line())
            while (line := await reader.readline()).startswith((b"PING", b"+OK")):
                if line.startswith(b"PING"):  # the server's first RTT ping
                    writer.write(b"PONG\r\n")
    except TimeoutError:
        reason = "timeout"
    except OSError as exc:
        reason = "refused" if isinstance(exc, ConnectionRefusedError) else "oserror"
    else:
        if line.startswith(b"PONG"):
            return Conn(reader, writer)
        reason = _reason(line)
    if writer is not None:
        writer.close()
    return reason


async def connect_close(login: Login) -> tuple[bool, float]:
    """Connect, then close; (connected, seconds to PONG or refusal)."""
    started = time.perf_counter()
    result = await attempt(login)
    elapsed = time.perf_counter() - started
    if isinstance(result, Conn):
        result.close()
        return True, elapsed
    return False, elapsed


@dataclass
class Tally:
    """What a group of clients saw: failed attempts by reason, when each got in."""

    failures: Counter[str] = field(default_factory=Counter)
    connected_at: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def reasons(self) -> str:
        return ", ".join(f"{n} {why}" for why, n in self.failures.most_common())


@dataclass
class Backoff:
    wait: float = 2.0  # nats.go ReconnectWait
    jitter: float = 0.1  # nats.go ReconnectJitter

    def delay(self, rng: random.Random) -> float:
        return self.wait + rng.uniform(0, self.jitter)


async def until_connected(
    login: Login, tally: Tally, deadline: float, backoff: Backoff, rng: random.Random
) -> Conn | None:
    """Attempt until connected or `deadline` (monotonic); failures are tallied."""
    while time.monotonic() < deadline:
        result = await attempt(login, min(ATTEMPT_TIMEOUT, deadline - time.monotonic()))
        if isinstance(result, Conn):
            tally.connected_at.append(time.monotonic())
            return result
        tally.failures[result] += 1
        await asyncio.sleep(
            min(backoff.delay(rng), max(0, deadline - time.monotonic()))
        )
    return None


class Held:
    """A connection kept open; back by itself after the server restarts."""

    def __init__(self, login: Login, backoff: Backoff, seed: int) -> None:
        self.login = login
        self.backoff = backoff
        self.rng = random.Random(seed)
        self.conn: Conn | None = None
        self.since = 0.0  # monotonic time of the latest connect
        self.stopped = False

    async def run(self, tally: Tally, deadline: float) -> None:
        """Connect; on loss reconnect (first try at once) until `deadline`/stop."""
        while not self.stopped:
            conn = await until_connected(
                self.login, tally, deadline, self.backoff, self.rng
            )
            if conn is None:
                return
            self.conn, self.since = conn, time.monotonic()
            await self._serve(conn)
            self.conn = None

    def stop(self) -> None:
        self.stopped = True
        if self.conn is not None:
            self.conn.close()

    async def _serve(self, conn: Conn) -> None:
        """Answer PINGs until the server closes the connection."""
        with contextlib.suppress(OSError):
            while line := await conn.reader.readline():
                if line.startswith(b"PING"):
                    conn.writer.write(b"PONG\r\n")
        conn.close()
