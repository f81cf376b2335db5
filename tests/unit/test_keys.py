"""nkeys and xkv1 curve keys: known-answer vectors, the `nkeys` package, errors."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import nacl.signing
import nkeys
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import DecryptionFailed, KeyFormatError
from service.protocol.nkeys import (
    KeyPair,
    Prefix,
    b32decode,
    b32encode,
    crc16,
    decode_public,
    decode_seed,
    encode_public,
    encode_seed,
    is_public_key,
    verify,
)
from service.protocol.xkeys import XKEY_VERSION, CurveKeyPair, check_curve_public

if TYPE_CHECKING:
    from collections.abc import Callable

# docs/protocol.md §1.1 (from nats-server auth_callout_test.go)
ACCOUNT_SEED = "SAANDLKMXL6CUS3CP52WIXBEDN6YJ545GDKC65U5JZPPV6WH6ESWUA6YAI"
ACCOUNT_PUBLIC = "ABJHLOVMPA4CI6R5KLNGOB4GSLNIY7IOUPAJC4YFNDLQVIOBYQGUWVLA"
USER_SEED = "SUAP277QP7U4JMFFPVZHLJYEQJ2UHOTYVEIZJYAWRJXQLP4FRSEHYZJJOU"
USER_PUBLIC = "UBO2MQV67TQTVIRV3XFTEZOACM4WLOCMCDMAWN5QVN5PI2N6JHTVDRON"
SERVICE_XKEY_SEED = "SXAAXMRAEP6JWWHNB6IKFL554IE6LZVT6EY5MBRICPILTLOPHAG73I3YX4"
SERVICE_XKEY_PUBLIC = "XAB3NANV3M6N7AHSQP2U5FRWKKUT7EG2ZXXABV4XVXYQRJGM4S2CZGHT"

# docs/protocol.md §5
SERVER_XKEY_SEED = "SXACAIJCEMSCKJRHFAUSUKZMFUXC6MBRGIZTINJWG44DSOR3HQ6T4PY4AQ"
SERVER_XKEY_PUBLIC = "XA2YA4WWGZMIBUNO5IZJVX4REE4DQUPNEGRI4O3V5FS5BUWNCZRFI2LE"
XKV1_NONCE = bytes(range(100, 124))
XKV1_HELLO_HEX = (
    "786b76316465666768696a6b6c6d6e6f707172737475767778797a7b"
    "4e582767e8df27fab1f26ac883f8236f135510c207"
)

SIGNING_PREFIXES = (
    Prefix.OPERATOR,
    Prefix.ACCOUNT,
    Prefix.USER,
    Prefix.SERVER,
    Prefix.CLUSTER,
)
PUBLIC_PREFIXES = (*SIGNING_PREFIXES, Prefix.CURVE)
FIRST_CHAR = {
    Prefix.OPERATOR: "O",
    Prefix.ACCOUNT: "A",
    Prefix.USER: "U",
    Prefix.SERVER: "N",
    Prefix.CLUSTER: "C",
    Prefix.CURVE: "X",
}


def _flip_char(text: str, index: int) -> str:
    """`text` with one base32 character changed."""
    replacement = "B" if text[index] != "B" else "C"
    return text[:index] + replacement + text[index + 1 :]


def _padded_key(prefix: Prefix, raw: bytes) -> str:
    """A 56-char key with a valid CRC whose base32 ends in '=' padding."""
    body = bytes([prefix]) + raw
    return base64.b32encode(body + crc16(body).to_bytes(2, "little")).decode()


# --- known-answer vectors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "public"),
    [
        (ACCOUNT_SEED, ACCOUNT_PUBLIC),
        (USER_SEED, USER_PUBLIC),
    ],
)
def test_signing_seed_gives_the_documented_public_key(seed: str, public: str) -> None:
    """The SA/SU test vectors of docs/protocol.md §1.1 give their public keys."""
    assert public == KeyPair.from_seed(seed).public_key


def test_curve_seed_gives_the_documented_public_key() -> None:
    """The SX test vector of docs/protocol.md §1.1 gives its X public key."""
    assert SERVICE_XKEY_PUBLIC == CurveKeyPair.from_seed(SERVICE_XKEY_SEED).public_key


def test_server_xkey_vector_is_raw_bytes_32_to_63() -> None:
    """The section 5 server xkey seed encodes the raw bytes 32..63."""
    server = CurveKeyPair(bytes(range(32, 64)))

    assert SERVER_XKEY_SEED == server.export_seed()
    assert SERVER_XKEY_PUBLIC == server.public_key


def test_xkv1_seal_with_fixed_nonce_gives_documented_bytes() -> None:
    """Sealing b"hello" server->service with nonce 100..123 gives the section 5 hex."""
    server = CurveKeyPair.from_seed(SERVER_XKEY_SEED)

    sealed = server.seal(b"hello", SERVICE_XKEY_PUBLIC, nonce=XKV1_NONCE)

    assert XKV1_HELLO_HEX == sealed.hex()


def test_xkv1_documented_bytes_open_to_hello() -> None:
    """The service opens the section 5 sealed vector to b"hello"."""
    service = CurveKeyPair.from_seed(SERVICE_XKEY_SEED)

    assert b"hello" == service.open(bytes.fromhex(XKV1_HELLO_HEX), SERVER_XKEY_PUBLIC)


def test_xkv1_layout_is_tag_nonce_mac_ciphertext() -> None:
    """A sealed message is 'xkv1' + 24-byte nonce + 16-byte MAC + ciphertext."""
    sealed = bytes.fromhex(XKV1_HELLO_HEX)

    assert XKEY_VERSION == sealed[:4]
    assert XKV1_NONCE == sealed[4:28]
    assert 4 + 24 + 16 + len(b"hello") == len(sealed)


def test_crc16_is_xmodem() -> None:
    """crc16 has the CRC-16/XMODEM check value 0x31C3 for b"123456789"."""
    assert 0x31C3 == crc16(b"123456789")
    assert 0 == crc16(b"")


# --- creation and round trips -------------------------------------------------------


@pytest.mark.parametrize("prefix", SIGNING_PREFIXES, ids=lambda p: p.name)
def test_created_signing_key_round_trips_through_seed_and_public_text(
    prefix: Prefix,
) -> None:
    """A new key of each signing kind reloads from its seed with the same public key."""
    pair = KeyPair.create(prefix)
    seed = pair.export_seed()
    seed_prefix, raw_seed = decode_seed(seed)
    public_prefix, raw_public = decode_public(pair.public_key)

    assert "S" + FIRST_CHAR[prefix] == seed[:2]
    assert 58 == len(seed)
    assert FIRST_CHAR[prefix] == pair.public_key[0]
    assert 56 == len(pair.public_key)
    assert prefix == seed_prefix == public_prefix == pair.prefix
    assert 32 == len(raw_seed) == len(raw_public)
    assert seed == encode_seed(prefix, raw_seed)
    assert pair.public_key == encode_public(prefix, raw_public)
    assert pair.public_key == KeyPair.from_seed(seed, prefix).public_key


def test_created_curve_key_round_trips_through_seed_and_public_text() -> None:
    """A new curve key reloads from its SX seed with the same X public key."""
    pair = CurveKeyPair.create()
    seed = pair.export_seed()
    seed_prefix, raw_seed = decode_seed(seed, Prefix.CURVE)
    public_prefix, raw_public = decode_public(pair.public_key, Prefix.CURVE)

    assert "SX" == seed[:2]
    assert "X" == pair.public_key[0]
    assert Prefix.CURVE == seed_prefix == public_prefix
    assert seed == encode_seed(Prefix.CURVE, raw_seed)
    assert pair.public_key == encode_public(Prefix.CURVE, raw_public)
    assert pair.public_key == CurveKeyPair.from_seed(seed).public_key


def test_seed_loads_from_bytes_and_ignores_surrounding_whitespace() -> None:
    """A seed read from a file (bytes, trailing newline) loads like the text."""
    assert ACCOUNT_PUBLIC == KeyPair.from_seed(f"{ACCOUNT_SEED}\n".encode()).public_key


@given(raw=st.binary(min_size=32, max_size=32), prefix=st.sampled_from(PUBLIC_PREFIXES))
def test_public_key_text_round_trips(raw: bytes, prefix: Prefix) -> None:
    """decode_public(encode_public(p, raw)) gives back p and raw for any 32 bytes."""
    text = encode_public(prefix, raw)

    assert 56 == len(text)
    assert FIRST_CHAR[prefix] == text[0]
    assert (prefix, raw) == decode_public(text)
    assert is_public_key(text, prefix)


@given(raw=st.binary(min_size=32, max_size=32), prefix=st.sampled_from(PUBLIC_PREFIXES))
def test_seed_text_round_trips(raw: bytes, prefix: Prefix) -> None:
    """decode_seed(encode_seed(p, raw)) gives back p and raw for any 32 bytes."""
    text = encode_seed(prefix, raw)

    assert 58 == len(text)
    assert "S" + FIRST_CHAR[prefix] == text[:2]
    assert (prefix, raw) == decode_seed(text)


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=4096))
def test_seal_then_open_gives_back_the_plaintext(plaintext: bytes) -> None:
    """Whatever one curve key seals for another, the other opens unchanged."""
    service = CurveKeyPair.from_seed(SERVICE_XKEY_SEED)
    server = CurveKeyPair.from_seed(SERVER_XKEY_SEED)

    sealed = server.seal(plaintext, service.public_key)

    assert XKEY_VERSION == sealed[:4]
    assert 28 + 16 + len(plaintext) == len(sealed)
    assert plaintext == service.open(sealed, server.public_key)


def test_seal_uses_a_fresh_nonce_each_time() -> None:
    """Two seals of the same plaintext differ (random nonce)."""
    server = CurveKeyPair.from_seed(SERVER_XKEY_SEED)

    assert server.seal(b"x", SERVICE_XKEY_PUBLIC) != server.seal(
        b"x", SERVICE_XKEY_PUBLIC
    )


# --- cross-check against the PyPI nkeys package -------------------------------------


@pytest.mark.parametrize("prefix", SIGNING_PREFIXES, ids=lambda p: p.name)
def test_public_key_matches_the_nkeys_package(prefix: Prefix) -> None:
    """For Ed25519 kinds, nkeys.from_seed(our seed) derives our public key."""
    pair = KeyPair.create(prefix)

    theirs = nkeys.from_seed(pair.export_seed().encode())

    assert pair.public_key == theirs.public_key.decode()


@pytest.mark.parametrize("seed", [ACCOUNT_SEED, USER_SEED])
def test_vector_public_key_matches_the_nkeys_package(seed: str) -> None:
    """The docs/protocol.md vectors agree with the nkeys package."""
    assert KeyPair.from_seed(seed).public_key == (
        nkeys.from_seed(seed.encode()).public_key.decode()
    )


@pytest.mark.parametrize("prefix", SIGNING_PREFIXES, ids=lambda p: p.name)
def test_nkeys_package_signature_verifies_with_our_verify(prefix: Prefix) -> None:
    """A signature made by the nkeys package verifies with our public-key verify()."""
    pair = KeyPair.create(prefix)
    theirs = nkeys.from_seed(pair.export_seed().encode())
    message = b"nonce-from-INFO"

    signature = theirs.sign(message)

    assert verify(pair.public_key, message, signature)


@pytest.mark.parametrize("prefix", SIGNING_PREFIXES, ids=lambda p: p.name)
def test_our_signature_verifies_with_the_nkeys_package(prefix: Prefix) -> None:
    """A signature made by KeyPair.sign verifies with the nkeys package."""
    pair = KeyPair.create(prefix)
    theirs = nkeys.from_seed(pair.export_seed().encode())
    message = b"payload"

    assert theirs.verify(message, pair.sign(message))


def test_nkeys_package_rejects_curve_seeds() -> None:
    """The nkeys package does not know the curve prefix (why keys.py exists)."""
    with pytest.raises(nkeys.ErrInvalidPrefixByte):
        nkeys.from_seed(SERVICE_XKEY_SEED.encode())


# --- verify ----------------------------------------------------------------------


def test_verify_accepts_the_right_signature() -> None:
    """verify() is True for the signer's own signature over the same bytes."""
    pair = KeyPair.from_seed(ACCOUNT_SEED)

    assert verify(pair.public_key, b"message", pair.sign(b"message"))


