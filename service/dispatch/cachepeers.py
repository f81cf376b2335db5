"""
One verification cache across the workers of `run --workers N`.

nats-server hands each request to any worker of the queue group, so with
a cache per worker a user checked on one worker pays bcrypt again on each
other one: a cold storm with two workers ran at about half the rate of
one. Instead the supervisor gives every worker the same random HMAC key
and relays each new success (its 32-byte digest, nothing else) to the
other workers, which add it to their caches.

The login throttle's failures are shared the same way (an attacker's
guesses, spread over the workers by the queue group, add up as if one
process saw them all): each counted failure is a `ThrottleEvent` packet,
relayed like a digest (dispatch/throttle.py).

The channel is a SOCK_SEQPACKET socketpair per worker, inherited by the
child (its descriptor number in `PEER_FD_ENV`): one packet is the key (the
first, from the supervisor), one digest or one throttle event (told apart
by their sizes). The key never appears in an
environment, argument list, file or log. Sharing is best effort: a packet
that would block is dropped (that worker then pays one bcrypt), a worker
whose supervisor is gone keeps its own cache, and a worker started again
after a crash learns only the successes that come after it (the parent
keeps no digests).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from typing import TYPE_CHECKING

import structlog

from service.config import worker_seat
from service.dispatch.logincache import DIGEST_SIZE, KEY_SIZE
from service.dispatch.throttle import EVENT_SIZE, ThrottleEvent

if TYPE_CHECKING:
    from service.dispatch.logincache import LoginCache
    from service.dispatch.throttle import LoginThrottle

_PACKET = max(KEY_SIZE, DIGEST_SIZE, EVENT_SIZE)
_RELAYED = frozenset({DIGEST_SIZE, EVENT_SIZE})
_KEY_WAIT = 5.0  # seconds; the supervisor sent the key before starting us

log = structlog.get_logger("callout")


class Hub:
    """The supervisor's side: the key, one channel per worker, the relay."""

    def __init__(self) -> None:
        self.key = os.urandom(KEY_SIZE)
        self._ends: dict[int, socket.socket] = {}  # worker index -> our end
        self._lock = threading.Lock()

    def channel(self, index: int) -> socket.socket:
        """
        A new channel for worker `index` (replacing any old one): returns
        the child's end, to be inherited and then closed by the caller.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.sendall(self.key)  # first in line: the worker reads it at startup
        with self._lock:
            old = self._ends.pop(index, None)
            self._ends[index] = ours
        if old is not None:
            _close(old)
        threading.Thread(
            target=self._relay, args=(index, ours), daemon=True, name=f"peers-{index}"
        ).start()
        return theirs

    def _relay(self, index: int, end: socket.socket) -> None:
        # One thread per worker, blocked in recv: the rare packet (one per
        # successful bcrypt or counted failure) costs nothing while quiet.
        with contextlib.suppress(OSError):
            while len(packet := end.recv(_PACKET)) in _RELAYED:
                with self._lock:
                    others = [e for i, e in self._ends.items() if i != index]
                for other in others:
                    with contextlib.suppress(OSError):  # full or gone: best effort
                        other.send(packet, socket.MSG_DONTWAIT)

    def close(self) -> None:
        with self._lock:
            ends, self._ends = list(self._ends.values()), {}
        for end in ends:
            _close(end)


def _close(end: socket.socket) -> None:
    # shutdown first: it wakes the relay thread blocked in recv on this end
    with contextlib.suppress(OSError):
        end.shutdown(socket.SHUT_RDWR)
    end.close()


class Link:
    """A worker's side: tells the others of its successes, learns theirs."""

    def __init__(self, sock: socket.socket, key: bytes) -> None:
        self._sock = sock
        self.key = key

    @classmethod
    def from_env(cls) -> Link | None:
        """The channel the supervisor left us, with the shared key; None alone."""
        fd = worker_seat().peer_fd
        if fd is None:
            return None
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:  # not ours: a stray variable, say
            log.warning("callout.cache_sharing_off", error=type(exc).__name__)
            return None
        try:
            sock.settimeout(_KEY_WAIT)  # sent before we were started: no wait
            key = sock.recv(_PACKET)
        except OSError as exc:
            key, error = b"", type(exc).__name__
        else:
            error = "no key"
        if len(key) != KEY_SIZE:
            log.warning("callout.cache_sharing_off", error=error)
            sock.close()
            return None
        sock.settimeout(None)
        return cls(sock, key)

    def tell(self, packet: bytes) -> None:
        """Send one new success's digest to the others (from a checking thread)."""
        with contextlib.suppress(OSError):
            self._sock.send(packet, socket.MSG_DONTWAIT)

    def tell_event(self, event: ThrottleEvent) -> None:
        """Send one counted failure (or success) of the throttle to the others."""
        self.tell(event.pack())

    async def listen(
        self, cache: LoginCache, throttle: LoginThrottle | None = None
    ) -> None:
        """Feed the others' successes and failures in, until the supervisor is gone."""
        self._sock.setblocking(False)  # noqa: FBT003 - the stdlib signature
        loop = asyncio.get_running_loop()
        try:
            while len(packet := await loop.sock_recv(self._sock, _PACKET)) > 0:
                if len(packet) == DIGEST_SIZE:
                    cache.learn(packet)
                elif throttle is not None and (event := ThrottleEvent.unpack(packet)):
                    throttle.learn(event)
        except OSError as exc:
            log.warning("callout.cache_sharing_stopped", error=type(exc).__name__)

    def close(self) -> None:
        self._sock.close()
