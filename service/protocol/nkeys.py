"""
NKeys (Ed25519) on PyNaCl: the text codec, key pairs, signature checks.

The `nkeys` package on PyPI has no curve prefix, cannot create keys and cannot
verify with only a public key, so the text codec lives here (nats-io/nkeys
strkey.go, crc16.go; docs/protocol.md §1.1). Tests check it against the
`nkeys` package for the prefixes that package knows.

Seeds are held as private bytes and never appear in repr() or str(); the only
way out is the explicit `export_seed()` (and `format_creds`, which writes one).
"""

from __future__ import annotations

import binascii
import enum
import functools
import os
import re

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

from service.errors import KeyFormatError


class Prefix(enum.IntEnum):
    """The prefix byte of each kind of nkey (nkeys strkey.go)."""

    SEED = 18 << 3
    PRIVATE = 15 << 3
    OPERATOR = 14 << 3
    SERVER = 13 << 3
    CLUSTER = 2 << 3
    ACCOUNT = 0
    USER = 20 << 3
    CURVE = 23 << 3


_PUBLIC_PREFIXES = frozenset(Prefix) - {Prefix.SEED, Prefix.PRIVATE}
# A dict lookup is cheaper than Prefix(byte), and decode_public is per request.
_PREFIX_OF_BYTE = {int(prefix): prefix for prefix in Prefix}


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (polynomial 0x1021, init 0): binascii's CRC-CCITT in C."""
    return binascii.crc_hqx(data, 0)


# Base32 (RFC 4648 alphabet, no padding) on int arithmetic: CPython 3.11's
# base64.b32encode/b32decode are pure Python loops (several µs a call), and a
# request needs one decode (user_nkey) and two encodes (the jti digests).
_B32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# int(text, 32) reads the digits 0-9a-v: map our alphabet onto those.
_B32_TO_INT_DIGITS = str.maketrans(_B32_ALPHABET, "0123456789abcdefghijklmnopqrstuv")
# int() would also take '_', whitespace, a sign and lower case: allow only these.
_B32_TEXT = re.compile("[A-Z2-7]*")
# Lengths mod 8 that no whole number of bytes encodes to (b32decode refuses them).
_B32_BAD_LENGTHS = frozenset({1, 3, 6})
# Encoding works on blocks of 40 bytes = 64 characters of 5 bits. Each step
# splits every run of n packed 5-bit groups in two and moves the upper half up
# by 3 bits a group (an and, an or and a shift over the whole int), so six
# steps leave one group per byte; bytes.translate then spells them.
_B32_BLOCK = 40


def _b32_spread_steps() -> tuple[tuple[int, int, int], ...]:
    steps = []
    for half in (32, 16, 8, 4, 2, 1):  # groups in each half of a run
        # A run of 2*half groups starts every 16*half bits (its final width).
        lower = sum(
            ((1 << (half * 5)) - 1) << start for start in range(0, 512, 16 * half)
        )
        steps.append((lower, lower << (half * 5), half * 3))  # keep, move, by
    return tuple(steps)


_B32_SPREAD = _b32_spread_steps()
_B32_OF_5_BITS = bytes.maketrans(bytes(range(32)), _B32_ALPHABET.encode())


