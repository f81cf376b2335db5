"""
Settings: the only place that reads the environment (prefix `CALLOUT_`).

`load_settings()` turns pydantic's errors into one `ConfigError` whose text
names the variable and never echoes a value (values may be secrets).
`load_keys()` reads and checks the key material the settings point at.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import pydantic
from dotenv import dotenv_values
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service import keyfiles
from service.errors import ConfigError, KeyFormatError
from service.protocol.nkeys import KeyPair, Prefix, is_public_key
from service.protocol.xkeys import CurveKeyPair

ENV_PREFIX = "CALLOUT_"
_SUBJECT_TOKEN = re.compile(r"[^\s.*>]+")

# Set by `run --workers N` for each worker process (not settings: a person
# never sets them). Read and written only here, like every other variable.
WORKER_ENV = "NATS_AUTH_CALLOUT_WORKER"
PEER_FD_ENV = "NATS_AUTH_CALLOUT_PEER_FD"


def usable_cores() -> int:
    """CPUs this process may run on: its affinity (a container's cpuset), not
    the host's count, which would oversubscribe bcrypt threads."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 2


class Settings(BaseSettings):
    """Every setting of the service; see docs/operations.md "Configuration"."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, env_file_encoding="utf-8"
    )

    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_nkey_seed_file: Path | None = None
    nats_creds: Path | None = None
    nats_tls_cert: Path | None = None
    nats_tls_key: Path | None = None
    nats_tls_ca: Path | None = None
    issuer_seed: SecretStr | None = None
    issuer_seed_file: Path | None = None
    issuer_account: str | None = None
    # config mode: auth_callout.account in nats-server.conf, never a placement
    auth_account: str = Field(default="AUTH", min_length=1)
    xkey_seed: SecretStr | None = None
    xkey_seed_file: Path | None = None
    policy_file: Path = Path("policy.yaml")
    mode: Literal["config", "operator"] = "config"
    queue_group: str = Field(default="auth-callout", min_length=1)
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    http_listen: str = ""
    # the bearer token of POST /admin/revoke on the HTTP port; none = off
    admin_token_file: Path | None = None
    max_inflight: int = Field(default=1024, ge=1)
    threads: int = Field(default_factory=usable_cores, ge=1)
    workers: int = Field(default=1, ge=1)
    # seconds a verified secret stays cached: longer than the connections it
    # should speed up when they all come back at once (a server restart)
    cache_ttl: float = Field(default=86400.0, gt=0)
    shutdown_grace: float = Field(default=5.0, gt=0)
    # audit events go to <audit_subject>.<decision>.<account>; empty = off
    audit_subject: str = ""
    audit_buffer: int = Field(default=10000, ge=1)
    # a stream the service creates for them if missing; empty = none
    audit_stream: str = Field(default="", pattern=r"^[A-Za-z0-9_-]*$")
    audit_max_age: float = Field(default=7 * 86400.0, gt=0)  # seconds
    audit_max_bytes: int = Field(default=1 << 30, ge=1)
    # a second, optional login in the system account: live sessions (kicks,
    # revocations, connection caps) need it; without it they are off
    system_user: str | None = None
    system_password: SecretStr | None = None
    system_nkey_seed_file: Path | None = None
    system_creds: Path | None = None
    # a JetStream KV bucket for the state replicas share; empty = none
    state_bucket: str = Field(default="", pattern=r"^[A-Za-z0-9_-]*$")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("audit_subject")
    @classmethod
    def _literal_subject(cls, value: str) -> str:
        tokens = value.split(".")
        if value and not all(_SUBJECT_TOKEN.fullmatch(t) for t in tokens):
            msg = "a subject without wildcards or spaces, e.g. callout.audit"
            raise ValueError(msg)
        return value

    @property
    def system_login(self) -> bool:
        """Whether CALLOUT_SYSTEM_* name a login (live sessions need one)."""
        logins = (self.system_user, self.system_nkey_seed_file, self.system_creds)
        return any(v is not None for v in logins)

    @property
    def servers(self) -> list[str]:
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]


def load_settings(env_file: Path | None = None) -> Settings:
    """
    Read settings from the environment and, if given, an env file.

    Raises:
        ConfigError: A value is invalid or the env file cannot be read.
    """
    if env_file is not None and not env_file.is_file():
        raise ConfigError(f"--env-file {env_file}: no such file")
    try:
        return Settings(_env_file=env_file)
    except pydantic.ValidationError as exc:
        problems = [
            f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from None


def setting_names() -> list[str]:
    """Every CALLOUT_* variable the service reads."""
    return [ENV_PREFIX + name.upper() for name in Settings.model_fields]


def _env_file_names(env_file: Path | None) -> set[str]:
    if env_file is None or not env_file.is_file():
        return set()
    return {name for name in dotenv_values(env_file) if name.startswith(ENV_PREFIX)}


def unknown_names(env_file: Path | None = None) -> list[str]:
    """
    Warnings for CALLOUT_* names no setting reads (typos are ignored silently
    otherwise), each with the closest known name.
    """
    known = setting_names()
    found = {n for n in os.environ if n.startswith(ENV_PREFIX)}
    in_file = _env_file_names(env_file) - found
    sources = dict.fromkeys(found, "environment")
    sources |= dict.fromkeys(in_file, f"--env-file {env_file}")
    out = []
    for name in sorted(set(sources) - set(known)):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        out.append(f"{name} (in the {sources[name]}) is not a setting{hint}")
    return out


def describe_settings(
    settings: Settings, env_file: Path | None = None
) -> list[tuple[str, str, str]]:
    """Each setting as (name, value, source: env, env-file, default); secrets masked."""
    in_file = _env_file_names(env_file)
    rows = []
    for field in Settings.model_fields:
        name = ENV_PREFIX + field.upper()
        value = getattr(settings, field)
        if name in os.environ:
            source = "env"
        elif name in in_file:
            source = "env-file"
        else:
            source = "default"
        if isinstance(value, SecretStr):
            shown = "[REDACTED]"  # the value itself never leaves Settings
        elif value is None:
            shown = ""
        else:
            shown = str(value)
        rows.append((name, shown, source))
    return rows


@dataclass(frozen=True, slots=True)
class Keys:
    """The key material the service signs and decrypts with."""

    issuer: KeyPair
    xkey: CurveKeyPair | None


def _secret(
    name: str, value: SecretStr | None, file: Path | None, *, required: bool
) -> tuple[str | None, str]:
    """The secret's text and the setting it came from (for messages)."""
    if value is not None and file is not None:
        raise ConfigError(
            f"set {ENV_PREFIX}{name} or {ENV_PREFIX}{name}_FILE, not both"
        )
    if file is not None:
        setting = f"{ENV_PREFIX}{name}_FILE"
        return keyfiles.read_text(file, setting), f"{setting} {file}"
    if value is not None:
        return value.get_secret_value().strip(), f"{ENV_PREFIX}{name}"
    if required:
        raise ConfigError(f"{ENV_PREFIX}{name} or {ENV_PREFIX}{name}_FILE is required")
    return None, ""


def _wrong_seed(source: str, exc: KeyFormatError, kind: str) -> ConfigError:
    hint = f"; {keyfiles.seed_file_hint(kind)}" if " " in source else ""
    return ConfigError(f"{source}: {exc}{hint}")


def load_keys(settings: Settings) -> Keys:
    """
    Load the issuer (`SA…`) and optional xkey (`SX…`) seeds.

    Raises:
        ConfigError: Missing, unreadable, or the wrong kind of seed. The text
            names the setting used and never contains the seed.
    """
    issuer_text, source = _secret(
        "ISSUER_SEED", settings.issuer_seed, settings.issuer_seed_file, required=True
    )
    assert issuer_text is not None  # noqa: S101 - required=True guarantees it
    try:
        issuer = KeyPair.from_seed(issuer_text, Prefix.ACCOUNT)
    except KeyFormatError as exc:
        raise _wrong_seed(source, exc, "account") from None
    xkey_text, source = _secret(
        "XKEY_SEED", settings.xkey_seed, settings.xkey_seed_file, required=False
    )
    xkey = None
    if xkey_text is not None:
        try:
            xkey = CurveKeyPair.from_seed(xkey_text)
        except KeyFormatError as exc:
            raise _wrong_seed(source, exc, "curve") from None
    if settings.issuer_account is not None and not is_public_key(
        settings.issuer_account, Prefix.ACCOUNT
    ):
        raise ConfigError(f"{ENV_PREFIX}ISSUER_ACCOUNT is not an account public key")
    if settings.mode == "config" and settings.issuer_account:
        raise ConfigError(
            f"{ENV_PREFIX}ISSUER_ACCOUNT is for operator mode; config mode rejects it"
        )
    return Keys(issuer=issuer, xkey=xkey)


def seed_files(settings: Settings) -> dict[str, Path | None]:
    """Every file setting that holds a secret, by its variable name."""
    return {
        f"{ENV_PREFIX}ISSUER_SEED_FILE": settings.issuer_seed_file,
        f"{ENV_PREFIX}XKEY_SEED_FILE": settings.xkey_seed_file,
        f"{ENV_PREFIX}NATS_NKEY_SEED_FILE": settings.nats_nkey_seed_file,
        f"{ENV_PREFIX}NATS_CREDS": settings.nats_creds,
        f"{ENV_PREFIX}NATS_TLS_KEY": settings.nats_tls_key,
        f"{ENV_PREFIX}SYSTEM_NKEY_SEED_FILE": settings.system_nkey_seed_file,
        f"{ENV_PREFIX}SYSTEM_CREDS": settings.system_creds,
    }


def login_problems(settings: Settings) -> list[str]:
    """
    Problems with the service's own NATS logins (its callout-account login
    and the optional system-account one) that make it fail or leak.

    Returns:
        Errors (the service cannot log in as configured).
    """
    problems = []
    for which in ("nats", "system"):
        problems += keyfiles.login_problems(
            f"{ENV_PREFIX}{which.upper()}",
            user=getattr(settings, f"{which}_user"),
            password=getattr(settings, f"{which}_password") is not None,
            seed_file=getattr(settings, f"{which}_nkey_seed_file"),
            creds=getattr(settings, f"{which}_creds"),
        )
    try:
        keyfiles.tls_context(
            settings.nats_tls_cert, settings.nats_tls_key, settings.nats_tls_ca
        )
    except ConfigError as exc:
        problems.append(str(exc))
    return problems


def cleartext_urls(settings: Settings) -> list[str]:
    """Plain `nats://`/`ws://` URLs to non-loopback hosts: the login goes in clear."""
    out = []
    for url in settings.servers:
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        if parts.scheme not in {"nats", "ws"}:
            continue
        host = parts.hostname or ""
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            # scheme://host:port only: a URL may carry user:password
            out.append(f"{parts.scheme}://{host}:{parts.port or 4222}")
    return out


@dataclass(frozen=True, slots=True)
class WorkerSeat:
    """
    What a supervisor told this worker process through its environment.

    Attributes:
        index: The worker's number under `run --workers N`; None when alone.
        peer_fd: The descriptor of its channel to the other workers (the
            shared verification cache); None when alone.
    """

    index: int | None
    peer_fd: int | None


def _digits(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None


def worker_seat() -> WorkerSeat:
    """This process's seat under a supervisor (both None when run alone)."""
    return WorkerSeat(_digits(WORKER_ENV), _digits(PEER_FD_ENV))


def worker_environment(index: int, peer_fd: int, http_listen: str) -> dict[str, str]:
    """The environment for worker `index`: ours, as one worker with its seat."""
    return os.environ | {
        "CALLOUT_WORKERS": "1",
        "CALLOUT_HTTP_LISTEN": http_listen,
        WORKER_ENV: str(index),
        PEER_FD_ENV: str(peer_fd),
    }
