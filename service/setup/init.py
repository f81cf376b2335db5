"""
`init`: a set of keys, nats-server.conf, policy.yaml and callout.env that work
together, for config or operator mode (docs/protocol.md §6).

Everything is built in memory by pure functions (randomness aside); `write()`
is the only part that touches the disk. Demo passwords live only in the
returned `WorkingSet`: the files hold bcrypt hashes, the caller prints them once.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import bcrypt

from service.errors import ConfigError
from service.protocol.claims import (
    AccountClaims,
    AccountKey,
    ExternalAuthorization,
    OperatorClaims,
    Permission,
    UserClaims,
    UserNKey,
)
from service.protocol.creds import format_creds
from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.response import encode_user_jwt
from service.protocol.xkeys import CurveKeyPair
from service.setup.accounts import encode_account_jwt, encode_operator_jwt

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

Mode = Literal["config", "operator"]
DEMO_USERS = {"john-doe": "customer", "admin": "admin"}
ACCOUNT = "APP"
# `--audit`'s subject, joined: a "callout.*" literal reads as a log event name
# to tests/unit/test_docs.py
AUDIT_SUBJECT = ".".join(("callout", "audit"))  # noqa: FLY002


_q = json.dumps  # a quoted string, for nats-server.conf
_operator = functools.partial(KeyPair.create, Prefix.OPERATOR)
_account = functools.partial(KeyPair.create, Prefix.ACCOUNT)
_user = functools.partial(KeyPair.create, Prefix.USER)


@dataclass(frozen=True)
class OperatorSetup:
    """
    Operator mode in keys and JWTs signed here; every key is fresh unless given.

    AUTH runs the callout (`auth_users`: the service user; `allowed_accounts`:
    APP); APP has a signing key that signs user JWTs; SYS is the system
    account; `extra` accounts exist but are not allowed (tests: refusals).
    """

    operator: KeyPair = field(default_factory=_operator)
    system: KeyPair = field(default_factory=_account)
    auth: KeyPair = field(default_factory=_account)
    app: KeyPair = field(default_factory=_account)
    app_signing: KeyPair = field(default_factory=_account)
    service_user: KeyPair = field(default_factory=_user)
    sentinel_user: KeyPair = field(default_factory=_user)
    system_user: KeyPair = field(default_factory=_user)  # the service's SYS link
    xkey: str = ""  # AUTH's public curve key, if requests are to be encrypted
    jetstream: bool = False  # in AUTH (the audit stream), unlimited
    extra: Mapping[str, KeyPair] = field(default_factory=dict)
    # iat of every JWT; Ed25519 is deterministic, so the properties are stable
    now: int = field(default_factory=lambda: int(time.time()))

    @property
    def operator_jwt(self) -> str:
        claims = OperatorClaims(
            self.operator.public_key, "OP", system_account=self.system.public_key
        )
        return encode_operator_jwt(claims, self.operator, now=self.now)

    @property
    def preload(self) -> dict[str, str]:
        """Account public key -> account JWT, for `resolver_preload`."""
        callout = ExternalAuthorization(
            auth_users=(self.service_user.public_key,),
            allowed_accounts=(self.app.public_key,),
            xkey=self.xkey,
        )
        accounts = [
            AccountClaims(AccountKey(self.system.public_key), "SYS"),
            AccountClaims(
                AccountKey(self.auth.public_key),
                "AUTH",
                authorization=callout,
                jetstream=self.jetstream,
            ),
            AccountClaims(
                AccountKey(self.app.public_key),
                ACCOUNT,
                signing_keys=(self.app_signing.public_key,),
            ),
            *(
                AccountClaims(AccountKey(k.public_key), n)
                for n, k in self.extra.items()
            ),
        ]
        return {
            c.subject: encode_account_jwt(c, self.operator, now=self.now)
            for c in accounts
        }

    @property
    def service_jwt(self) -> str:
        claims = UserClaims(UserNKey(self.service_user.public_key), name="auth-service")
        return encode_user_jwt(claims, self.auth, now=self.now)

    @property
    def system_jwt(self) -> str:
        """A user of SYS: the service's system-account link (live sessions)."""
        claims = UserClaims(UserNKey(self.system_user.public_key), name="callout-sys")
        return encode_user_jwt(claims, self.system, now=self.now)

    @property
    def sentinel_jwt(self) -> str:
        """A bearer user of AUTH that may do nothing: what JWT-less clients present."""
        deny_all = Permission(deny=(">",))
        claims = UserClaims(
            UserNKey(self.sentinel_user.public_key),
            name="sentinel",
            bearer_token=True,
            pub=deny_all,
            sub=deny_all,
        )
        return encode_user_jwt(claims, self.auth, now=self.now)

    def server_body(self) -> str:
        """The operator part of nats-server.conf (no listeners)."""
        preload = "\n".join(f"  {_q(k)}: {_q(v)}" for k, v in self.preload.items())
        return f"""\
operator: {_q(self.operator_jwt)}
system_account: {_q(self.system.public_key)}
resolver: MEM
resolver_preload: {{\n{preload}\n}}
# Clients without a JWT present this bearer user of AUTH (it may do nothing
# itself), so browsers connect with only user/password and the callout decides.
default_sentinel: {_q(self.sentinel_jwt)}
"""


