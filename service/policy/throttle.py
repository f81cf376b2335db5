"""
The policy's `throttle:` section: how failed logins slow the next ones.

Two scopes, each counting failures within `window`:

* a principal at one source address (`failures`): past the limit, every
  password or token login of that principal from that address is refused
  (`throttled`) without a secret check, right password or not, for a back-off
  that starts at `backoff` and doubles with each further trip up to
  `max_backoff`. Refusing the right password too is what keeps the back-off
  from being an oracle;
* a source address (`address_failures`, names known or not): past the limit,
  logins from that address that would need bcrypt are refused without it;
  a login the verification cache already holds still goes through (and a
  wrong one counts for its principal). This is the per-address budget of
  decoy checks for unknown names, and it treats a known name whose secret is
  not cached exactly like an unknown one, so the time to refusal still does
  not tell which names exist;
* every address together (`decoys_per_second`): the decoy checks that
  unknown names get, so that the timing does not tell which names exist,
  are a token bucket of that rate (holding `DECOY_BURST` seconds' worth).
  Once it is spent, an unknown name is refused without its decoy, and the
  refusal is paced: answered when a check would have ended (dispatch/
  coldlane.py), on a timer, so it costs no CPU and still looks like a
  known name's wrong password. Known names are not counted here.

Addresses in `exempt_networks` are never throttled. nkey, identity-provider
and certificate logins need no bcrypt and are never throttled.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, Field, model_validator

from service.policy.fields import CONFIG, Cidr, Duration, fail

DECOY_BURST = 10.0  # seconds of `decoys_per_second` the bucket holds when full


class Throttle(BaseModel):
    """Limits and back-off for failed password and token logins."""

    model_config = CONFIG

    failures: Annotated[int, Field(strict=True, ge=1, le=1000)] = 5
    address_failures: Annotated[int, Field(strict=True, ge=1, le=100_000)] = 20
    window: Duration = 600
    backoff: Duration = 30
    max_backoff: Duration = 900
    exempt_networks: tuple[Cidr, ...] = ()
    # ~0.25 s of a core each at cost 12: two a second is half a core
    decoys_per_second: Annotated[float, Field(gt=0, le=100_000)] = 2.0

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_backoff < self.backoff:
            fail("throttle", "max_backoff must be at least backoff")
        return self
