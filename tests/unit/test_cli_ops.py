"""Operator-facing edges of the command line: seed files, typos, secrets, warnings."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest

from service.cli import main
from service.config import Settings, load_keys, login_problems, unknown_names
from service.errors import ConfigError
from service.keyfiles import loose_permissions
from service.protocol.nkeys import KeyPair, Prefix

EXAMPLE = Path(__file__).parents[2] / "config" / "policy.example.yaml"
SYS_POLICY = (
    "version: 1\naccounts: {APP: {}, SYS: {}, $G: {}}\ndefaults: {account: APP}\n"
    "users: []\n"
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CALLOUT_"):
            monkeypatch.delenv(name)


def test_keys_seed_file_writes_a_0600_file_the_service_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`keys account --seed-file F` writes a loadable 0600 seed file, prints no seed."""
    path = tmp_path / "issuer.nk"

    code = main(["keys", "account", "--seed-file", str(path)])
    out = capsys.readouterr().out
    keys = load_keys(Settings(issuer_seed_file=path))

    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert out == f"public_key: {keys.issuer.public_key}\n"
    assert path.read_text().strip() not in out


def test_keys_seed_file_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing file is left alone: exit 2, nothing printed, nothing written."""
    path = tmp_path / "issuer.nk"
    path.write_text("precious\n")

    code = main(["keys", "account", "--seed-file", str(path)])
    captured = capsys.readouterr()

    assert code == 2
    assert "exists" in captured.err
    assert captured.out == ""
    assert path.read_text() == "precious\n"


def test_a_redirected_keys_output_is_refused_with_what_a_seed_file_holds(
    tmp_path: Path,
) -> None:
    """`keys account > issuer.nk`: the error names the _FILE setting and the format."""
    path = tmp_path / "issuer.nk"
    seed = KeyPair.create(Prefix.ACCOUNT).export_seed()
    path.write_text(f"seed: {seed}\npublic_key: A...\n")

    with pytest.raises(ConfigError) as info:
        load_keys(Settings(issuer_seed_file=path))

    assert str(info.value).startswith(f"CALLOUT_ISSUER_SEED_FILE {path}: ")
    assert "one line, the account seed (SA…)" in str(info.value)
    assert "--seed-file" in str(info.value)
    assert seed not in str(info.value)


def test_unknown_callout_names_are_named_with_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A typo in the environment or the env file gets a warning and a suggestion."""
    monkeypatch.setenv("CALLOUT_HTTP_LISTN", ":8081")
    env_file = tmp_path / "callout.env"
    env_file.write_text("CALLOUT_POLICY_FIEL=p.yaml\nCALLOUT_MODE=config\n")

    warnings = unknown_names(env_file)

    assert warnings == [
        (
            "CALLOUT_HTTP_LISTN (in the environment) is not a setting; "
            "did you mean CALLOUT_HTTP_LISTEN?"
        ),
        (
            f"CALLOUT_POLICY_FIEL (in the --env-file {env_file}) is not a setting; "
            "did you mean CALLOUT_POLICY_FILE?"
        ),
    ]


