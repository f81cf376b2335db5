"""
The policy's `sessions:` section: what a reload does to connections already
open (docs/operations.md "Revocation and live sessions").

A reload kicks every live connection whose principal is gone or whose facts
(account, grants, expiry, connection types, source networks, credential)
changed, at most `kicks_per_second`, so that a policy change never makes a
whole cluster's clients reconnect at once. It needs the service's
system-account login (`CALLOUT_SYSTEM_*`); without it nothing is kicked.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from service.policy.fields import CONFIG


class Sessions(BaseModel):
    """What a reload does to live connections."""

    model_config = CONFIG

    kick_on_reload: Annotated[bool, Field(strict=True)] = True
    kicks_per_second: Annotated[float, Field(gt=0, le=10_000)] = 20.0