def test_verify_rejects_a_tampered_message() -> None:
    """verify() is False when one byte of the message changed."""
    pair = KeyPair.from_seed(ACCOUNT_SEED)

    assert not verify(pair.public_key, b"messagE", pair.sign(b"message"))


@pytest.mark.parametrize("index", [0, 31, 63])
def test_verify_rejects_a_tampered_signature(index: int) -> None:
    """verify() is False when one bit of the signature flipped."""
    pair = KeyPair.from_seed(ACCOUNT_SEED)
    signature = bytearray(pair.sign(b"message"))
    signature[index] ^= 0x01

    assert not verify(pair.public_key, b"message", bytes(signature))


@pytest.mark.parametrize("length", [0, 63, 65])
def test_verify_rejects_a_signature_of_the_wrong_length(length: int) -> None:
    """verify() is False (not an exception) for a signature that is not 64 bytes."""
    assert not verify(ACCOUNT_PUBLIC, b"message", b"\x00" * length)


def test_verify_rejects_another_keys_signature() -> None:
    """verify() is False for a signature by a different key."""
    other = KeyPair.create(Prefix.ACCOUNT)

    assert not verify(ACCOUNT_PUBLIC, b"message", other.sign(b"message"))


def test_verify_refuses_a_curve_public_key() -> None:
    """A curve key cannot verify signatures: KeyFormatError."""
    with pytest.raises(KeyFormatError):
        verify(SERVICE_XKEY_PUBLIC, b"m", b"\x00" * 64)


