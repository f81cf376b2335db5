"""certificates: matching the verified leaf, precedence, expiry, explain --cert."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.cli import main
from service.errors import PolicyError
from service.policy import Allow, Deny, evaluate, parse_policy
from service.policy.certs import fingerprint, normalize, read_leaf
from service.protocol.claims import ClientTLS
from tests.builders import hash_secret
from tests.factories import decoded_request
from tests.idp import CA, pem

if TYPE_CHECKING:
    from pathlib import Path

    from cryptography import x509

    from service.policy import Decision, Policy
    from service.protocol.claims import AuthRequest

NOW = int(time.time())
PASSWORD = "carol-pw-7"
HASH = hash_secret(PASSWORD)


class Certs:
    """The test CA's client certificates, by role in these tests."""

    def __init__(self, directory: Path) -> None:
        ca = CA(directory)
        self.device = ca.issue("device", cn="device-7")[2]
        self.dns = ca.issue("dns", cn="x", dns=("Gateway.Example.ORG",))[2]
        self.email = ca.issue("email", cn="y", emails=("ops@example.org",))[2]
        self.spiffe = ca.issue("spiffe", cn="z", uris=("spiffe://example.org/w",))[2]
        self.pinned = ca.issue("pinned", cn="device-7")[2]
        self.stranger = ca.issue("stranger", cn="stranger")[2]
        self.pin = self.pinned.fingerprint(self.pinned.signature_hash_algorithm)  # type: ignore[arg-type]
        self.ca_file = ca.cert_file


def policy_text(certs: Certs, *, anonymous: bool = False) -> str:
    pin = ":".join(f"{b:02X}" for b in certs.pin)
    anon = "anonymous: {roles: [guest]}\n" if anonymous else ""
    return f"""
version: 1
accounts: {{APP: {{}}, DEVICES: {{}}}}
defaults: {{account: APP, expires: 1h}}
roles:
  device:
    publish: {{allow: ["dev.{{{{user}}}}.>"]}}
  guest:
    subscribe: {{allow: ["public.>"]}}
users:
  - name: carol
    password: "{HASH}"
    roles: [guest]
certificates:
  - name: pinned
    match: {{sha256: "{pin}"}}
    roles: [device]
  - name: device-7
    match: {{cn: device-7}}
    roles: [device]
    account: DEVICES
    expires: 2d
  - name: gateway
    match: {{san_dns: gateway.example.org}}
    roles: [device]
  - name: ops
    match: {{san_email: ops@example.org}}
    roles: [device]
  - name: worker
    match: {{san_uri: "spiffe://example.org/w"}}
    roles: [device]
{anon}"""


@pytest.fixture(name="certs", scope="module")
def _certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("ca"))


@pytest.fixture(name="policy", scope="module")
def _policy(certs: Certs) -> Policy:
    return parse_policy(policy_text(certs))


def request(
    *,
    verified: x509.Certificate | None = None,
    unverified: x509.Certificate | None = None,
    **opts: str,
) -> AuthRequest:
    tls = ClientTLS(
        version="1.3",
        verified_chains=((pem(verified), "CA PEM"),) if verified is not None else (),
        certs=(pem(unverified),) if unverified is not None else (),
    )
    return decoded_request(opts, client_tls=tls)


def decide(policy: Policy, req: AuthRequest) -> Decision:
    return evaluate(policy, req, NOW)


@pytest.mark.parametrize(
    ("which", "user"),
    [
        ("device", "device-7"),
        ("dns", "gateway"),
        ("email", "ops"),
        ("spiffe", "worker"),
        ("pinned", "pinned"),
    ],
)
def test_each_match_kind_maps_the_verified_leaf(
    policy: Policy, certs: Certs, which: str, user: str
) -> None:
    """CN, SAN DNS (any case), SAN email, SAN URI and the SHA-256 pin."""
    decision = decide(policy, request(verified=getattr(certs, which)))

    assert isinstance(decision, Allow)
    assert decision.user == user
    assert decision.identity == "certificate"
    assert decision.via is not None
    assert decision.via.startswith("certificate:CN=")
    assert decision.grant.pub.allow == (f"dev.{user}.>",)


def test_first_entry_in_file_order_wins(policy: Policy, certs: Certs) -> None:
    """The pinned cert also has CN device-7; its sha256 entry comes first."""
    decision = decide(policy, request(verified=certs.pinned))

    assert isinstance(decision, Allow)
    assert decision.user == "pinned"


def test_account_and_expiry_capped_by_not_after(policy: Policy, certs: Certs) -> None:
    """device-7 lands in DEVICES; `expires: 2d` is cut to the cert's notAfter."""
    decision = decide(policy, request(verified=certs.device))

    assert isinstance(decision, Allow)
    assert decision.account == "DEVICES"
    assert decision.expires_at == int(certs.device.not_valid_after_utc.timestamp())


