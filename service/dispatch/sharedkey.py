"""
The keys of the state that processes share: the verification cache's and
the login throttle's HMAC keys.

Both come from one base key, each under its own label (a key is never used
for two purposes). The base is, from the strongest sharing down:

- with a state bucket (CALLOUT_STATE_BUCKET): `replica_key`, derived from
  the issuer seed, which every replica already has and nothing else needs:
  the replicas agree on it without exchanging anything, and someone who can
  read the bucket but has no issuer seed cannot compute an entry (and with
  the issuer seed one could sign any user anyway);
- under `run --workers N` alone: the supervisor's random key (cachepeers.py);
- otherwise none: each object makes a random key of its own.
"""

from __future__ import annotations

import hashlib
import hmac

# Fixed, public labels: what makes these keys differ from any other use of
# the issuer seed. A new version label would make every replica start cold.
_REPLICA_LABEL = b"nats-auth-callout/shared-state/v1"


def replica_key(issuer_seed: str) -> bytes:
    """The base key every replica derives alike: HMAC-SHA256(seed, label)."""
    return hmac.new(issuer_seed.encode(), _REPLICA_LABEL, hashlib.sha256).digest()


def derive(base: bytes | None, purpose: str) -> bytes | None:
    """The key for one purpose ("login cache", "throttle"); None from None."""
    if base is None:
        return None
    return hmac.new(base, purpose.encode(), hashlib.sha256).digest()