# --- KeyFormatError --------------------------------------------------------------

BAD_SEEDS = {
    # wrong length
    "short": ACCOUNT_SEED[:-1],
    "long": ACCOUNT_SEED + "A",
    # a changed character breaks the CRC
    "checksum": _flip_char(ACCOUNT_SEED, 20),
    # not base32 (the digit 1 and lower case are outside the alphabet)
    "not-base32": ACCOUNT_SEED[:-1] + "1",
    "lower-case": ACCOUNT_SEED.lower(),
    # a public key is not a seed
    "public-key": encode_public(Prefix.ACCOUNT, b"\x01" * 32) + "AA",
}


@pytest.mark.parametrize("text", BAD_SEEDS.values(), ids=BAD_SEEDS.keys())
def test_bad_seed_text_raises_key_format_error(text: str) -> None:
    """Malformed seed text raises KeyFormatError, not a base32 or nacl error."""
    with pytest.raises(KeyFormatError):
        KeyPair.from_seed(text)


def test_seed_of_an_unknown_kind_raises_key_format_error() -> None:
    """A well-formed seed whose kind byte is no known prefix is refused."""
    raw = bytes([Prefix.SEED | 0, 1 << 3]) + b"\x02" * 32  # prefix 1: unknown
    text = base64.b32encode(raw + crc16(raw).to_bytes(2, "little")).decode()

    with pytest.raises(KeyFormatError, match="unknown seed kind"):
        decode_seed(text.rstrip("="))


