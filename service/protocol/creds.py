"""
Creds files: a user JWT and its user seed in nsc's layout (written by `init`,
read by the startup check of the service's own login).
"""

from __future__ import annotations

import re

from service.errors import KeyFormatError
from service.protocol.nkeys import KeyPair, Prefix

# A user JWT and its user seed (nsc's layout); codec re-exports both functions.

_CREDS = """-----BEGIN NATS USER JWT-----
{jwt}
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
{seed}
------END USER NKEY SEED------

*************************************************************
"""
_CREDS_BLOCK = re.compile(
    r"\s*(?:-{3,}[^\n]*-{3,}\r?\n)([\w\-.=]+)\s*(?:-{3,}[^\n]*-{3,})"
)


def format_creds(user_jwt: str, user: KeyPair) -> str:
    """A creds file as nsc writes it: the user JWT and the user's seed."""
    return _CREDS.format(jwt=user_jwt, seed=user.export_seed())


def parse_creds(text: str) -> tuple[str, KeyPair]:
    """
    Read a creds file: the user JWT and the user key pair.

    Raises:
        KeyFormatError: No JWT or seed block, or the seed is not a user seed.
    """
    blocks = _CREDS_BLOCK.findall(text)
    if len(blocks) < 2:  # noqa: PLR2004
        raise KeyFormatError("creds file needs a JWT block and a seed block")
    return blocks[0], KeyPair.from_seed(blocks[1], Prefix.USER)