def b32encode(raw: bytes) -> str:
    """Base32, standard alphabet, no padding (Go StdEncoding.WithPadding(NoPadding))."""
    if len(raw) > _B32_BLOCK:  # keys and digests never are; 40 bytes = 64 chars
        blocks = range(0, len(raw), _B32_BLOCK)
        return "".join(b32encode(raw[i : i + _B32_BLOCK]) for i in blocks)
    # Left-aligned in the block: a short one ends in zero bits, cut off below.
    value = int.from_bytes(raw, "big") << (8 * (_B32_BLOCK - len(raw)))
    for lower, upper, shift in _B32_SPREAD:
        value = (value & lower) | ((value & upper) << shift)
    text = value.to_bytes(64, "big").translate(_B32_OF_5_BITS).decode("ascii")
    return text[: (len(raw) * 8 + 4) // 5]


def b32decode(text: str) -> bytes:
    """
    Strict unpadded base32, as base64.b32decode reads it once padding is added.

    Raises:
        KeyFormatError: '=' padding, a character outside A-Z2-7, or a length no
            whole number of bytes has.
    """
    if _B32_TEXT.fullmatch(text) is None or len(text) % 8 in _B32_BAD_LENGTHS:
        raise KeyFormatError("not base32 text")
    if not text:
        return b""
    size = len(text) * 5 // 8
    # The last char's spare low bits are dropped unchecked, as base64.b32decode does.
    value = int(text.translate(_B32_TO_INT_DIGITS), 32) >> (len(text) * 5 - size * 8)
    return value.to_bytes(size, "big")


def _with_crc(raw: bytes) -> bytes:
    return raw + crc16(raw).to_bytes(2, "little")


def _check_crc(raw: bytes) -> bytes:
    body, checksum = raw[:-2], raw[-2:]
    if crc16(body).to_bytes(2, "little") != checksum:
        raise KeyFormatError("checksum does not match")
    return body


def encode_public(prefix: Prefix, raw: bytes) -> str:
    """Encode a 32-byte public key as nkey text (56 chars)."""
    if prefix not in _PUBLIC_PREFIXES or len(raw) != 32:  # noqa: PLR2004
        raise KeyFormatError(f"cannot encode a {prefix.name} public key")
    return b32encode(_with_crc(bytes([prefix]) + raw))


def decode_public(text: str, *expected: Prefix) -> tuple[Prefix, bytes]:
    """
    Decode nkey public-key text.

    Args:
        text: The 56-character key.
        expected: Prefixes to accept; any public prefix when empty.

    Returns:
        The prefix and the 32 raw key bytes.

    Raises:
        KeyFormatError: Bad length, base32, checksum or prefix.
    """
    if len(text) != 56:  # noqa: PLR2004
        raise KeyFormatError("a public nkey is 56 characters")
    body = _check_crc(b32decode(text))
    prefix = _PREFIX_OF_BYTE.get(body[0])
    if prefix is None:
        raise KeyFormatError(f"unknown prefix {text[0]!r}")
    if prefix not in _PUBLIC_PREFIXES or (expected and prefix not in expected):
        wanted = ", ".join(p.name.lower() for p in expected) or "public key"
        raise KeyFormatError(f"expected {wanted}, got {prefix.name.lower()} key")
    return prefix, body[1:]


def is_public_key(text: str, *expected: Prefix) -> bool:
    """True when `text` is a valid public nkey of one of the `expected` kinds."""
    try:
        decode_public(text, *expected)
    except KeyFormatError:
        return False
    return True


def encode_seed(prefix: Prefix, raw: bytes) -> str:
    """Encode a 32-byte seed as nkey seed text (58 chars, 'S' + kind)."""
    if prefix not in _PUBLIC_PREFIXES or len(raw) != 32:  # noqa: PLR2004
        raise KeyFormatError(f"cannot encode a {prefix.name} seed")
    b1 = Prefix.SEED | (prefix >> 5)
    b2 = (prefix & 31) << 3
    return b32encode(_with_crc(bytes([b1, b2]) + raw))


def decode_seed(text: str | bytes, *expected: Prefix) -> tuple[Prefix, bytes]:
    """
    Decode nkey seed text. Error messages never contain the seed.

    Raises:
        KeyFormatError: Bad length, base32, checksum or prefix.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise KeyFormatError("a seed is ASCII text") from None
    text = text.strip()
    if len(text) != 58:  # noqa: PLR2004
        raise KeyFormatError("a seed is 58 characters")
    body = _check_crc(b32decode(text))
    if body[0] & 0xF8 != Prefix.SEED:
        raise KeyFormatError("not a seed")
    try:
        prefix = Prefix(((body[0] & 7) << 5) | ((body[1] & 0xF8) >> 3))
    except ValueError:
        raise KeyFormatError("unknown seed kind") from None
    if prefix not in _PUBLIC_PREFIXES or (expected and prefix not in expected):
        wanted = ", ".join(p.name.lower() for p in expected) or "key"
        got = prefix.name.lower()
        raise KeyFormatError(
            f"expected {_article(wanted)} {wanted} seed, got {_article(got)} {got} seed"
        )
    return prefix, body[2:]


def _article(word: str) -> str:
    return "an" if word[:1] in "aeio" else "a"  # "a user": said "you"


def _loads_seed(
    text: str | bytes, expected: tuple[Prefix, ...]
) -> tuple[Prefix, bytes]:
    return decode_seed(text, *expected)


class KeyPair:
    """An Ed25519 nkey pair (operator, account, user, server, cluster)."""

    __slots__ = ("_prefix", "_public", "_secret", "_signing")

    def __init__(self, prefix: Prefix, raw_seed: bytes) -> None:
        if prefix == Prefix.CURVE:
            raise KeyFormatError("a curve seed is not a signing key; use CurveKeyPair")
        self._prefix = prefix
        self._signing = nacl.signing.SigningKey(raw_seed)
        self._public = encode_public(prefix, bytes(self._signing.verify_key))
        # libsodium's 64-byte secret key, for crypto_sign without SigningKey.sign's
        # SignedMessage copies (~2 µs of each of the two signs per request).
        self._secret = nacl.bindings.crypto_sign_seed_keypair(raw_seed)[1]

    @classmethod
    def from_seed(cls, seed: str | bytes, *expected: Prefix) -> KeyPair:
        """Load a seed (`SA…`, `SU…`, …), optionally only of the `expected` kinds."""
        return cls(*_loads_seed(seed, expected))

    @classmethod
    def create(cls, prefix: Prefix) -> KeyPair:
        """Make a new random key pair of the given kind."""
        return cls(prefix, os.urandom(32))

    @property
    def prefix(self) -> Prefix:
        return self._prefix

    @property
    def public_key(self) -> str:
        return self._public

    def export_seed(self) -> str:
        """The seed text. Only for writing key files; never log it."""
        return encode_seed(self._prefix, bytes(self._signing))

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `data`."""
        signed = nacl.bindings.crypto_sign(data, self._secret)  # signature + data
        return signed[: nacl.bindings.crypto_sign_BYTES]

    def __repr__(self) -> str:
        return f"KeyPair({self._public!r})"

    __str__ = __repr__


@functools.lru_cache(maxsize=1024)
def _verify_key(public_key: str) -> tuple[Prefix, nacl.signing.VerifyKey]:
    # Cached: a server's key signs every request it sends for its whole life.
    prefix, raw = decode_public(
        public_key,
        Prefix.OPERATOR,
        Prefix.ACCOUNT,
        Prefix.USER,
        Prefix.SERVER,
        Prefix.CLUSTER,
    )
    return prefix, nacl.signing.VerifyKey(raw)


def signer_prefix(public_key: str) -> Prefix:
    """
    The kind of a signing public key (cached).

    Raises:
        KeyFormatError: Not a valid Ed25519 public nkey.
    """
    return _verify_key(public_key)[0]


def verify(public_key: str, data: bytes, signature: bytes) -> bool:
    """
    Check an Ed25519 signature with only the signer's public nkey.

    Raises:
        KeyFormatError: `public_key` is not a valid signing public key.
    """
    key = _verify_key(public_key)[1]
    try:
        key.verify(data, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True