def test_public_key_where_a_seed_is_expected_raises_key_format_error() -> None:
    """Bytes with a valid CRC but no seed marker are 'not a seed'."""
    raw = bytes([Prefix.ACCOUNT, 0]) + b"\x02" * 32
    text = base64.b32encode(raw + crc16(raw).to_bytes(2, "little")).decode()

    with pytest.raises(KeyFormatError, match="not a seed"):
        decode_seed(text.rstrip("="))


def _load_as_server(seed: str) -> object:
    return KeyPair.from_seed(seed, Prefix.SERVER)


def _load_as_curve(seed: str) -> object:
    return CurveKeyPair.from_seed(seed)


@pytest.mark.parametrize(
    ("load", "seed"),
    [
        (_load_as_server, ACCOUNT_SEED),
        (_load_as_server, USER_SEED),
        (_load_as_server, SERVICE_XKEY_SEED),
        (_load_as_curve, ACCOUNT_SEED),
        (_load_as_curve, USER_SEED),
    ],
    ids=[
        "account-as-server",
        "user-as-server",
        "curve-as-server",
        "account-as-curve",
        "user-as-curve",
    ],
)
def test_seed_of_the_wrong_kind_is_refused_without_echoing_it(
    load: Callable[[str], object], seed: str
) -> None:
    """Loading a seed of the wrong kind names the kinds, never the seed."""
    with pytest.raises(KeyFormatError, match="expected a") as info:
        load(seed)

    assert seed not in str(info.value)
    assert seed not in repr(info.value)