def test_unverified_certs_are_never_an_identity(policy: Policy, certs: Certs) -> None:
    """`client_tls.certs` (sent when nothing verified) is ignored."""
    assert decide(policy, request(unverified=certs.device)) == Deny("no_credentials")


def test_unknown_certificate_is_denied_or_anonymous(certs: Certs) -> None:
    """A CA-signed cert no entry matches: denied, or anonymous if configured."""
    strict = parse_policy(policy_text(certs))
    lenient = parse_policy(policy_text(certs, anonymous=True))

    denied = decide(strict, request(verified=certs.stranger))
    guest = decide(lenient, request(verified=certs.stranger))

    assert denied == Deny("unknown_certificate", via="certificate:CN=stranger")
    assert isinstance(guest, Allow)
    assert guest.identity == "anonymous"


def test_credentials_take_precedence_over_the_certificate(
    policy: Policy, certs: Certs
) -> None:
    """A password decides alone: right -> that user, wrong -> denied (no fallback)."""
    right = decide(
        policy, request(verified=certs.device, user="carol", password=PASSWORD)
    )
    wrong = decide(policy, request(verified=certs.device, user="carol", password="no"))

    assert isinstance(right, Allow)
    assert right.user == "carol"
    assert wrong == Deny("bad_password", user="carol")


def test_garbage_in_a_verified_chain_is_unknown(policy: Policy) -> None:
    """A leaf that does not parse matches nothing."""
    broken = decoded_request(
        client_tls=ClientTLS(verified_chains=(("-----BEGIN CERTIFICATE-----\nxx",),))
    )

    assert decide(policy, broken) == Deny("unknown_certificate")


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ("{cn: a, san_dns: b}", "match exactly one of"),
        ("{}", "match exactly one of"),
        ('{sha256: "AB:CD"}', "64 hex digits"),
        ("{cn: device-7}", "another certificate entry matches cn 'device-7'"),
    ],
)
def test_bad_entries_are_load_errors(certs: Certs, match: str, message: str) -> None:
    """Ambiguous, malformed and duplicate matches are refused with a line."""
    text = (
        policy_text(certs)
        + f"  - name: extra\n    match: {match}\n    roles: [device]\n"
    )

    with pytest.raises(PolicyError) as caught:
        parse_policy(text)

    assert message in "\n".join(caught.value.problems)
    assert "certificates[5]" in "\n".join(caught.value.problems)


def test_names_are_shared_with_users(certs: Certs) -> None:
    """A certificate entry cannot reuse a user's name."""
    text = policy_text(certs) + "  - name: carol\n    match: {cn: c}\n"

    with pytest.raises(PolicyError, match="duplicate name 'carol'"):
        parse_policy(text)


def test_explain_cert(
    tmp_path: Path, certs: Certs, capsys: pytest.CaptureFixture[str]
) -> None:
    """`explain --cert PEM` treats the file as the verified leaf."""
    path, leaf = tmp_path / "policy.yaml", tmp_path / "leaf.pem"
    path.write_text(policy_text(certs))
    leaf.write_text(pem(certs.spiffe))

    code = main(["explain", str(path), "--cert", str(leaf)])
    view = json.loads(capsys.readouterr().out)
    missing = main(["explain", str(path), "--cert", str(tmp_path / "nope.pem")])

    assert code == 0
    assert view["user"] == "worker"
    assert view["via"] == "certificate:CN=z"
    assert missing == 2


@given(
    raw=st.binary(min_size=32, max_size=32), colons=st.booleans(), upper=st.booleans()
)
def test_fingerprint_formats_normalize_alike(
    raw: bytes, *, colons: bool, upper: bool
) -> None:
    """`AB:CD:…`, `abcd…` and any mix of case are the same fingerprint."""
    text = (":" if colons else "").join(f"{b:02x}" for b in raw)

    assert fingerprint(text.upper() if upper else text) == raw.hex()


@given(
    st.from_regex(r"[A-Za-z0-9-]{1,20}(\.[A-Za-z0-9-]{1,20}){0,3}\.?", fullmatch=True)
)
def test_dns_names_match_case_insensitively(name: str) -> None:
    """DNS SANs compare without case and without a trailing dot."""
    assert normalize("san_dns", name) == normalize(
        "san_dns", name.swapcase().rstrip(".")
    )
    assert normalize("cn", name) == name


@given(st.text(max_size=200))
def test_read_leaf_never_raises(text: str) -> None:
    """Anything in a chain is a leaf or None, never an exception."""
    assert read_leaf(text) is None or text.startswith("-----BEGIN")