@dataclass(frozen=True)
class WorkingSet:
    """What `init` writes: file name -> text; `secret` ones get mode 0600."""

    directory: Path
    mode: Mode
    port: int
    ws_port: int
    files: dict[str, str]
    secret: frozenset[str]
    passwords: dict[str, str] = field(repr=False)  # printed once, never written


def config_mode_body(
    *,
    issuer: str,
    service: str,
    xkey: str = "",
    system: str = "",
    jetstream: bool = False,
) -> str:
    """Accounts and the auth_callout block: AUTH holds only the service login
    (and with `jetstream` the audit stream); `system`: the service's
    system-account login (live sessions), in SYS."""
    xkey_line = f"\n    xkey: {_q(xkey)}" if xkey else ""
    js = ", jetstream: enabled" if jetstream else ""
    sys_users = f"users: [ {{ nkey: {_q(system)} }} ] " if system else ""
    bypass = ", ".join(_q(k) for k in (service, system) if k)
    return f"""\
accounts {{
  # Only the service's own nkey login lives here (it bypasses the callout).
  AUTH {{ users: [ {{ nkey: {_q(service)} }} ]{js} }}
  APP {{}}  # where the policy places users
  # The service's system-account login: it finds and kicks live connections.
  SYS {{ {sys_users}}}
}}
system_account: SYS
authorization {{
  timeout: 2  # seconds for the whole callout round trip
  auth_callout {{
    issuer: {_q(issuer)}
    account: AUTH
    auth_users: [ {bypass} ]{xkey_line}
  }}
}}
"""


def policy_yaml(hashes: Mapping[str, str], account: str) -> str:
    """The demo policy; `account` is the YAML flow mapping for APP."""
    users = "".join(
        f'  - name: {name}\n    password: "{hashes[name]}"\n    roles: [{role}]\n'
        for name, role in DEMO_USERS.items()
    )
    return f"""\
# Generated by `nats-auth-callout init`. Passwords are bcrypt hashes; the
# plaintext was printed once. Make new ones with `nats-auth-callout hash`.
version: 1

accounts:
  {ACCOUNT}: {account}

defaults:
  account: {ACCOUNT}
  expires: 1h

roles:
  customer:
    publish:   {{allow: ["users.{{{{user}}}}.>"]}}
    subscribe: {{allow: ["users.{{{{user}}}}.>", "_INBOX.>"]}}
  admin:
    publish:   {{allow: [">"]}}
    subscribe: {{allow: [">"]}}

users:
{users}"""


def env_file(settings: Mapping[str, str]) -> str:
    """callout.env for `nats-auth-callout run --env-file`."""
    # JSON string quoting is what dotenv's double quotes read (paths with spaces)
    lines = "".join(
        f"CALLOUT_{k}={json.dumps(v, ensure_ascii=False)}\n"
        for k, v in settings.items()
    )
    return f"# Settings for `nats-auth-callout run --env-file` (from init).\n{lines}"


