"""
Curve keys (X25519) and xkv1 sealing, as nats-server's xkey encryption uses.

The raw seed is the X25519 private scalar itself (nkeys xkeys.go); a sealed
message is `xkv1` + 24-byte nonce + crypto_box (docs/protocol.md §5).
"""

from __future__ import annotations

import functools
import os

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

from service.errors import DecryptionFailed
from service.protocol.nkeys import (
    Prefix,
    decode_public,
    decode_seed,
    encode_public,
    encode_seed,
)

XKEY_VERSION = b"xkv1"
_NONCE_LEN = 24
_SEALED_HEADER = len(XKEY_VERSION) + _NONCE_LEN


@functools.lru_cache(maxsize=256)
def _curve_public(public_key: str) -> nacl.public.PublicKey:
    _, raw = decode_public(public_key, Prefix.CURVE)
    return nacl.public.PublicKey(raw)


def check_curve_public(public_key: str) -> None:
    """
    Check curve public-key text (cached: a server's xkey lives as long as it).

    Raises:
        KeyFormatError: Not a valid curve (`X…`) public nkey.
    """
    _curve_public(public_key)


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
        return cls(decode_seed(seed, Prefix.CURVE)[1])

    @classmethod
    def create(cls) -> CurveKeyPair:
        return cls(os.urandom(32))

    @property
    def public_key(self) -> str:
        return self._public

    def export_seed(self) -> str:
        """The seed text. Only for writing key files; never log it."""
        return encode_seed(Prefix.CURVE, bytes(self._private))

    def seal(self, plaintext: bytes, peer: str, nonce: bytes | None = None) -> bytes:
        """xkv1-seal `plaintext` for the holder of curve public key `peer`."""
        nonce = nonce or os.urandom(_NONCE_LEN)
        # Box.encrypt's bytes, without its EncryptedMessage copies.
        sealed = nacl.bindings.crypto_box_easy_afternm(
            plaintext, nonce, _shared_key(self, peer)
        )
        return XKEY_VERSION + nonce + sealed

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
            return nacl.bindings.crypto_box_open_easy_afternm(
                data[_SEALED_HEADER:], nonce, _shared_key(self, peer)
            )
        except nacl.exceptions.CryptoError as exc:
            raise DecryptionFailed(
                "sealed message does not open with our xkey"
            ) from exc

    def __repr__(self) -> str:
        return f"CurveKeyPair({self._public!r})"

    __str__ = __repr__


@functools.lru_cache(maxsize=256)
def _shared_key(own: CurveKeyPair, peer: str) -> bytes:
    # crypto_box_beforenm once per peer: the server's xkey is the same for its
    # whole life.
    return nacl.public.Box(own._private, _curve_public(peer)).shared_key()  # noqa: SLF001