def test_run_logs_unknown_names_and_loose_seed_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` turns both into callout.config_warning lines before serving."""
    issuer = tmp_path / "issuer.nk"
    issuer.write_text(KeyPair.create(Prefix.ACCOUNT).export_seed())
    issuer.chmod(0o644)
    (tmp_path / "policy.yaml").write_text(EXAMPLE.read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CALLOUT_ISSUER_SEED_FILE", str(issuer))
    monkeypatch.setenv("CALLOUT_HTTP_LISTN", ":8081")
    monkeypatch.setenv("CALLOUT_NATS_URL", "nats://127.0.0.1:1")
    monkeypatch.setattr("service.process.worker.serve", _no_serve)

    code = main(["run"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    warnings = [r["warning"] for r in lines if r["event"] == "callout.config_warning"]

    assert code == 0
    assert any("did you mean CALLOUT_HTTP_LISTEN" in w for w in warnings)
    assert any(f"{issuer} has mode 0644" in w for w in warnings)


async def _no_serve(*_args: object) -> None:
    """Stands in for the worker: these tests are about what `run` says first."""


@pytest.mark.parametrize(
    ("mode", "warned"), [(0o600, False), (0o440, False), (0o644, True), (0o620, True)]
)
def test_seed_files_open_to_others_are_warned_about(
    tmp_path: Path, mode: int, *, warned: bool
) -> None:
    """Owner-only and group-read (Kubernetes fsGroup) pass; other access warns."""
    path = tmp_path / "seed.nk"
    path.write_text("x")
    path.chmod(mode)

    warnings = loose_permissions({"CALLOUT_ISSUER_SEED_FILE": path})

    assert bool(warnings) is warned


def test_hash_refuses_more_than_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two lines on stdin are a usage error, not a hash of the first line."""
    monkeypatch.setattr("sys.stdin", io.StringIO("first\nsecond\n"))

    code = main(["hash", "--cost", "4"])
    captured = capsys.readouterr()

    assert code == 2
    assert captured.out == ""
    assert "more than one line" in captured.err
    assert "first" not in captured.err


def test_explain_reads_the_password_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--password-stdin` keeps the secret off the command line; no warning."""
    monkeypatch.setattr("sys.stdin", io.StringIO("john-doe-password\n"))

    code = main(["explain", str(EXAMPLE), "--user", "john-doe", "--password-stdin"])
    captured = capsys.readouterr()

    assert code == 0
    assert json.loads(captured.out)["decision"] == "allow"
    assert captured.err == ""


def test_explain_password_on_the_command_line_warns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--password` still works, with a warning that others can see it."""
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
    err = capsys.readouterr().err

    assert code == 0
    assert "visible to other users" in err
    assert "john-doe-password" not in err


def test_explain_host_must_be_an_ip_and_its_default_is_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--host` rejects a non-address (exit 2); `--help` shows 127.0.0.1."""
    with pytest.raises(SystemExit) as bad:
        main(["explain", str(EXAMPLE), "--user", "x", "--host", "not-an-ip"])
    assert bad.value.code == 2
    assert "not an IP address" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    assert "default: 127.0.0.1" in capsys.readouterr().out


@pytest.mark.parametrize(("strict", "code"), [(False, 0), (True, 1)])
def test_check_prints_runs_placement_warnings_and_strict_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *, strict: bool, code: int
) -> None:
    """Placement in SYS and $G: warned by `check` as by `run`; --strict exits 1."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(SYS_POLICY)

    got = main(["check", str(policy), *(["--strict"] if strict else [])])
    err = capsys.readouterr().err

    assert got == code
    assert "'SYS', a system account name" in err
    assert "$G" in err


def test_settings_lists_values_and_sources_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`settings` shows each setting's value and source; a secret never shows."""
    seed = KeyPair.create(Prefix.ACCOUNT).export_seed()
    monkeypatch.setenv("CALLOUT_ISSUER_SEED", seed)
    env_file = tmp_path / "callout.env"
    env_file.write_text("CALLOUT_QUEUE_GROUP=replicas\n")

    code = main(["settings", "--env-file", str(env_file)])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}

    assert code == 0
    assert rows["CALLOUT_ISSUER_SEED"] == ["env", "[REDACTED]"]
    assert rows["CALLOUT_QUEUE_GROUP"] == ["env-file", "replicas"]
    assert rows["CALLOUT_MODE"] == ["default", "config"]
    assert len(rows) == len(Settings.model_fields)
    assert seed not in out


def test_run_help_points_to_the_settings_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`run --help` tells where the settings are listed."""
    with pytest.raises(SystemExit):
        main(["run", "--help"])

    assert "nats-auth-callout settings" in capsys.readouterr().out


def test_a_tls_certificate_without_its_key_is_a_login_problem(tmp_path: Path) -> None:
    """CALLOUT_NATS_TLS_CERT alone, or a file that is no certificate, stops startup."""
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate\n")

    alone = login_problems(Settings(nats_tls_cert=cert))
    broken = login_problems(Settings(nats_tls_cert=cert, nats_tls_key=cert))

    assert alone == ["set both CALLOUT_NATS_TLS_CERT and CALLOUT_NATS_TLS_KEY"]
    assert len(broken) == 1
    assert broken[0].startswith(f"CALLOUT_NATS_TLS_CERT {cert} / ")
    assert "not a certificate" not in broken[0]
