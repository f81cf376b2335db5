"""
Readiness: the facts the worker records, and what `/readyz` makes of them.

Ready means able to authorize right now: connected to nats-server, the
subscription confirmed by the server (a PONG after our SUB; a subscribe
permission error arrives before it), a policy loaded (always, after startup),
and keys that the most recently checked server agrees with. Not ready while
shutting down, so orchestration stops counting on this replica first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Health:
    """Mutable state, written only from the event loop."""

    connected: bool = False
    subscribed: bool = False
    subscribe_denied: bool = False
    key_problem: str | None = None
    draining: bool = False

    def not_ready(self) -> str | None:
        """None when ready, else a short reason code for `/readyz`."""
        if self.draining:
            return "shutting_down"
        if not self.connected:
            return "nats_disconnected"
        if self.subscribe_denied:
            return "subscribe_denied"
        if not self.subscribed:
            return "subscription_unconfirmed"
        return self.key_problem
