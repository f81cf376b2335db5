"""Creds files in nsc's layout."""

from __future__ import annotations

import pytest

from service.errors import (
    KeyFormatError,
)
from service.protocol.creds import format_creds, parse_creds
from service.protocol.nkeys import KeyPair, Prefix
from tests.vectors import (
    ISSUER_SEED,
    USER_JWT_VECTOR,
    USER_PUBLIC,
    USER_SEED,
)

# --- creds files ---------------------------------------------------------------------

NSC_CREDS = f"""-----BEGIN NATS USER JWT-----
{USER_JWT_VECTOR}
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
{USER_SEED}
------END USER NKEY SEED------

*************************************************************
"""


def test_format_creds_writes_the_nsc_layout() -> None:
    """format_creds produces exactly what nsc writes."""
    assert NSC_CREDS == format_creds(USER_JWT_VECTOR, KeyPair.from_seed(USER_SEED))


def test_parse_creds_reads_an_nsc_creds_file() -> None:
    """parse_creds returns the JWT and the user key pair of an nsc creds file."""
    jwt, user = parse_creds(NSC_CREDS)

    assert USER_JWT_VECTOR == jwt
    assert USER_PUBLIC == user.public_key


def test_creds_round_trip() -> None:
    """parse_creds(format_creds(jwt, key)) gives back the same JWT and key."""
    user = KeyPair.create(Prefix.USER)

    jwt, parsed = parse_creds(format_creds(USER_JWT_VECTOR, user))

    assert USER_JWT_VECTOR == jwt
    assert user.public_key == parsed.public_key
    assert user.export_seed() == parsed.export_seed()


def test_parse_creds_reads_crlf_line_endings() -> None:
    """A creds file with Windows line endings parses like nats.go's regex does."""
    jwt, user = parse_creds(NSC_CREDS.replace("\n", "\r\n"))

    assert USER_JWT_VECTOR == jwt
    assert USER_PUBLIC == user.public_key


def test_parse_creds_without_blocks_is_a_key_format_error() -> None:
    """Text without JWT and seed blocks is refused."""
    with pytest.raises(KeyFormatError, match="JWT block and a seed block"):
        parse_creds("just some text\n")


def test_parse_creds_with_an_account_seed_is_refused() -> None:
    """A creds file must hold a user seed; the message does not echo the seed."""
    text = NSC_CREDS.replace(USER_SEED, ISSUER_SEED)

    with pytest.raises(KeyFormatError, match="user") as info:
        parse_creds(text)

    assert ISSUER_SEED not in str(info.value)
