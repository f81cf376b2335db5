"""
The command line: run, settings, check, explain, test, diff, schema, revoke,
hash, keys, init, dev.

Exit codes: 0 success, 1 a policy problem (`check`) or a denial
(`explain`), 2 a usage or startup error.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING

import bcrypt
import structlog

from service import keyfiles
from service.arguments import parser
from service.config import (
    Keys,
    Settings,
    describe_settings,
    load_keys,
    load_settings,
    login_problems,
    seed_files,
    unknown_names,
)
from service.errors import ConfigError, PolicyError
from service.log import configure_logging
from service.policy import CalloutAccount, Policy, describe, evaluate, load_policy
from service.policy.passwords import MAX_SECRET_BYTES, bcrypt_check, too_long
from service.process.supervisor import Supervisor, bind_worker_index
from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.xkeys import CurveKeyPair
from service.review import commands
from service.setup.oneshot import (
    SecretInputError,
    explain_request,
    policy_warnings,
    read_secret,
    startup_warnings,
    warn,
    write_seed_file,
)
from service.signers import Loaded, callout_account, load

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

__all__ = ["explain_request", "main", "startup_warnings"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXPLAIN_JWKS_WAIT = 5.0  # seconds: a dry run has no auth deadline


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nats-auth-callout` console script."""
    args = parser().parse_args(argv)
    handlers = {
        "run": _run,
        "settings": _settings,
        "check": _check,
        "explain": _explain,
        "test": commands.run_tests,
        "diff": commands.run_diff,
        "schema": commands.print_schema,
        "revoke": _revoke,
        "hash": _hash,
        "keys": _keys,
        "init": _init_or_dev,
        "dev": _init_or_dev,
    }
    return handlers[args.command](args)


def _startup(
    env_file: Path | None,
) -> tuple[Settings, Keys, Loaded]:
    settings = load_settings(env_file)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    problems = login_problems(settings)
    if problems:
        raise ConfigError("; ".join(problems))
    keys = load_keys(settings)
    return settings, keys, load(settings, keys)


def _run(args: argparse.Namespace) -> int:
    configure_logging()
    try:
        settings, keys, loaded = _startup(args.env_file)
    except (ConfigError, PolicyError) as exc:
        # an expected, explained failure: the message is the point, not a traceback
        structlog.get_logger("callout").error("callout.startup_failed", error=str(exc))
        return EXIT_USAGE
    workers = args.workers or settings.workers
    if workers > 1:  # the parent only supervises; each child logs the warnings
        return Supervisor(settings, workers, args.env_file).run()
    bind_worker_index()
    log = structlog.get_logger("callout")
    warnings = [
        *unknown_names(args.env_file),
        *keyfiles.loose_permissions(seed_files(settings)),
        *startup_warnings(settings, loaded.policy),
    ]
    for warning in warnings:
        log.warning("callout.config_warning", warning=warning)
    from service.process.worker import serve  # noqa: PLC0415 - keep nats out of other commands

    asyncio.run(serve(settings, keys, loaded.policy, loaded.signers))
    return EXIT_OK


def _offline_callout(env_file: Path | None) -> CalloutAccount:
    """
    The callout account as `run` would know it, for `check` and `explain`.

    Raises:
        ConfigError: The settings (or the issuer seed they name) are invalid.
    """
    settings = load_settings(env_file)
    issuer = None
    if settings.mode == "operator" and not settings.issuer_account:
        if settings.issuer_seed is not None or settings.issuer_seed_file is not None:
            issuer = load_keys(settings).issuer
        else:
            print(  # noqa: T201
                "note: operator mode without CALLOUT_ISSUER_ACCOUNT or "
                "CALLOUT_ISSUER_SEED(_FILE): the callout account is unknown, so "
                "placements in it are not checked",
                file=sys.stderr,
            )
    return callout_account(settings, issuer)


def _load_or_report(path: Path, env_file: Path | None) -> Policy | None:
    """
    The policy file loaded, or None after printing its problems to stderr.

    Raises:
        ConfigError: The settings are invalid (a usage error, not the policy's).
    """
    callout = _offline_callout(env_file)
    try:
        return load_policy(path, callout=callout)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)  # noqa: T201
        return None


