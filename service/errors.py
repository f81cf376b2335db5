"""
The exception hierarchy of the service.

* CalloutError
  x KeyFormatError           text that is not a valid nkey/seed of the expected kind
  x ConfigError              startup: bad settings or key material -> exit 2
  x PolicyError              startup/reload: unreadable or invalid policy
  x ProviderProblem          an identity provider's key material is unusable
                             (the loader turns it into a PolicyError line)
  x JwksError                a document that is not a usable JWKS (also ValueError)
  x RequestError             a request we will not answer (abort: no reply)
    + MalformedRequest       not a JWT, bad base64/JSON, wrong typ/alg/type, too big
    + BadSignature           the signature does not verify against the issuer
    + UntrustedServer        issuer not an N-key, issuer != server_id, wrong audience
    + ExpiredRequest         the request's `exp` (the server's deadline) has passed
    + EncryptionMismatch     xkey configured but payload plain, or the reverse
    + DecryptionFailed       sealed payload that does not open with our xkey

Not errors: `dispatch.fastlane.Cold` is control flow (a decision that needs
bcrypt leaves the fast lane) and derives from BaseException, so no
`except Exception` on its way can mistake it for a failure.

A policy "no" is not an exception: the policy returns a Deny value and the
handler answers it with a signed error response.

Messages never contain a password, token, seed or whole JWT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


class CalloutError(Exception):
    """Base class of every error this service raises on purpose."""


class KeyFormatError(CalloutError, ValueError):
    """An nkey, seed or curve key that does not decode, or is of the wrong kind."""


class ConfigError(CalloutError):
    """Settings or key material that make it impossible to start."""


@dataclass(frozen=True, slots=True)
class Problem:
    """
    One problem in a file, for people (`str()`) and for tools (`check --format json`).

    Attributes:
        line: 1-based; 0 when the whole file is meant (unreadable, say).
        column: 1-based; 1 when only the line is known.
        code: A short code: pydantic's error type (`extra_forbidden`,
            `missing`, ...), ours (`unsafe_name`, `bad_secret`, ...),
            `yaml` or `unreadable`.
        where: The dotted path in the document ("" when none).
        message: A fixed text that never quotes a value from the file.
    """

    file: str
    line: int
    column: int
    code: str
    where: str
    message: str

    def __str__(self) -> str:
        if not self.line:
            return f"{self.file}: {self.message}"
        where = f"{self.where}: " if self.where else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


_LOCATED = re.compile(r"(?P<file>.*?):(?P<line>[0-9]+): (?P<rest>.*)", re.DOTALL)


def _problem(text: str) -> Problem:
    if match := _LOCATED.fullmatch(text):
        line = int(match["line"])
        return Problem(match["file"], line, 1, "policy", "", match["rest"])
    file, _, message = text.partition(": ")
    return Problem(file, 0, 1, "policy", "", message)


class PolicyError(CalloutError):
    """
    A policy file that cannot be used.

    Attributes:
        problems: One `file:line: message` string per problem found.
        details: The same problems with column and code, for tools.
    """

    def __init__(self, problems: Sequence[str | Problem]) -> None:
        self.details = [p if isinstance(p, Problem) else _problem(p) for p in problems]
        self.problems = [str(p) for p in problems]
        super().__init__("\n".join(self.problems))


class ProviderProblem(CalloutError):
    """
    An identity provider's key material cannot be used.

    Attributes:
        loc: Where in the policy file (pydantic-style location).
        message: What is wrong, naming no key data.
    """

    def __init__(self, loc: tuple[int | str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


class JwksError(CalloutError, ValueError):
    """A key set that is not a usable JWKS (the message names no key data)."""


class RequestError(CalloutError):
    """
    The request itself is bad; the service drops it without replying.

    Attributes:
        reason: Short code for logs and metrics.
        server_id: The claimed server id, when it could be read.
    """

    reason = "invalid_request"

    def __init__(self, msg: str, *, server_id: str | None = None) -> None:
        super().__init__(msg)
        self.server_id = server_id


class MalformedRequest(RequestError):
    reason = "malformed_request"


class BadSignature(RequestError):
    reason = "bad_signature"


class UntrustedServer(RequestError):
    reason = "untrusted_server"


class ExpiredRequest(RequestError):
    reason = "expired_request"


class EncryptionMismatch(RequestError):
    reason = "encryption_mismatch"


class DecryptionFailed(RequestError):
    reason = "decryption_failed"
