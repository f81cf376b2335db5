"""
The command line: run, check, explain, test, diff, hash, keys, init, dev.

Exit codes: 0 success, 1 a policy problem (`check`) or a denial
(`explain`), 2 a usage or startup error.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from pathlib import Path

import bcrypt
import structlog

from service import __version__
from service.config import (
    Keys,
    Settings,
    cleartext_urls,
    load_keys,
    load_settings,
    login_problems,
)
from service.errors import ConfigError, PolicyError
from service.log import configure_logging
from service.policy import CalloutAccount, Policy, describe, evaluate, load_policy
from service.policy.passwords import MAX_SECRET_BYTES, bcrypt_check, too_long
from service.process.supervisor import Supervisor, bind_worker_index
from service.protocol.claims import (
    AuthRequest,
    ClientInfo,
    ClientTLS,
    ConnectOpts,
    ServerId,
    ServerInfo,
    UserNKey,
)
from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.xkeys import CurveKeyPair
from service.review import commands
from service.signers import Loaded, callout_account, load

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXPLAIN_JWKS_WAIT = 5.0  # seconds: a dry run has no auth deadline
_TYPES = ("nats", "websocket", "mqtt", "leafnode")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nats-auth-callout", description="NATS auth callout from a YAML policy."
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the service (settings from CALLOUT_* env)")
    run.add_argument("--env-file", type=Path, help="read CALLOUT_* settings from FILE")
    run.add_argument(
        "--workers",
        type=int,
        choices=range(1, 257),
        metavar="N",
        help="N worker processes in the queue group (default: CALLOUT_WORKERS)",
    )

    check = sub.add_parser("check", help="validate a policy file")
    check.add_argument("policy", type=Path)
    check.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="json: one object with each problem's file, line, column and code",
    )

    explain = sub.add_parser("explain", help="dry run: the decision and permissions")
    explain.add_argument("policy", type=Path)
    for command in (check, explain):
        # the settings name the callout account, which no policy may place in
        command.add_argument(
            "--env-file", type=Path, help="read CALLOUT_* settings from FILE"
        )
    explain.add_argument("--user", default="")
    explain.add_argument("--password", default="")
    explain.add_argument(
        "--token", default="", help="a bearer token: a JWT for identity_providers"
    )
    explain.add_argument(
        "--cert",
        type=Path,
        metavar="PEM_FILE",
        help="client certificate, taken as verified by the server (mTLS)",
    )
    explain.add_argument(
        "--nkey", default="", help="public user nkey (signature assumed)"
    )
    explain.add_argument("--host", default="127.0.0.1")
    explain.add_argument("--type", choices=_TYPES, default="nats")

    commands.add_parsers(sub)

    hash_ = sub.add_parser("hash", help="bcrypt a secret read from stdin or a prompt")
    hash_.add_argument(
        "--cost", type=int, default=12, choices=range(4, 32), metavar="4..31"
    )

    keys = sub.add_parser("keys", help="print a new seed and its public key")
    keys.add_argument("kind", choices=("account", "user", "curve", "operator"))

    init = sub.add_parser("init", help="write keys and configs that work together")
    init.add_argument("dir", type=Path, help="a new or empty directory")
    dev = sub.add_parser("dev", help="quick start: init + nats-server + service")
    dev.add_argument("--dir", type=Path, help="a new directory (default: temporary)")
    for command in (init, dev):
        command.add_argument("--mode", choices=("config", "operator"), default="config")
        # on by default: requests carry client passwords (--no-xkey: in clear)
        command.add_argument(
            "--xkey",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="encrypt requests to the service (default; --no-xkey: plain)",
        )
        command.add_argument("--port", type=_port, default=4222, help="client port")
        command.add_argument("--ws-port", type=_port, default=8080, help="WebSocket")
        command.add_argument(
            "--cost", type=int, default=12, choices=range(4, 32), metavar="4..31"
        )
    return parser


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:  # noqa: PLR2004 - the TCP port range
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port")
    return port


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nats-auth-callout` console script."""
    args = _parser().parse_args(argv)
    handlers = {
        "run": _run,
        "check": _check,
        "explain": _explain,
        "test": commands.run_tests,
        "diff": commands.run_diff,
        "schema": commands.print_schema,
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
    for warning in startup_warnings(settings, loaded.policy):
        log.warning("callout.config_warning", warning=warning)
    from service.process.worker import serve  # noqa: PLC0415 - keep nats out of other commands

    asyncio.run(serve(settings, keys, loaded.policy, loaded.signers))
    return EXIT_OK


def startup_warnings(settings: Settings, policy: Policy) -> list[str]:
    """Setups that work but silently weaken security."""
    out = []
    names = {u.name for u in policy.users}
    if settings.nats_user and settings.nats_user in names:
        out.append(
            f"policy user {settings.nats_user!r} is also the service's login; the "
            "server lists it in auth_users, so it bypasses the callout"
        )
    out.extend(
        f"policy can place users in {account!r}, a system account name"
        for account in policy.accounts
        if account.upper() in {"SYS", "$SYS"}
    )
    if settings.mode == "config" and "$G" in policy.accounts:
        out.append("policy places users in $G, where the callout service itself runs")
    if settings.nats_user is not None:
        # nkey and creds logins sign a nonce; only a password is sent as is
        out.extend(
            f"{url} is not loopback and not TLS: the service's password travels "
            "in clear"
            for url in cleartext_urls(settings)
        )
    out.extend(policy.warnings)
    if settings.xkey_seed is None and settings.xkey_seed_file is None:
        out.append(
            "no CALLOUT_XKEY_SEED: requests (with client passwords) are not encrypted"
        )
    return out


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
    for warning in policy.warnings:
        print(f"warning: {warning}", file=sys.stderr)  # noqa: T201
    print(  # noqa: T201
        f"{args.policy}: ok ({len(policy.users)} users, {len(policy.roles)} roles, "
        f"{len(policy.accounts)} accounts, {policy.version_hash})"
    )
    return EXIT_OK


def explain_request(args: argparse.Namespace) -> AuthRequest:
    """
    The request the server would send for a client with these options.

    Raises:
        OSError: `--cert` names a file that cannot be read.
    """
    kind = "Leafnode" if args.type == "leafnode" else "Client"
    tls = None
    if args.cert is not None:
        # As nats-server sends it after `verify`: the leaf as its chain.
        tls = ClientTLS(verified_chains=((args.cert.read_text(encoding="ascii"),),))
    return AuthRequest(
        client_tls=tls,
        server=ServerInfo(id=ServerId("NEXPLAIN")),
        user_nkey=UserNKey("UEXPLAIN"),
        client_info=ClientInfo(
            host=args.host,
            kind=kind,
            type="" if kind == "Leafnode" else args.type,
            nonce="explain" if args.nkey else "",
        ),
        connect_opts=ConnectOpts(
            user=args.user,
            password=args.password,
            auth_token=args.token,
            nkey=args.nkey,
            sig="explain" if args.nkey else "",
        ),
    )


def _explain(args: argparse.Namespace) -> int:
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


def _hash(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        secret = getpass.getpass("secret: ")
        if getpass.getpass("again: ") != secret:
            print("the two entries differ", file=sys.stderr)  # noqa: T201
            return EXIT_USAGE
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
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
    print(f"seed: {pair.export_seed()}")  # noqa: T201
    print(f"public_key: {pair.public_key}")  # noqa: T201
    return EXIT_OK


def _init_or_dev(args: argparse.Namespace) -> int:
    from service.setup import dev  # noqa: PLC0415 - keep subprocess code out of `run`

    return dev.main(args)
