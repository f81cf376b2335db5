"""The command line: hash, keys, check, explain, and run's startup errors."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import bcrypt
import pytest

from service.cli import main
from service.policy.passwords import bcrypt_check
from service.protocol.nkeys import KeyPair
from service.protocol.xkeys import CurveKeyPair

EXAMPLE = Path(__file__).parents[2] / "config" / "policy.example.yaml"


def test_hash_reads_stdin_and_prints_a_bcrypt_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hash` prints a bcrypt hash of the line on stdin that verifies."""
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))

    code = main(["hash", "--cost", "4"])
    out = capsys.readouterr().out.strip()

    assert code == 0
    assert out.startswith("$2b$04$")
    assert bcrypt.checkpw(b"s3cret", out.encode())
    assert "s3cret" not in out


@pytest.mark.parametrize("text", ["\n", "x" * 73 + "\n", "é" * 37 + "\n"])
def test_hash_refuses_empty_and_overlong_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    """An empty secret or one past bcrypt's 72 bytes (UTF-8) is a usage error."""
    monkeypatch.setattr("sys.stdin", io.StringIO(text))

    code = main(["hash", "--cost", "4"])

    assert code == 2
    assert capsys.readouterr().out == ""


def test_hash_accepts_a_secret_of_exactly_72_utf8_bytes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """36 two-byte characters are 72 bytes: hashed, and the service accepts them."""
    secret = "é" * 36
    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))

    code = main(["hash", "--cost", "4"])
    out = capsys.readouterr().out.strip()

    assert code == 0
    assert bcrypt_check(out, secret)
    assert not bcrypt_check(out, secret + "é")


@pytest.mark.parametrize(
    ("kind", "seed_prefix", "key_prefix"),
    [
        ("account", "SA", "A"),
        ("user", "SU", "U"),
        ("curve", "SX", "X"),
        ("operator", "SO", "O"),
    ],
)
def test_keys_prints_a_matching_seed_and_public_key(
    capsys: pytest.CaptureFixture[str], kind: str, seed_prefix: str, key_prefix: str
) -> None:
    """`keys KIND` prints a new seed and the public key that belongs to it."""
    code = main(["keys", kind])
    lines = dict(line.split(": ") for line in capsys.readouterr().out.splitlines())
    pair = (
        CurveKeyPair.from_seed(lines["seed"])
        if kind == "curve"
        else KeyPair.from_seed(lines["seed"])
    )

    assert code == 0
    assert lines["seed"].startswith(seed_prefix)
    assert lines["public_key"].startswith(key_prefix)
    assert pair.public_key == lines["public_key"]


def test_check_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    """The annotated example policy passes `check`."""
    code = main(["check", str(EXAMPLE)])

    assert code == 0
    assert "ok" in capsys.readouterr().out


def test_check_reports_problems_with_line_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid policy exits 1 with file:line for each problem."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\naccounts:\n  APP: {}\nusers:\n"
        "  - name: a\n    roles: [nope]\n    password: hunter2\n"
    )

    code = main(["check", str(bad)])
    err = capsys.readouterr().err

    assert code == 1
    assert f"{bad}:6:" in err
    assert f"{bad}:7:" in err
    assert "hunter2" not in err


def test_explain_prints_the_decision_and_permissions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`explain` on the example shows john-doe's templated permissions."""
    code = main(
        [
            "explain",
            str(EXAMPLE),
            "--user",
            "john-doe",
            "--password",
            "john-doe-password",
        ]
    )
    view = json.loads(capsys.readouterr().out)

    assert code == 0
    assert view["decision"] == "allow"
    assert view["account"] == "APP"
    assert "users.john-doe.>" in view["permissions"]["pub"]["allow"]


def test_explain_denial_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A denied dry run exits 1 and names the reason."""
    code = main(["explain", str(EXAMPLE), "--user", "john-doe", "--password", "wrong"])
    view = json.loads(capsys.readouterr().out)

    assert code == 1
    assert view["reason"] == "bad_password"


def test_run_without_issuer_seed_fails_with_a_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`run` with no issuer seed logs callout.startup_failed and exits 2."""
    shutil.copy(EXAMPLE, tmp_path / "policy.yaml")
    monkeypatch.chdir(tmp_path)
    for name in ("CALLOUT_ISSUER_SEED", "CALLOUT_ISSUER_SEED_FILE"):
        monkeypatch.delenv(name, raising=False)

    code = main(["run"])
    record = json.loads(capsys.readouterr().out.splitlines()[-1])

    assert code == 2
    assert record["event"] == "callout.startup_failed"
    assert "CALLOUT_ISSUER_SEED" in record["error"]