def test_curve_seed_is_not_a_signing_key() -> None:
    """KeyPair refuses an SX seed even when no kind was requested."""
    with pytest.raises(KeyFormatError, match="CurveKeyPair"):
        KeyPair.from_seed(SERVICE_XKEY_SEED)


def test_account_seed_where_curve_seed_expected_names_both_kinds() -> None:
    """The message says what was expected and what was found."""
    with pytest.raises(KeyFormatError) as info:
        CurveKeyPair.from_seed(ACCOUNT_SEED)

    assert "curve" in str(info.value)
    assert "account" in str(info.value)


@pytest.mark.parametrize("text", BAD_SEEDS.values(), ids=BAD_SEEDS.keys())
def test_bad_seed_error_message_never_contains_the_seed(text: str) -> None:
    """No KeyFormatError message (or its cause) quotes the seed text."""
    with pytest.raises(KeyFormatError) as info:
        decode_seed(text)

    messages = [str(info.value), repr(info.value)]
    if info.value.__cause__ is not None:
        messages.append(str(info.value.__cause__))
    for message in messages:
        assert text not in message
        assert text[4:20] not in message


BAD_PUBLIC_KEYS = {
    "short": ACCOUNT_PUBLIC[:-1],
    "long": ACCOUNT_PUBLIC + "A",
    "checksum": _flip_char(ACCOUNT_PUBLIC, 30),
    "not-base32": ACCOUNT_PUBLIC[:-1] + "8",
    "seed": ACCOUNT_SEED,
    "empty": "",
    "non-ascii": "Ä" * 56,
}


@pytest.mark.parametrize("text", BAD_PUBLIC_KEYS.values(), ids=BAD_PUBLIC_KEYS.keys())
def test_bad_public_key_text_raises_key_format_error(text: str) -> None:
    """Malformed public key text raises KeyFormatError and is_public_key is False."""
    with pytest.raises(KeyFormatError):
        decode_public(text)

    assert not is_public_key(text)


def test_public_key_of_the_wrong_kind_is_refused() -> None:
    """An account key is not accepted where a server or user key is expected."""
    with pytest.raises(KeyFormatError, match="expected server, user, got account"):
        decode_public(ACCOUNT_PUBLIC, Prefix.SERVER, Prefix.USER)

    assert not is_public_key(ACCOUNT_PUBLIC, Prefix.SERVER)


@pytest.mark.parametrize("prefix", [Prefix.SEED, Prefix.PRIVATE], ids=lambda p: p.name)
def test_seed_and_private_prefixes_are_not_public_keys(prefix: Prefix) -> None:
    """Neither encode nor decode accepts the S and P prefixes as public keys."""
    raw = bytes([prefix]) + b"\x03" * 32
    text = base64.b32encode(raw + crc16(raw).to_bytes(2, "little")).decode()

    with pytest.raises(KeyFormatError):
        encode_public(prefix, b"\x03" * 32)
    with pytest.raises(KeyFormatError):
        encode_seed(prefix, b"\x03" * 32)
    with pytest.raises(KeyFormatError):
        decode_public(text)


@pytest.mark.parametrize("length", [0, 31, 33])
def test_encoding_a_raw_key_of_the_wrong_length_is_refused(length: int) -> None:
    """encode_public and encode_seed need exactly 32 raw bytes."""
    with pytest.raises(KeyFormatError):
        encode_public(Prefix.USER, b"\x00" * length)
    with pytest.raises(KeyFormatError):
        encode_seed(Prefix.USER, b"\x00" * length)


def test_non_ascii_seed_bytes_raise_key_format_error() -> None:
    """Seed bytes that are not ASCII are refused before decoding."""
    with pytest.raises(KeyFormatError, match="ASCII"):
        decode_seed(b"\xff" * 58)