def generate(
    directory: Path,
    *,
    mode: Mode = "config",
    xkey: bool = True,
    port: int = 4222,
    ws_port: int = 8080,
    cost: int = 12,
    audit: bool = False,
) -> WorkingSet:
    """Build every file of a working set for `directory` (nothing is written);
    `audit`: JetStream in the callout account and audit events to a stream."""
    directory = directory.absolute()  # callout.env must work from any cwd
    curve = CurveKeyPair.create() if xkey else None
    xpub = "" if curve is None else curve.public_key
    passwords = {name: secrets.token_hex(12) for name in DEMO_USERS}
    hashes = {
        name: bcrypt.hashpw(pw.encode(), bcrypt.gensalt(cost)).decode()
        for name, pw in passwords.items()
    }
    server = f"""\
# Generated by `nats-auth-callout init` ({mode} mode).
# For local development only: plain-text listeners on loopback. In production
# use TLS (a tls {{}} block here and in websocket) instead of no_tls.
server_name: callout-dev
listen: "127.0.0.1:{port}"
websocket {{ listen: "127.0.0.1:{ws_port}", no_tls: true }}
"""
    if audit:  # the callout account's audit stream lives here
        server += f"jetstream {{ store_dir: {_q(str(directory / 'jetstream'))} }}\n"
    files: dict[str, str] = {}
    settings = {"NATS_URL": f"nats://127.0.0.1:{port}", "MODE": mode}
    if mode == "operator":
        setup = OperatorSetup(xkey=xpub, jetstream=audit)
        issuer = setup.auth
        server += (
            "# No auth_callout block: the AUTH account JWT carries it. The operator\n"
            "# and account seeds were not kept: re-run init to change accounts.\n"
            f"{setup.server_body()}authorization {{ timeout: 2 }}\n"
        )
        creds = format_creds
        files["service.creds"] = creds(setup.service_jwt, setup.service_user)
        files["sentinel.creds"] = creds(setup.sentinel_jwt, setup.sentinel_user)
        files["system.creds"] = creds(setup.system_jwt, setup.system_user)
        settings["SYSTEM_CREDS"] = str(directory / "system.creds")
        files["app-signing.nk"] = setup.app_signing.export_seed() + "\n"
        settings["NATS_CREDS"] = str(directory / "service.creds")
        account = (
            f"{{public_key: {setup.app.public_key}, signing_key_file: app-signing.nk}}"
        )
    else:
        issuer, login, system = _account(), _user(), _user()
        server += config_mode_body(
            issuer=issuer.public_key,
            service=login.public_key,
            xkey=xpub,
            system=system.public_key,
            jetstream=audit,
        )
        files["service.nk"] = login.export_seed() + "\n"
        files["system.nk"] = system.export_seed() + "\n"
        settings["NATS_NKEY_SEED_FILE"] = str(directory / "service.nk")
        settings["SYSTEM_NKEY_SEED_FILE"] = str(directory / "system.nk")
        account = "{}"
    files["issuer.nk"] = issuer.export_seed() + "\n"
    settings["ISSUER_SEED_FILE"] = str(directory / "issuer.nk")
    if curve is not None:
        files["xkey.nk"] = curve.export_seed() + "\n"
        settings["XKEY_SEED_FILE"] = str(directory / "xkey.nk")
    settings["POLICY_FILE"] = str(directory / "policy.yaml")
    if audit:  # the service makes the stream at startup (process/auditstream.py)
        settings |= {"AUDIT_SUBJECT": AUDIT_SUBJECT, "AUDIT_STREAM": "CALLOUT_AUDIT"}
    files["nats-server.conf"] = server
    files["policy.yaml"] = policy_yaml(hashes, account)
    files["callout.env"] = env_file(settings)
    # Seeds and creds are private keys; the hashes are offline-guessable.
    secret = frozenset(n for n in files if n.endswith((".nk", ".creds", ".yaml")))
    return WorkingSet(directory, mode, port, ws_port, files, secret, passwords)


def write(working_set: WorkingSet) -> None:
    """Write the files (secrets 0600) into a new or empty dir, or ConfigError."""
    directory = working_set.directory
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigError(
            f"{directory} exists and is not empty; init never overwrites keys. "
            "Choose a new directory."
        )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, text in working_set.files.items():
            mode = 0o600 if name in working_set.secret else 0o644
            # O_EXCL: never replace a file that appeared since the check
            fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            os.fchmod(fd, mode)  # exact mode whatever the umask
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot write: {exc.strerror}") from None
