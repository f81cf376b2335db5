"""`init`: the files it writes work together, keep secrets private, never clobber."""

from __future__ import annotations

import os
import re
import socket
import stat
from typing import TYPE_CHECKING

import bcrypt
import pytest

from service.cli import main
from service.config import load_keys, load_settings, login_problems
from service.protocol.jwt import decode_jwt
from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.xkeys import CurveKeyPair
from service.setup import init as initcmd
from service.signers import load
from tests.natsserver import check_config

if TYPE_CHECKING:
    from pathlib import Path

SEED = re.compile(r"S[OAUX][A-Z2-7]{56}")
PRINTED_USER = re.compile(r"user: (\S+)\s+password: (\S+)")
CONFIG_FILES = {"nats-server.conf", "policy.yaml", "callout.env", "issuer.nk"}


def init(directory: Path, *args: str) -> int:
    return main(["init", str(directory), "--cost", "4", *args])


@pytest.fixture(
    name="made",
    params=[
        ("config", False),
        ("config", True),
        ("operator", False),
        ("operator", True),
    ],
    ids=["config", "config-xkey", "operator", "operator-xkey"],
)
def _made(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> tuple[Path, str, bool, dict[str, str]]:
    """`init` run through the CLI: the directory, mode, xkey, printed passwords."""
    mode, xkey = request.param
    directory = tmp_path / "set"
    code = init(directory, "--mode", mode, "--xkey" if xkey else "--no-xkey")
    assert code == 0
    passwords = dict(PRINTED_USER.findall(capsys.readouterr().out))
    return directory, mode, xkey, passwords


def test_the_server_config_passes_the_config_test(
    made: tuple[Path, str, bool, dict[str, str]],
) -> None:
    """nats-server -t accepts the generated config in every mode."""
    directory, _, _, _ = made

    result = check_config(directory / "nats-server.conf")

    assert result.returncode == 0, result.stdout


def test_the_files_for_each_mode_are_written(
    made: tuple[Path, str, bool, dict[str, str]],
) -> None:
    """Config mode logs in with nkeys, operator mode with creds, both also to SYS."""
    directory, mode, xkey, _ = made
    mode_files = (
        {"service.creds", "sentinel.creds", "app-signing.nk", "system.creds"}
        if mode == "operator"
        else {"service.nk", "system.nk"}
    )

    names = {p.name for p in directory.iterdir()}

    assert names == CONFIG_FILES | mode_files | ({"xkey.nk"} if xkey else set())


def test_secrets_are_private(made: tuple[Path, str, bool, dict[str, str]]) -> None:
    """Seeds, creds and the policy's hashes are 0600, in a 0700 directory."""
    directory, _, _, _ = made
    secret = [p for p in directory.iterdir() if p.suffix in {".nk", ".creds"}]

    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in secret}

    assert modes == dict.fromkeys(modes, 0o600)
    assert stat.S_IMODE((directory / "policy.yaml").stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert len(secret) >= 2


def test_settings_keys_and_policy_load_as_the_service_loads_them(
    made: tuple[Path, str, bool, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """callout.env, the seeds and policy.yaml pass run's own startup checks."""
    directory, mode, xkey, _ = made
    for name in [n for n in os.environ if n.startswith("CALLOUT_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(directory.parent)  # absolute paths: any cwd works

    settings = load_settings(directory / "callout.env")
    keys = load_keys(settings)
    loaded = load(settings, keys)
    policy, signers = loaded.policy, loaded.signers

    assert settings.mode == mode
    assert login_problems(settings) == []
    assert (keys.xkey is not None) == xkey
    assert sorted(policy.accounts) == ["APP"]
    assert [u.name for u in policy.users] == ["john-doe", "admin"]
    assert set(signers) == {"APP"}
    if mode == "operator":
        app = policy.accounts["APP"].public_key
        assert signers["APP"].issuer_account == app
        assert signers["APP"].key.public_key != app  # APP's signing key signs
    else:
        assert signers["APP"].audience == "APP"


def test_passwords_are_printed_once_and_only_hashed_in_files(
    made: tuple[Path, str, bool, dict[str, str]],
) -> None:
    """The printed passwords match the policy's hashes and appear in no file."""
    directory, _, _, passwords = made
    policy = (directory / "policy.yaml").read_text()
    hashes = re.findall(r'password: "(\$2b\$04\$[^"]+)"', policy)
    everything = "".join(p.read_text() for p in directory.iterdir())

    assert sorted(passwords) == ["admin", "john-doe"]
    assert len(hashes) == 2
    for (name, password), hashed in zip(passwords.items(), hashes, strict=True):
        assert bcrypt.checkpw(password.encode(), hashed.encode()), name
        assert password not in everything


@pytest.mark.parametrize("mode", ["config", "operator"])
def test_init_encrypts_requests_unless_told_not_to(tmp_path: Path, mode: str) -> None:
    """Without flags `init` writes an xkey and the server seals requests to it."""
    code = init(tmp_path / "set", "--mode", mode)
    settings = load_settings(tmp_path / "set" / "callout.env")
    xkey = load_keys(settings).xkey
    server_conf = (tmp_path / "set" / "nats-server.conf").read_text()

    assert code == 0
    assert xkey is not None
    if mode == "config":  # operator mode: in the AUTH account JWT (preloaded)
        assert f'xkey: "{xkey.public_key}"' in server_conf


def test_init_refuses_a_non_empty_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second init into the same place exits 2 and leaves the keys alone."""
    assert init(tmp_path / "set") == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "set").iterdir()}
    capsys.readouterr()

    code = init(tmp_path / "set")
    out, err = capsys.readouterr()

    assert code == 2
    assert "not empty" in err
    assert "never overwrites" in err
    assert out == ""
    assert {p.name: p.read_bytes() for p in (tmp_path / "set").iterdir()} == before


def test_init_accepts_an_empty_directory_and_sets_ports(tmp_path: Path) -> None:
    """An existing empty directory is fine; --port/--ws-port reach every file."""
    (tmp_path / "empty").mkdir()

    code = init(tmp_path / "empty", "--port", "14222", "--ws-port", "18080")
    conf = (tmp_path / "empty" / "nats-server.conf").read_text()
    env = (tmp_path / "empty" / "callout.env").read_text()

    assert code == 0
    assert 'listen: "127.0.0.1:14222"' in conf
    assert 'listen: "127.0.0.1:18080", no_tls: true' in conf
    assert 'CALLOUT_NATS_URL="nats://127.0.0.1:14222"' in env


def test_init_prints_how_to_connect_and_no_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The output names the URLs, the start commands and no private key."""
    init(tmp_path / "set", "--mode", "operator", "--xkey")

    out = capsys.readouterr().out

    assert "nats://127.0.0.1:4222" in out
    assert "ws://127.0.0.1:8080" in out
    assert f"--env-file {tmp_path / 'set' / 'callout.env'}" in out
    assert "wsconnect" in out
    assert SEED.search(out) is None


def test_the_operator_setup_is_signed_by_codec() -> None:
    """AUTH's JWT names the service user, APP and xkey; the sentinel is inert."""
    xkey = CurveKeyPair.create().public_key
    other = KeyPair.create(Prefix.ACCOUNT)
    setup = initcmd.OperatorSetup(xkey=xkey, extra={"OTHER": other})

    auth = decode_jwt(setup.preload[setup.auth.public_key], Prefix.OPERATOR)
    app = decode_jwt(setup.preload[setup.app.public_key], Prefix.OPERATOR)
    sentinel = decode_jwt(setup.sentinel_jwt, Prefix.ACCOUNT)
    operator = decode_jwt(setup.operator_jwt, Prefix.OPERATOR)

    assert auth["nats"]["authorization"] == {
        "auth_users": [setup.service_user.public_key],
        "allowed_accounts": [setup.app.public_key],
        "xkey": xkey,
    }
    assert app["nats"]["signing_keys"] == [setup.app_signing.public_key]
    assert other.public_key in setup.preload
    assert sentinel["iss"] == setup.auth.public_key
    assert sentinel["nats"]["bearer_token"] is True
    assert sentinel["nats"]["pub"] == {"deny": [">"]}
    assert sentinel["nats"]["sub"] == {"deny": [">"]}
    assert operator["nats"]["system_account"] == setup.system.public_key
    assert setup.operator_jwt == setup.operator_jwt  # stable: deterministic signing


def test_dev_refuses_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    """A port in use is a clear startup error (exit 2) before anything starts."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        code = main(["dev", "--port", str(port), "--ws-port", str(port + 1)])

    assert code == 2
    assert f"127.0.0.1:{port} is busy" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "65536", "http"])
def test_ports_out_of_range_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """argparse refuses a port that is not 1..65535."""
    with pytest.raises(SystemExit) as exited:
        init(tmp_path / "set", "--port", value)

    assert exited.value.code == 2
    assert not (tmp_path / "set").exists()


@pytest.mark.parametrize("mode", ["config", "operator"])
def test_init_audit_enables_jetstream_for_the_callout_account(
    tmp_path: Path, mode: str
) -> None:
    """`--audit` turns on JetStream in AUTH (store inside the set) and the stream."""
    directory = tmp_path / "set"
    assert init(directory, "--mode", mode, "--audit") == 0
    conf = (directory / "nats-server.conf").read_text()
    settings = load_settings(directory / "callout.env")
    store = f'jetstream {{ store_dir: "{directory / "jetstream"}" }}'

    checked = check_config(directory / "nats-server.conf")

    assert checked.returncode == 0, checked.stdout
    assert store in conf
    if mode == "config":
        assert re.search(r"AUTH \{ users: .*, jetstream: enabled \}", conf)
    else:
        preload = dict(re.findall(r'"(A[A-Z2-7]{55})": "(\S+)"', conf))
        claims = [decode_jwt(jwt, Prefix.OPERATOR) for jwt in preload.values()]
        auth = next(c for c in claims if c["name"] == "AUTH")
        assert auth["nats"]["limits"]["disk_storage"] == -1
    assert settings.audit_subject == "callout.audit"
    assert settings.audit_stream == "CALLOUT_AUDIT"
