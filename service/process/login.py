"""
The service's own NATS login as nats-py connect options, and how nats-py
reports a login the server refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nats.errors import AuthorizationError

from service.keyfiles import tls_context

if TYPE_CHECKING:
    from service.config import Settings


def login_options(s: Settings, which: str = "nats") -> dict[str, Any]:
    """
    User/password, nkey seed file or creds file, and TLS, as nats-py names them.

    `which` picks the login: `nats` (CALLOUT_NATS_*, in the callout account)
    or `system` (CALLOUT_SYSTEM_*, the system-account link); both use the
    same server URLs and TLS settings.
    """
    opts: dict[str, Any] = {}
    user = getattr(s, f"{which}_user")
    password = getattr(s, f"{which}_password")
    if user is not None:
        opts["user"] = user
        opts["password"] = password.get_secret_value() if password else ""
    if (seed := getattr(s, f"{which}_nkey_seed_file")) is not None:
        opts["nkeys_seed"] = str(seed)
    if (creds := getattr(s, f"{which}_creds")) is not None:
        opts["user_credentials"] = str(creds)
    # checked at startup (config.login_problems): a bad file fails there
    tls = tls_context(s.nats_tls_cert, s.nats_tls_key, s.nats_tls_ca)
    if tls is not None:
        opts["tls"] = tls
    return opts


def login_refused(exc: Exception) -> bool:
    """Whether nats-py's error is the server refusing our login."""
    # nats-py raises a plain Error("nats: 'Authorization Violation'") from its
    # connect handshake and AuthorizationError only once connected
    return isinstance(exc, AuthorizationError) or (
        "authorization violation" in str(exc).lower()
    )
