"""
The policy: who may connect, into which account, with which permissions.

`load_policy()`/`parse_policy()` turn YAML into an immutable `Policy`
(model.py: the file's shape, with fields.py, providers.py and certs.py;
loader.py: line numbers and compilation), and `evaluate()` turns a request
into `Allow` or `Deny` (tokens.py: bearer JWTs; certs.py: client
certificates) without IO of its own.
"""

from service.policy.evaluate import Allow, Decision, Deny, evaluate
from service.policy.loader import CalloutAccount, Policy, load_policy, parse_policy
from service.policy.passwords import bcrypt_check
from service.policy.subjects import Grant
from service.policy.views import describe

__all__ = [
    "Allow",
    "CalloutAccount",
    "Decision",
    "Deny",
    "Grant",
    "Policy",
    "bcrypt_check",
    "describe",
    "evaluate",
    "load_policy",
    "parse_policy",
]
