"""
Seed and creds files: read them, check them, and say what belongs in them.

The service's own NATS login is checked here before nats-py ever sees it:
nats-py reads these files inside its connect loop, where a garbage or curve
seed ends in a traceback, a garbage creds file in a TypeError, and an
account seed in a login the server refuses forever. Every message names the
setting that was used and never contains the file's content.
"""

from __future__ import annotations

import re
import ssl
import stat
from typing import TYPE_CHECKING

from service.errors import ConfigError, KeyFormatError
from service.protocol.creds import parse_creds
from service.protocol.nkeys import KeyPair, Prefix

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


def seed_file_hint(kind: str) -> str:
    """What a seed file of this kind must contain, and how to make one."""
    letter = {"account": "SA", "user": "SU", "curve": "SX"}.get(kind, "S")
    return (
        f"a seed file holds one line, the {kind} seed ({letter}…), as "
        f"`nats-auth-callout keys {kind} --seed-file FILE` writes it"
    )


def read_text(path: Path, setting: str) -> str:
    """
    The stripped text of a key file.

    Raises:
        ConfigError: It cannot be read or is not UTF-8 (the text says which
            setting named it, never what is in it).
    """
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{setting} {path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{setting} {path}: not a text file") from None


def nkey_login_seed(path: Path, setting: str) -> KeyPair:
    """
    The user key pair of an nkey login seed file.

    Raises:
        ConfigError: Unreadable, or not exactly one user seed.
    """
    try:
        return KeyPair.from_seed(read_text(path, setting), Prefix.USER)
    except KeyFormatError as exc:
        raise ConfigError(
            f"{setting} {path}: {exc}; {seed_file_hint('user')}"
        ) from None


def creds_login(path: Path, setting: str) -> KeyPair:
    """
    The user key pair of a creds file, after checking its JWT block.

    Raises:
        ConfigError: Unreadable, or not a user JWT and user seed in nsc's layout.
    """
    layout = (
        "a creds file holds a user JWT and that user's seed (SU…) in nsc's "
        "-----BEGIN/END----- blocks, as `nsc generate creds` writes it"
    )
    try:
        jwt, user = parse_creds(read_text(path, setting))
    except KeyFormatError as exc:
        raise ConfigError(f"{setting} {path}: {exc}; {layout}") from None
    if not _JWT.match(jwt):
        raise ConfigError(f"{setting} {path}: the JWT block is not a JWT; {layout}")
    return user


# Group read alone is allowed: Kubernetes mounts secrets 0440 with an fsGroup
# (deploy/kubernetes), which is how the pod's user gets to read them at all.
_LOOSE = stat.S_IRWXO | stat.S_IWGRP | stat.S_IXGRP


def loose_permissions(files: Mapping[str, Path | None]) -> list[str]:
    """Warnings for secret files other users can read or change (as ssh checks)."""
    out = []
    for setting, path in files.items():
        if path is None:
            continue
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue  # reading it reports the problem
        if mode & _LOOSE:
            out.append(
                f"{setting} {path} has mode {mode:04o}: other users can read or "
                f"change it; chmod 600 {path}"
            )
    return out


def tls_context(
    cert: Path | None, key: Path | None, ca: Path | None
) -> ssl.SSLContext | None:
    """
    The TLS context of the service's own login: a client certificate (for a
    server with `tls { verify: true }`) and/or the CA that signed the
    server's certificate; None when neither is set (nats-py's default).

    Raises:
        ConfigError: Only one of cert and key, or files that do not load
            (the text names the setting, never key material).
    """
    if (cert is None) != (key is None):
        raise ConfigError("set both CALLOUT_NATS_TLS_CERT and CALLOUT_NATS_TLS_KEY")
    if cert is None and ca is None:
        return None
    try:
        context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"CALLOUT_NATS_TLS_CA {ca}: cannot load: {exc}") from None
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"CALLOUT_NATS_TLS_CERT {cert} / CALLOUT_NATS_TLS_KEY {key}: "
                f"cannot load: {type(exc).__name__}"
            ) from None
    return context


def login_problems(
    prefix: str,
    *,
    user: str | None,
    password: bool,
    seed_file: Path | None,
    creds: Path | None,
) -> list[str]:
    """
    One NATS login's problems; `prefix` names its settings (`CALLOUT_NATS`,
    `CALLOUT_SYSTEM`): `<prefix>_USER`, `_PASSWORD`, `_NKEY_SEED_FILE`, `_CREDS`.
    """
    given = [
        f"{prefix}_{name}"
        for name, value in (
            ("USER", user),
            ("NKEY_SEED_FILE", seed_file),
            ("CREDS", creds),
        )
        if value is not None
    ]
    problems = []
    if len(given) > 1:
        problems.append("set one login: " + ", ".join(given) + " are all set")
    if user is not None and not password:
        problems.append(f"{prefix}_USER is set without {prefix}_PASSWORD")
    checks = (
        (f"{prefix}_NKEY_SEED_FILE", seed_file, nkey_login_seed),
        (f"{prefix}_CREDS", creds, creds_login),
    )
    for name, path, check in checks:
        if path is None:
            continue
        if not path.is_file():
            problems.append(f"{name} {path}: no such file")
            continue
        # nats-py reads these only inside its connect loop, where a bad file
        # is a traceback or a login refused forever: check them first
        try:
            check(path, name)
        except ConfigError as exc:
            problems.append(str(exc))
    return problems
