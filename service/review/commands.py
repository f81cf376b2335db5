"""
`nats-auth-callout test`, `diff`, `schema` and `check --format json`:
policy review from the command line.

Exit codes, as the other commands: 0 all cases passed (`test`) or nothing
lost (`diff`), 1 a failed case or a loss, 2 a file that cannot be used.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import TYPE_CHECKING

from service.errors import PolicyError
from service.policy import Policy, load_policy
from service.review.cases import LoadedCase, load_cases
from service.review.diff import diff_policies
from service.review.junit import write_junit
from service.review.runner import Result, run_case
from service.review.schema import schema_text

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from service.policy import CalloutAccount

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `test` and `diff` subcommands."""
    from pathlib import Path  # noqa: PLC0415 - argparse needs it at runtime

    test = sub.add_parser("test", help="run a policy's test cases (YAML)")
    test.add_argument("policy", type=Path)
    test.add_argument("tests", type=Path, nargs="+", metavar="TESTS")
    test.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML")
    diff = sub.add_parser("diff", help="what each principal gains and loses")
    diff.add_argument("old", type=Path)
    diff.add_argument("new", type=Path)
    sub.add_parser("schema", help="print the policy file's JSON Schema")


def _load(path: Path) -> Policy | None:
    try:
        return load_policy(path)
    except PolicyError as exc:
        _report(exc)
        return None


def _report(exc: PolicyError) -> None:
    for problem in exc.problems:
        print(problem, file=sys.stderr)  # noqa: T201


def run_tests(args: argparse.Namespace) -> int:
    """Run every case of every test file; one line per case, then a summary."""
    policy = _load(args.policy)
    if policy is None:
        return EXIT_USAGE
    cases: list[LoadedCase] = []
    try:
        for path in args.tests:
            cases += load_cases(path)
    except PolicyError as exc:
        _report(exc)
        return EXIT_USAGE
    now = int(time.time())
    results = [run_case(policy, case, now) for case in cases]
    for result in results:
        _print_result(result)
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")  # noqa: T201
    if args.junit is not None:
        write_junit(args.junit, str(args.policy), results)
    return EXIT_FAIL if failed else EXIT_OK


def _print_result(result: Result) -> None:
    status = "ok  " if result.passed else "FAIL"
    print(f"{status} {result.where}: {result.title}")  # noqa: T201
    for failure in result.failures:
        print(f"       {failure}")  # noqa: T201


def run_diff(args: argparse.Namespace) -> int:
    """Print each changed principal's gains (+) and losses (-)."""
    old, new = _load(args.old), _load(args.new)
    if old is None or new is None:
        return EXIT_USAGE
    changes = diff_policies(old, new)
    for change in changes:
        print(change.principal)  # noqa: T201
        for line in change.gained:
            print(f"  + {line}")  # noqa: T201
        for line in change.lost:
            print(f"  - {line}")  # noqa: T201
    lost = sum(bool(c.lost) for c in changes)
    print(  # noqa: T201
        f"{len(changes)} principals changed, {lost} with losses"
        if changes
        else "no principal changed"
    )
    return EXIT_FAIL if lost else EXIT_OK


def print_schema(_args: argparse.Namespace) -> int:
    """`schema`: the policy file's JSON Schema on stdout."""
    sys.stdout.write(schema_text())
    return EXIT_OK


def check_json(path: Path, callout: CalloutAccount) -> int:
    """`check --format json`: one JSON object; the exit code as for text."""
    problems: list[dict[str, object]] = []
    summary: dict[str, object] | None = None
    warnings: list[str] = []
    try:
        policy = load_policy(path, callout=callout)
    except PolicyError as exc:
        problems = [dataclasses.asdict(p) for p in exc.details]
    else:
        summary = {
            "users": len(policy.users),
            "roles": len(policy.roles),
            "accounts": len(policy.accounts),
            "version": policy.version_hash,
        }
        warnings = list(policy.warnings)
    report = {"file": str(path), "ok": not problems, "problems": problems}
    report |= {"summary": summary, "warnings": warnings}
    print(json.dumps(report, indent=2))  # noqa: T201
    return EXIT_FAIL if problems else EXIT_OK
