"""
Password and token checks against the bcrypt hashes in the policy.

bcrypt reads at most 72 bytes. What happens past that depends on the
installed version: bcrypt 4.x silently truncates (a 72-byte password plus
any suffix matches), 5.x raises. The service decides instead, before bcrypt
runs: a secret longer than `MAX_SECRET_BYTES` in UTF-8 never matches, and
the evaluator denies it with its own reason code (`secret_too_long`).
"""

from __future__ import annotations

import bcrypt

MAX_SECRET_BYTES = 72  # bcrypt's input limit (the Blowfish key schedule)


def too_long(secret: str) -> bool:
    """Whether `secret` is past bcrypt's 72 bytes in UTF-8 (unencodable counts)."""
    try:
        return len(secret.encode("utf-8")) > MAX_SECRET_BYTES
    except UnicodeEncodeError:  # a lone surrogate: no bcrypt hash can match it
        return True


def bcrypt_check(hashed: str, secret: str) -> bool:
    """
    Check a secret against a bcrypt hash (bcrypt compares in constant time).

    Returns:
        False on a mismatch and on any error: a malformed hash, a secret that
        is not encodable or longer than bcrypt's 72 bytes (never truncated,
        whatever the installed bcrypt does).
    """
    if too_long(secret):
        return False
    try:
        return bcrypt.checkpw(secret.encode("utf-8"), hashed.encode("ascii"))
    except (ValueError, TypeError):
        return False
