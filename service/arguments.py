"""
The command line's grammar: every command and option, for `cli.main`.
"""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

from service import __version__
from service.policy.fields import duration
from service.review import commands

_TYPES = ("nats", "websocket", "mqtt", "leafnode")


def parser() -> argparse.ArgumentParser:
    """Every command, its options and their help."""
    parser = argparse.ArgumentParser(
        prog="nats-auth-callout", description="NATS auth callout from a YAML policy."
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the service (settings from CALLOUT_* env)",
        epilog="Settings: CALLOUT_* variables; `nats-auth-callout settings` lists "
        "them with their current values and sources.",
    )
    run.add_argument("--env-file", type=Path, help="read CALLOUT_* settings from FILE")
    run.add_argument(
        "--workers",
        type=int,
        choices=range(1, 257),
        metavar="N",
        help="N worker processes in the queue group (default: CALLOUT_WORKERS)",
    )

    settings = sub.add_parser(
        "settings", help="list every CALLOUT_* setting: value and source"
    )
    settings.add_argument(
        "--env-file", type=Path, help="as `run --env-file FILE` would read it"
    )

    check = sub.add_parser("check", help="validate a policy file")
    check.add_argument("policy", type=Path)
    check.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="json: one object with each problem's file, line, column and code",
    )
    check.add_argument(
        "--strict", action="store_true", help="warnings fail the check (exit 1)"
    )

    explain = sub.add_parser("explain", help="dry run: the decision and permissions")
    explain.add_argument("policy", type=Path)
    for command in (check, explain):
        # the settings name the callout account, which no policy may place in
        command.add_argument(
            "--env-file", type=Path, help="read CALLOUT_* settings from FILE"
        )
    explain.add_argument("--user", default="")
    explain.add_argument(
        "--password",
        default="",
        help="visible to other users of this machine (ps): prefer --password-stdin",
    )
    explain.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from a prompt, or one line of stdin",
    )
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
    explain.add_argument(
        "--host",
        type=_ip,
        default="127.0.0.1",
        metavar="IP",
        help="the client's address (default: %(default)s)",
    )
    explain.add_argument("--type", choices=_TYPES, default="nats")

    commands.add_parsers(sub)

    revoke = sub.add_parser(
        "revoke",
        help="disconnect a principal everywhere and refuse it (`revoked`)",
        epilog="Needs the system-account login (CALLOUT_SYSTEM_*) and a running "
        "service; the refusal lasts until the policy changes or --for passes.",
    )
    revoke.add_argument("user", help="the principal's name (a user's `name`)")
    revoke.add_argument("--reason", default="", help="logged by the service")
    revoke.add_argument(
        "--for",
        dest="duration",
        type=_duration,
        default=0,
        metavar="DURATION",
        help="refuse for this long (90s, 10m, 1h, 2d); default: until the "
        "policy changes",
    )
    revoke.add_argument(
        "--env-file", type=Path, help="read CALLOUT_* settings from FILE"
    )

    hash_ = sub.add_parser("hash", help="bcrypt a secret read from stdin or a prompt")
    hash_.add_argument(
        "--cost", type=int, default=12, choices=range(4, 32), metavar="4..31"
    )

    keys = sub.add_parser("keys", help="print a new seed and its public key")
    keys.add_argument("kind", choices=("account", "user", "curve", "operator"))
    keys.add_argument(
        "--seed-file",
        type=Path,
        metavar="FILE",
        help="write the seed to FILE (mode 0600, never over a file), print the "
        "public key only",
    )

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
        command.add_argument(
            "--audit",
            action="store_true",
            help="JetStream in the callout account and audit events to the "
            "CALLOUT_AUDIT stream (made by the service)",
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


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def _duration(text: str) -> int:
    try:
        return duration(int(text) if text.isdigit() else text)
    except ValueError as exc:  # pydantic's errors are ValueErrors
        raise argparse.ArgumentTypeError("use seconds or 90s, 10m, 1h, 2d") from exc