@pytest.mark.parametrize(
    "prefix", [Prefix.SERVER, Prefix.USER, Prefix.CURVE], ids=lambda p: p.name
)
def test_padded_public_key_text_is_refused(prefix: Prefix) -> None:
    """A 56-char key ending in '=' padding (28 raw bytes, valid CRC) is refused."""
    text = _padded_key(prefix, b"\x01" * 28)
    assert 56 == len(text)

    with pytest.raises(KeyFormatError):
        decode_public(text)


def test_verify_with_padded_public_key_raises_key_format_error() -> None:
    """verify() raises only KeyFormatError for an invalid key, as documented."""
    text = _padded_key(Prefix.SERVER, b"\x01" * 28)

    with pytest.raises(KeyFormatError):
        verify(text, b"m", b"\x00" * 64)


# --- secrets stay out of repr/str ------------------------------------------------


@pytest.mark.parametrize("seed", [ACCOUNT_SEED, USER_SEED])
def test_key_pair_repr_and_str_show_only_the_public_key(seed: str) -> None:
    """repr() and str() of a KeyPair hold the public key and no seed material."""
    pair = KeyPair.from_seed(seed)

    for text in (repr(pair), str(pair), f"{pair}", f"{pair!r}"):
        assert pair.public_key in text
        assert seed not in text
        assert seed[2:30] not in text


def test_curve_key_pair_repr_and_str_show_only_the_public_key() -> None:
    """repr() and str() of a CurveKeyPair hold the public key and no seed."""
    pair = CurveKeyPair.from_seed(SERVICE_XKEY_SEED)

    for text in (repr(pair), str(pair), f"{pair}"):
        assert SERVICE_XKEY_PUBLIC in text
        assert SERVICE_XKEY_SEED not in text
        assert SERVICE_XKEY_SEED[2:30] not in text


# --- open failures ---------------------------------------------------------------


@pytest.fixture(name="service_xkey")
def _service_xkey() -> CurveKeyPair:
    """The service curve key of the docs/protocol.md vectors."""
    return CurveKeyPair.from_seed(SERVICE_XKEY_SEED)


@pytest.mark.parametrize("length", [0, 4, 28])
def test_open_refuses_input_of_28_bytes_or_less(
    service_xkey: CurveKeyPair, length: int
) -> None:
    """Input no longer than tag + nonce is DecryptionFailed (too short)."""
    data = bytes.fromhex(XKV1_HELLO_HEX)[:length]

    with pytest.raises(DecryptionFailed, match="too short"):
        service_xkey.open(data, SERVER_XKEY_PUBLIC)


def test_open_refuses_a_wrong_version_tag(service_xkey: CurveKeyPair) -> None:
    """A message starting 'xkv2' is DecryptionFailed (version tag)."""
    data = b"xkv2" + bytes.fromhex(XKV1_HELLO_HEX)[4:]

    with pytest.raises(DecryptionFailed, match="xkv1"):
        service_xkey.open(data, SERVER_XKEY_PUBLIC)


@pytest.mark.parametrize("index", [4, 27, 28, 43, 44, -1], ids=str)
def test_open_refuses_a_tampered_message(
    service_xkey: CurveKeyPair, index: int
) -> None:
    """Flipping a bit of the nonce, MAC or ciphertext is DecryptionFailed."""
    data = bytearray.fromhex(XKV1_HELLO_HEX)
    data[index] ^= 0x01

    with pytest.raises(DecryptionFailed, match="does not open"):
        service_xkey.open(bytes(data), SERVER_XKEY_PUBLIC)


def test_open_refuses_a_message_from_another_peer(service_xkey: CurveKeyPair) -> None:
    """Opening with the wrong peer public key is DecryptionFailed."""
    wrong_peer = CurveKeyPair.create().public_key

    with pytest.raises(DecryptionFailed):
        service_xkey.open(bytes.fromhex(XKV1_HELLO_HEX), wrong_peer)


def test_open_refuses_a_message_sealed_for_someone_else() -> None:
    """A third curve key cannot open what was sealed for the service."""
    bystander = CurveKeyPair.create()

    with pytest.raises(DecryptionFailed):
        bystander.open(bytes.fromhex(XKV1_HELLO_HEX), SERVER_XKEY_PUBLIC)


