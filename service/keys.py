"""
NKeys (Ed25519) and curve keys (X25519, xkv1) on PyNaCl.

The `nkeys` package on PyPI has no curve prefix, cannot create keys and cannot
verify with only a public key, so the text codec lives here (nats-io/nkeys
strkey.go, crc16.go; docs/protocol.md section 1). Tests check it against the
`nkeys` package for the prefixes that package knows.

Seeds are held as private bytes and never appear in repr() or str(); the only
way out is the explicit `export_seed()`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import os

import nacl.exceptions
import nacl.public
import nacl.signing

from service.errors import DecryptionFailed, KeyFormatError

XKEY_VERSION = b"xkv1"
_NONCE_LEN = 24
_SEALED_HEADER = len(XKEY_VERSION) + _NONCE_LEN


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


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (polynomial 0x1021, init 0): binascii's CRC-CCITT in C."""
    return binascii.crc_hqx(data, 0)


def _b32encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def _b32decode(text: str) -> bytes:
    if "=" in text:  # nkeys text is unpadded (Go: base32 NoPadding)
        raise KeyFormatError("not base32 text")
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError) as exc:
        raise KeyFormatError("not base32 text") from exc


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
    return _b32encode(_with_crc(bytes([prefix]) + raw))


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
    body = _check_crc(_b32decode(text))
    try:
        prefix = Prefix(body[0])
    except ValueError:
        raise KeyFormatError(f"unknown prefix {text[0]!r}") from None
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
    return _b32encode(_with_crc(bytes([b1, b2]) + raw))


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
    body = _check_crc(_b32decode(text))
    if body[0] & 0xF8 != Prefix.SEED:
        raise KeyFormatError("not a seed")
    try:
        prefix = Prefix(((body[0] & 7) << 5) | ((body[1] & 0xF8) >> 3))
    except ValueError:
        raise KeyFormatError("unknown seed kind") from None
    if prefix not in _PUBLIC_PREFIXES or (expected and prefix not in expected):
        wanted = ", ".join(p.name.lower() for p in expected) or "key"
        raise KeyFormatError(
            f"expected a {wanted} seed, got a {prefix.name.lower()} seed"
        )
    return prefix, body[2:]


def _loads_seed(
    text: str | bytes, expected: tuple[Prefix, ...]
) -> tuple[Prefix, bytes]:
    return decode_seed(text, *expected)


class KeyPair:
    """An Ed25519 nkey pair (operator, account, user, server, cluster)."""

    __slots__ = ("_prefix", "_public", "_signing")

    def __init__(self, prefix: Prefix, raw_seed: bytes) -> None:
        if prefix == Prefix.CURVE:
            raise KeyFormatError("a curve seed is not a signing key; use CurveKeyPair")
        self._prefix = prefix
        self._signing = nacl.signing.SigningKey(raw_seed)
        self._public = encode_public(prefix, bytes(self._signing.verify_key))

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
        return self._signing.sign(data).signature

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


@functools.lru_cache(maxsize=256)
def _curve_public(public_key: str) -> nacl.public.PublicKey:
    _, raw = decode_public(public_key, Prefix.CURVE)
    return nacl.public.PublicKey(raw)


class CurveKeyPair:
    """
    An X25519 curve key pair (`X…`/`SX…`) for xkv1 sealing.

    The raw seed is the X25519 private scalar itself (nkeys xkeys.go).
    """

    __slots__ = ("_private", "_public")

    def __init__(self, raw_seed: bytes) -> None:
        self._private = nacl.public.PrivateKey(raw_seed)
        self._public = encode_public(Prefix.CURVE, bytes(self._private.public_key))

    @classmethod
    def from_seed(cls, seed: str | bytes) -> CurveKeyPair:
        """Load an `SX…` seed."""
        return cls(_loads_seed(seed, (Prefix.CURVE,))[1])

    @classmethod
    def create(cls) -> CurveKeyPair:
        return cls(os.urandom(32))

    @property
    def public_key(self) -> str:
        return self._public

    def export_seed(self) -> str:
        """The seed text. Only for writing key files; never log it."""
        return encode_seed(Prefix.CURVE, bytes(self._private))

    def _box(self, peer: str) -> nacl.public.Box:
        # A Box precomputes the shared key (crypto_box_beforenm); the server's
        # xkey is the same for its whole life, so reuse it.
        return _box_for(self, peer)

    def seal(self, plaintext: bytes, peer: str, nonce: bytes | None = None) -> bytes:
        """xkv1-seal `plaintext` for the holder of curve public key `peer`."""
        sealed = self._box(peer).encrypt(plaintext, nonce or os.urandom(_NONCE_LEN))
        return XKEY_VERSION + bytes(sealed)

    def open(self, data: bytes, peer: str) -> bytes:
        """
        Open an xkv1 message sealed by the holder of curve public key `peer`.

        Raises:
            DecryptionFailed: Too short, wrong version tag, or it does not
                authenticate.
            KeyFormatError: `peer` is not a curve public key.
        """
        if len(data) <= _SEALED_HEADER:
            raise DecryptionFailed("sealed message is too short")
        if data[: len(XKEY_VERSION)] != XKEY_VERSION:
            raise DecryptionFailed("sealed message does not start with 'xkv1'")
        nonce = data[len(XKEY_VERSION) : _SEALED_HEADER]
        try:
            return self._box(peer).decrypt(data[_SEALED_HEADER:], nonce)
        except nacl.exceptions.CryptoError as exc:
            raise DecryptionFailed(
                "sealed message does not open with our xkey"
            ) from exc

    def __repr__(self) -> str:
        return f"CurveKeyPair({self._public!r})"

    __str__ = __repr__


@functools.lru_cache(maxsize=256)
def _box_for(own: CurveKeyPair, peer: str) -> nacl.public.Box:
    return nacl.public.Box(own._private, _curve_public(peer))  # noqa: SLF001
