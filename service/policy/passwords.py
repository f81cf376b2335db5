"""
Password and token checks against the bcrypt hashes in the policy.
"""

from __future__ import annotations

import bcrypt


def bcrypt_check(hashed: str, secret: str) -> bool:
    """
    Check a secret against a bcrypt hash (bcrypt compares in constant time).

    Returns:
        False on a mismatch and on any error: a malformed hash, a secret that
        is not encodable or longer than bcrypt's 72 bytes.
    """
    try:
        return bcrypt.checkpw(secret.encode("utf-8"), hashed.encode("ascii"))
    except (ValueError, TypeError):
        return False
