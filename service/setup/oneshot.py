"""
Helpers of the one-shot commands (`check`, `explain`, `hash`, `keys`) and
the startup warnings `run` and `check` share, kept out of cli.py so that
the command table stays readable.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import TYPE_CHECKING

from service.config import cleartext_urls
from service.review.dryrun import dry_request

if TYPE_CHECKING:
    import argparse
    from pathlib import Path
    from typing import TextIO

    from service.config import Settings
    from service.policy import Policy
    from service.protocol.claims import (
        AuthRequest,
    )


def policy_warnings(policy: Policy, mode: str | None = None) -> list[str]:
    """Placements and grants that work but reach further than they seem to."""
    out = [
        f"policy can place users in {account!r}, a system account name"
        for account in policy.accounts
        if account.upper() in {"SYS", "$SYS"}
    ]
    if mode in {None, "config"} and "$G" in policy.accounts:
        out.append("policy places users in $G, where the callout service itself runs")
    out.extend(policy.warnings)  # located ones from the load (account-trust macros)
    return out


def startup_warnings(settings: Settings, policy: Policy) -> list[str]:
    """Setups that work but silently weaken security."""
    out = []
    names = {u.name for u in policy.users}
    if settings.nats_user and settings.nats_user in names:
        out.append(
            f"policy user {settings.nats_user!r} is also the service's login; the "
            "server lists it in auth_users, so it bypasses the callout"
        )
    out.extend(policy_warnings(policy, settings.mode))
    if settings.nats_user is not None:
        # nkey and creds logins sign a nonce; only a password is sent as is
        out.extend(
            f"{url} is not loopback and not TLS: the service's password travels "
            "in clear"
            for url in cleartext_urls(settings)
        )
    if settings.xkey_seed is None and settings.xkey_seed_file is None:
        out.append(
            "no CALLOUT_XKEY_SEED: requests (with client passwords) are not encrypted"
        )
    if settings.admin_token_file is not None and not settings.http_listen:
        out.append(
            "CALLOUT_ADMIN_TOKEN_FILE is set but CALLOUT_HTTP_LISTEN is not: "
            "there is no HTTP port, so no /admin/revoke"
        )
    if settings.audit_stream and not settings.audit_subject:
        out.append(
            "CALLOUT_AUDIT_STREAM is set but CALLOUT_AUDIT_SUBJECT is not: no "
            "audit events, so no stream is made"
        )
    if not settings.system_login:
        out.append(
            "no CALLOUT_SYSTEM_USER, CALLOUT_SYSTEM_NKEY_SEED_FILE or "
            "CALLOUT_SYSTEM_CREDS: live sessions are off (a reload, a revoke and "
            "max_connections cannot act on connections already open)"
        )
        if uses_caps(policy):
            out.append(
                "the policy sets max_connections, but without the system-account "
                "login no connection cap is enforced"
            )
    return out


def uses_caps(policy: Policy) -> bool:
    """Whether any user, role, provider, certificate or anonymous sets a cap."""
    doc = policy.document
    caps = [g.max_connections for g in (*doc.users, *doc.certificates)]
    caps += [r.max_connections for r in doc.roles.values()]
    caps += [p.max_connections for p in doc.identity_providers]
    if doc.anonymous is not None:
        caps.append(doc.anonymous.max_connections)
    return any(caps)


def write_seed_file(path: Path, seed: str) -> None:
    """
    Write a seed as a seed file: one line, mode 0600, never over a file.

    Raises:
        OSError: The file exists (FileExistsError) or cannot be written.
    """
    # O_EXCL: an existing key is never replaced; 0600 from the first byte
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(seed + "\n")


class SecretInputError(ValueError):
    """Input that is not one secret (its text names no part of the secret)."""


def read_secret(stream: TextIO, *, prompt: str, confirm: bool) -> str:
    """
    One secret from a terminal prompt, or the only line of a pipe.

    Raises:
        SecretInputError: The two prompts differ, or the pipe holds more
            than one line (a secret with a line break, or several secrets:
            hashing only the first would be silently wrong).
    """
    if stream.isatty():
        secret = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != secret:
            raise SecretInputError("the two entries differ")
        return secret
    text = stream.read()
    text = text.removesuffix("\n")
    text = text.removesuffix("\r")
    if "\n" in text or "\r" in text:
        raise SecretInputError(
            "stdin holds more than one line: give one secret, without line breaks"
        )
    return text


def warn(text: str) -> None:
    """A warning line on stderr for a person at the command line."""
    print(f"warning: {text}", file=sys.stderr)  # noqa: T201


def explain_request(args: argparse.Namespace) -> AuthRequest:
    """
    The request the server would send for a client with these options.

    Raises:
        OSError: `--cert` names a file that cannot be read.
    """
    pem = None if args.cert is None else args.cert.read_text(encoding="ascii")
    return dry_request(
        user=args.user,
        password=args.password,
        token=args.token,
        nkey=args.nkey,
        cert_pem=pem,
        host=args.host,
        client_type=args.type,
        label="EXPLAIN",
    )