def test_open_with_a_non_curve_peer_raises_key_format_error(
    service_xkey: CurveKeyPair,
) -> None:
    """The peer must be an X key; an account key is a KeyFormatError."""
    with pytest.raises(KeyFormatError):
        service_xkey.open(bytes.fromhex(XKV1_HELLO_HEX), ACCOUNT_PUBLIC)


# --- base32 (the fast codec behind nkey text and jti) -----------------------------

# RFC 4648 section 10, without the '=' padding
RFC4648_BASE32 = [
    (b"", ""),
    (b"f", "MY"),
    (b"fo", "MZXQ"),
    (b"foo", "MZXW6"),
    (b"foob", "MZXW6YQ"),
    (b"fooba", "MZXW6YTB"),
    (b"foobar", "MZXW6YTBOI"),
]
B32_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@pytest.mark.parametrize(("raw", "text"), RFC4648_BASE32)
def test_b32encode_gives_the_rfc4648_vectors(raw: bytes, text: str) -> None:
    """b32encode is RFC 4648 base32 with the padding left off."""
    assert text == b32encode(raw)
    assert raw == b32decode(text)


def test_b32encode_of_the_vector_keys_is_their_text() -> None:
    """The documented public key is b32encode of its decoded bytes."""
    assert ACCOUNT_PUBLIC == b32encode(b32decode(ACCOUNT_PUBLIC))
    assert USER_SEED == b32encode(b32decode(USER_SEED))


@given(raw=st.binary(max_size=200))
def test_b32encode_matches_base64_b32encode(raw: bytes) -> None:
    """Any length, including several 40-byte blocks, gives base64's text."""
    expected = base64.b32encode(raw).decode().rstrip("=")

    assert expected == b32encode(raw)
    assert raw == b32decode(expected)


@given(text=st.text(alphabet=B32_CHARS + "=a_ -+\n\u00e9", max_size=70))
def test_b32decode_agrees_with_base64_b32decode(text: str) -> None:
    """Same bytes as base64.b32decode on padded text; what it refuses is an error."""
    try:
        expected: bytes | None = base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError:  # binascii.Error and non-ASCII
        expected = None
    if "=" in text:  # unpadded only, as Go's NoPadding reads it
        expected = None

    if expected is None:
        with pytest.raises(KeyFormatError, match="not base32 text"):
            b32decode(text)
    else:
        assert expected == b32decode(text)


@pytest.mark.parametrize(
    "text",
    ["MY======", "MY=", "my", "M_Y", " MY", "MY\n", "+MY", "-MY", "M Y", "MÝ", "M"],
)
def test_b32decode_refuses_what_int_would_accept(text: str) -> None:
    """Padding, lower case, '_', whitespace, signs, non-ASCII, impossible lengths."""
    with pytest.raises(KeyFormatError, match="not base32 text"):
        b32decode(text)


def test_public_key_with_lower_case_text_is_refused() -> None:
    """nkey text is upper case, as Go's base32 decoder insists."""
    with pytest.raises(KeyFormatError, match="not base32 text"):
        decode_public(ACCOUNT_PUBLIC.lower())


def test_check_curve_public_accepts_only_curve_keys() -> None:
    """An X key passes; an account key or junk is a KeyFormatError."""
    check_curve_public(SERVICE_XKEY_PUBLIC)
    with pytest.raises(KeyFormatError, match="expected curve"):
        check_curve_public(ACCOUNT_PUBLIC)
    with pytest.raises(KeyFormatError):
        check_curve_public("X" * 56)


@pytest.mark.parametrize("message", [b"", b"hello", bytes(range(256)) * 5])
def test_sign_gives_pynacl_signing_key_signatures(message: bytes) -> None:
    """KeyPair.sign (raw crypto_sign) equals SigningKey.sign's signature."""
    key = KeyPair.from_seed(ACCOUNT_SEED)
    raw_seed = decode_seed(ACCOUNT_SEED)[1]

    expected = nacl.signing.SigningKey(raw_seed).sign(message).signature
    assert expected == key.sign(message)