def _settings(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.env_file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    rows = describe_settings(settings, args.env_file)
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {source:<8}  {value}")  # noqa: T201
    for warning in unknown_names(args.env_file):
        warn(warning)
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    try:
        if args.format == "json":
            return commands.check_json(args.policy, _offline_callout(args.env_file))
        policy = _load_or_report(args.policy, args.env_file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    if policy is None:
        return EXIT_FAIL
    # the policy's part of what `run` warns about (run adds its settings')
    warnings = policy_warnings(policy)
    for warning in warnings:
        warn(warning)
    if warnings and args.strict:
        print(f"{args.policy}: {len(warnings)} warnings (--strict)", file=sys.stderr)  # noqa: T201
        return EXIT_FAIL
    noted = f", {len(warnings)} warnings" if warnings else ""
    print(  # noqa: T201
        f"{args.policy}: ok ({len(policy.users)} users, {len(policy.roles)} roles, "
        f"{len(policy.accounts)} accounts, {policy.version_hash}{noted})"
    )
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    if args.password and args.password_stdin:
        print("give --password or --password-stdin, not both", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    if args.password:
        warn("--password is visible to other users (ps); use --password-stdin")
    if args.password_stdin:
        try:
            args.password = read_secret(sys.stdin, prompt="password: ", confirm=False)
        except SecretInputError as exc:
            print(exc, file=sys.stderr)  # noqa: T201
            return EXIT_USAGE
    try:
        policy = _load_or_report(args.policy, args.env_file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    if policy is None:
        return EXIT_USAGE
    try:
        request = explain_request(args)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{args.cert}: cannot read: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    for provider in policy.providers:
        # A dry run may wait for the first JWKS fetch the service does at start.
        if provider.keys is not None:
            provider.keys.wait_loaded(EXPLAIN_JWKS_WAIT)
    now = int(time.time())
    decision = evaluate(
        policy,
        request,
        now,
        check_secret=bcrypt_check,
        verify_nkey=lambda _key, _nonce, _sig: True,
    )
    view = describe(decision)
    print(json.dumps(view, indent=2))  # noqa: T201
    return EXIT_OK if view["decision"] == "allow" else EXIT_FAIL


def _revoke(args: argparse.Namespace) -> int:
    from service.process.revoke import revoke  # noqa: PLC0415 - nats only here
    from service.review.sessions import Revocation  # noqa: PLC0415

    try:
        settings = load_settings(args.env_file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    if problems := login_problems(settings):
        print("; ".join(problems), file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    until = time.time() + args.duration if args.duration else 0.0
    return asyncio.run(revoke(settings, Revocation(args.user, args.reason, until)))


def _hash(args: argparse.Namespace) -> int:
    try:
        secret = read_secret(sys.stdin, prompt="secret: ", confirm=True)
    except SecretInputError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    if not secret:
        print("empty secret", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    if too_long(secret):
        # the service denies such secrets (`secret_too_long`): no hash for them
        limit = f"bcrypt uses at most {MAX_SECRET_BYTES} bytes (UTF-8)"
        print(f"{limit}; use a shorter secret", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    print(bcrypt.hashpw(secret.encode(), bcrypt.gensalt(args.cost)).decode())  # noqa: T201
    return EXIT_OK


def _keys(args: argparse.Namespace) -> int:
    pair: KeyPair | CurveKeyPair
    if args.kind == "curve":
        pair = CurveKeyPair.create()
    else:
        pair = KeyPair.create(Prefix[args.kind.upper()])
    if args.seed_file is not None:
        try:
            write_seed_file(args.seed_file, pair.export_seed())
        except OSError as exc:
            reason = "exists" if isinstance(exc, FileExistsError) else exc.strerror
            print(f"{args.seed_file}: {reason}; nothing written", file=sys.stderr)  # noqa: T201
            return EXIT_USAGE
    else:
        print(f"seed: {pair.export_seed()}")  # noqa: T201
    print(f"public_key: {pair.public_key}")  # noqa: T201
    return EXIT_OK


def _init_or_dev(args: argparse.Namespace) -> int:
    from service.setup import dev  # noqa: PLC0415 - keep subprocess code out of `run`

    return dev.main(args)
